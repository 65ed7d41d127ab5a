"""`deftpipe rerun` (SPEC §9 reproducibility): a rerun of a tiny real run reproduces every number exactly; a
tampered number is a mismatch (exit 4, named in the table); changed conditions are warned about; a bad
folder or --out is refused before anything is written."""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from deftpipe.cli.app import app
from deftpipe.cli.main import _load_commands
from deftpipe.errors import EXIT_HARD_STOP, EXIT_USER, ConfigError
from deftpipe.pipeline.compare import collect
from deftpipe.pipeline.rerun import REPORT_FILE, plan_rerun
from deftpipe.provenance import environment_differences
from tests.unit.deft import fake_backend
from tests.unit.deft.loop_support import copy_workspace, demo_ws, fake, fast_fsync, files_under, new_run  # noqa: F401
from tests.unit.pipeline.support import new_results_dir, patch_fast, settings

_load_commands()


def _rerun(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, ["rerun", *args], env={"COLUMNS": "250"})
    return res.exit_code, res.output


def _new_dir(output: str) -> Path:
    found = re.findall(r"Rerun directory: (\S+)", output)
    assert len(found) == 1, output
    return Path(found[0])


@pytest.fixture(scope="module")
def original(demo_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """A finished `deftpipe deft` run (fake backend, baseline + 1 iteration), shared: tests restore what they edit."""
    import os

    from deftpipe.deft import loop

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "fsync", lambda fd: None)
        mp.setattr(loop, "refresh_report", lambda results_dir: None)
        fake_backend.ensure_registered()
        ws = copy_workspace(demo_template, tmp_path_factory.mktemp("rerun") / "ws")
        rd = new_run(ws, max_iterations=1, kpi_target_pct=0.0)
        assert loop.run_loop(rd).status == "complete"
    return rd


@pytest.fixture
def deft_run(original: Path, fake: dict[str, Any]) -> Iterator[Path]:  # noqa: F811
    """The shared run with the fake backend active; its state and provenance are put back after the test."""
    saved = {name: (original / name).read_bytes() for name in ("deft_state.json", "provenance.json")}
    yield original
    for name, data in saved.items():
        (original / name).write_bytes(data)


def test_rerun_of_a_deft_run_reproduces_every_number(deft_run: Path) -> None:
    out_dir = deft_run.parent / "rerun_here"
    code, out = _rerun(str(deft_run), "--out", str(out_dir), "--yes")
    assert code == 0, out
    assert _new_dir(out) == out_dir
    assert "Reproduced: all" in out and "DIFFERS" not in out and "warning:" not in out
    old_numbers, new_numbers = collect(deft_run), collect(out_dir)
    assert old_numbers == new_numbers
    for key in ("baseline.metric_result.value", "iter1.metric_result.value", "iter1.val_loss",
                "best_model.iteration", "best_model.threshold", "holdout.far_at_100_pct"):
        assert key in old_numbers, key
    report = json.loads((out_dir / REPORT_FILE).read_text())
    assert report["ok"] is True and report["n_mismatches"] == 0 and report["n_compared"] == len(old_numbers)


def test_a_tampered_metric_is_reported_as_a_mismatch_with_exit_4(deft_run: Path) -> None:
    path = deft_run / "deft_state.json"
    doc = json.loads(path.read_text())
    true_value = doc["iterations"]["baseline"]["metric_result"]["value"]
    doc["iterations"]["baseline"]["metric_result"]["value"] = true_value + 1.0
    path.write_text(json.dumps(doc))
    code, out = _rerun(str(deft_run), "--yes")
    assert code == EXIT_HARD_STOP == 4, out
    row = next(line for line in out.splitlines() if "baseline.metric_result.value" in line)
    assert "DIFFERS" in row and repr(true_value + 1.0) in row and repr(true_value) in row
    assert "1 of " in out and "numbers differ" in out
    new = _new_dir(out)
    assert new.parent == deft_run.parent and new.name.startswith("run_")
    report = json.loads((new / REPORT_FILE).read_text())
    assert report["ok"] is False
    assert [m["key"] for m in report["mismatches"]] == ["baseline.metric_result.value"]


def test_changed_conditions_are_warned_about_before_anything_runs(deft_run: Path) -> None:
    prov_path = deft_run / "provenance.json"
    prov = json.loads(prov_path.read_text())
    prov["packages"]["numpy"] = "0.0.1"
    prov["threads"]["cpu_count"] = 999
    prov_path.write_text(json.dumps(prov))
    before = files_under(deft_run.parent)
    code, out = _rerun(str(deft_run))  # no --yes, no TTY: the plan and warnings, then exit 3
    assert code == 3, out
    assert "package numpy: recorded '0.0.1'" in out and "threads cpu_count: recorded 999" in out
    assert "numbers may differ" in out
    assert files_under(deft_run.parent) == before


def test_environment_differences_ignore_facts_one_side_lacks() -> None:
    recorded = {"packages": {"torch": "2.0", "numpy": "2.0"}, "python": "3.11.7", "git_sha": None,
                "host": {"hostname": "a"}, "threads": {"cpu_count": 2, "torch_threads": 2}}
    current = {"packages": {"torch": "2.1", "numpy": "2.0"}, "python": "3.11.7", "git_sha": "abc",
               "host": {"hostname": "a"}, "threads": {"cpu_count": 2}}
    assert environment_differences(recorded, current) == ["package torch: recorded '2.0', now '2.1'"]


def test_a_folder_that_is_not_a_run_is_refused(tmp_path: Path) -> None:
    code, out = _rerun(str(tmp_path), "--yes")
    assert code == EXIT_USER, out
    assert "provenance.json not found" in out and "deftpipe run" in out


def test_out_outside_the_workspace_is_refused_before_anything_runs(deft_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must stay inside the workspace"):
        plan_rerun(deft_run, out=tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.slow
def test_rerun_of_a_pipeline_run_reproduces_automl_trials_and_every_phase(pipe_ws: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from deftpipe.pipeline.run import run_phases

    patch_fast(monkeypatch)
    ps = settings(pipe_ws)
    rd = new_results_dir(pipe_ws, ps)
    run_phases(rd, ps, emit=lambda line: None)
    code, out = _rerun(str(rd), "--yes")
    assert code == 0, out
    numbers = collect(_new_dir(out))
    assert numbers == collect(rd)
    for key in ("automl_phase1.trial_0000.score", "automl_phase1.best.rec_id", "final_automl.best.score",
                "zero_shot_validation.far_at_100_pct", "final_automl.metric_result.value", "best_model.iteration"):
        assert key in numbers, key


@pytest.mark.slow
def test_rerun_of_a_native_deft_run_reproduces_its_metrics_exactly(demo_ws: Path) -> None:  # noqa: F811
    """The real backend: torch training, KPI inference and holdout scoring repeat bit for bit."""
    res = CliRunner().invoke(app, ["deft", "-w", str(demo_ws), "--epochs", "1", "--max-iterations", "0", "--yes",
                                   "-q"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    (rd,) = sorted((demo_ws / "results").glob("run_*"))
    code, out = _rerun(str(rd), "--yes")
    assert code == 0, out
    numbers = collect(_new_dir(out))
    assert numbers == collect(rd)
    assert isinstance(numbers["baseline.metric_result.value"][0], float)
