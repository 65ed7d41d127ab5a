"""Fixtures and helpers shared by the bridge tests (unit and integration): the cached tiny demo workspace
(generated once per session by the DEFT tests' `demo_template`), private copies, the `fake_pipeline`
backend with its knobs reset, and QUICK-style settings (1 iteration, 2 trials, 2 epochs, no noise re-run).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.unit.deft.loop_support import copy_workspace, demo_template  # noqa: F401  (re-exported fixture)
from tests.unit.pipeline import fake_backend

# FAR < 0 is never met, so the loop always runs its iteration and the trajectory has every phase.
QUICK: dict[str, Any] = {"max_iterations": 1, "recommendations": 2, "epochs": 2, "noise_rerun": False, "seed": 0,
                         "kpi_target_pct": 0.0, "backend": fake_backend.NAME}
QUICK_FLAGS = ["--max-iterations", "1", "--recommendations", "2", "--epochs", "2", "--noise-rerun", "off",
               "--seed", "0", "--kpi-target", "0", "--backend", fake_backend.NAME, "--no-measure"]


def _stub_report(rd: Path) -> None:
    """The HTML report is a view (matplotlib: ~0.7 s a refresh); tests that do not read it skip it."""


def patch_fast(mp: pytest.MonkeyPatch, *, report: bool = False) -> None:
    """fsync off (these tests crash in-process, not the OS), fake backend registered with default knobs."""
    import deftpipe.deft.loop as loop

    mp.setattr(os, "fsync", lambda fd: None)
    if not report:
        mp.setattr(loop, "refresh_report", _stub_report)
    fake_backend.ensure_registered()
    fake_backend.reset()


@pytest.fixture
def pipe(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The `fake_pipeline` backend, registered, knobs reset; yields its knob dict."""
    patch_fast(monkeypatch)
    yield fake_backend.KNOBS
    fake_backend.reset()


@pytest.fixture
def pipe_ws(demo_template: Path, tmp_path: Path) -> Path:  # noqa: F811
    """A private copy of the tiny demo workspace."""
    return copy_workspace(demo_template, tmp_path / "ws")


def settings(ws: Path, **overrides: Any) -> Any:
    from deftpipe.pipeline.run import PipelineSettings

    return PipelineSettings(workspace=ws, **{**QUICK, **overrides})


def new_results_dir(ws: Path, ps: Any) -> Path:
    """What the CLI does after approval (minus the pre-flight files): a fresh run folder with its saved config."""
    from deftpipe.pipeline.run import save_config
    from deftpipe.state import new_run_dir
    from deftpipe.workspace.layout import Workspace

    w = Workspace.at(ws)
    rd = new_run_dir(w.results_root, workspace_root=w.root)
    save_config(rd, ps)
    return rd


def state(rd: Path) -> dict[str, Any]:
    return json.loads((rd / "deft_state.json").read_text())


def committed(rd: Path) -> list[tuple[str, str, str]]:
    return [(e["iter"], e["stage"], e["status"]) for e in state(rd)["events"]]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> content digest (folders: 'dir') of everything under `root`."""
    return {p.relative_to(root).as_posix(): ("dir" if p.is_dir() else sha256(p)) for p in sorted(root.rglob("*"))}


def loop_best(rd: Path) -> str:
    """The DEFT loop's deliverable, as its loop_stop event named it (before Phase 3 could change best_model.json)."""
    stop = [e for e in state(rd)["events"] if e["stage"] == "loop_stop"]
    assert len(stop) == 1, stop
    summary = stop[0]["summary"]
    assert "deliverable = " in summary, summary
    return summary.rsplit("deliverable = ", 1)[1].strip()


def trials_count(study_dir: Path) -> int:
    import pandas as pd

    return len(pd.read_csv(study_dir / "trials.csv"))


@dataclass(frozen=True)
class QuickRun:
    """One uninterrupted `deftpipe run ... --yes` on the tiny demo, shared by the tests that inspect it."""

    ws: Path
    rd: Path
    exit_code: int
    output: str
    trains: tuple[fake_backend.TrainCall, ...]
    infers: tuple[tuple[Path, Path], ...]
    user_spec_before: str
    user_spec_after: str

    @property
    def trajectory(self) -> list[str]:
        return summary_trajectory(self.rd)


def summary_trajectory(rd: Path) -> list[str]:
    """The trajectory lines of `pipeline_summary.md`."""
    lines = (rd / "pipeline_summary.md").read_text().split("## Trajectory", 1)[1]
    return [line[2:] for line in lines.splitlines() if line.startswith("- ")]


def _quick_run(template: Path, root: Path) -> QuickRun:
    from typer.testing import CliRunner

    from deftpipe.cli.app import app
    from deftpipe.cli.main import _load_commands

    _load_commands()
    ws = copy_workspace(template, root / "ws")
    spec = ws / "specs" / "baseline_spec.yaml"
    before = sha256(spec)
    with pytest.MonkeyPatch.context() as mp:
        patch_fast(mp, report=True)  # the one run that also renders DEFT_Loop_Report.html
        res = CliRunner().invoke(app, ["run", "--workspace", str(ws), *QUICK_FLAGS, "--yes"], env={"COLUMNS": "200"})
        trains, infers = tuple(fake_backend.TRAIN_LOG), tuple(fake_backend.INFER_LOG)
        fake_backend.reset()
    runs = sorted((ws / "results").glob("run_*"))
    assert len(runs) == 1, (runs, res.output)
    return QuickRun(ws=ws, rd=runs[0].resolve(), exit_code=res.exit_code, output=res.output, trains=trains,
                    infers=infers, user_spec_before=before, user_spec_after=sha256(spec))


_QUICK: dict[str, QuickRun] = {}


@pytest.fixture(scope="session")
def quick_run(demo_template: Path, tmp_path_factory: pytest.TempPathFactory) -> QuickRun:  # noqa: F811
    """Memoized per process: each test module imports this fixture, and pytest would otherwise run it per module."""
    key = str(demo_template)
    if key not in _QUICK or not _QUICK[key].rd.exists():
        _QUICK[key] = _quick_run(demo_template, tmp_path_factory.mktemp("quick"))
    return _QUICK[key]
