"""Fixtures and helpers shared by the DEFT loop tests (unit and integration).

The tiny demo workspace is generated once and kept in pytest's cache folder,
keyed by a digest of the demo generator's source (so a changed generator makes
a fresh one); each test gets a copy whose images are hard links (the loop never
writes into workspace images) and whose CSVs and specs are real copies.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.unit.deft import fake_backend

DEMO_SEED = 0


def _demo_digest() -> str:
    import deftpipe.demo

    h = hashlib.sha256()
    for path in sorted(Path(deftpipe.demo.__file__).parent.rglob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _build_template(root: Path) -> Path:
    """Generate the demo under `root` once (a sibling temp folder renamed into place: complete or absent)."""
    from deftpipe.demo import make_demo_workspace

    target = root / f"demo_tiny_s{DEMO_SEED}_{_demo_digest()}"
    if (target / "ws" / ".complete").exists():
        return target / "ws"
    tmp = root / f".{target.name}.{os.getpid()}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    make_demo_workspace(tmp / "ws", scale="tiny", seed=DEMO_SEED)
    (tmp / "ws" / ".complete").write_text("ok\n")
    try:
        os.replace(tmp, target)
    except OSError:  # another process won the race; use its copy
        shutil.rmtree(tmp, ignore_errors=True)
    return target / "ws"


@pytest.fixture(scope="session")
def demo_template(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = getattr(request.config, "cache", None)
    root = Path(cache.mkdir("deftpipe_deft_demo")) if cache is not None else tmp_path_factory.mktemp("demo")
    return _build_template(root)


def copy_workspace(template: Path, dest: Path) -> Path:
    def link_or_copy(src: str, dst: str) -> str:
        if src.endswith(".png"):
            os.link(src, dst)
            return dst
        return shutil.copy2(src, dst)

    shutil.copytree(template, dest, copy_function=link_or_copy, ignore=shutil.ignore_patterns(".complete"))
    results = dest / "results"
    if results.exists():
        shutil.rmtree(results)
    results.mkdir()
    return dest


@pytest.fixture
def demo_ws(demo_template: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny demo workspace."""
    return copy_workspace(demo_template, tmp_path / "ws")


@pytest.fixture
def fast_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    """fsync is about half of a fake-backend run on a shared disk; these tests crash in-process, not the OS."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, fast_fsync: None) -> Iterator[dict[str, Any]]:
    """The `fake_test` backend, registered, with its knobs reset; yields the knob dict.

    The HTML report refresh after every commit is switched off here (it is a view with its own tests; the
    full-run test keeps it on and checks the file exists).
    """
    from deftpipe.deft import loop

    monkeypatch.setattr(loop, "refresh_report", lambda results_dir: None)
    fake_backend.ensure_registered()
    for key, value in fake_backend.DEFAULT_KNOBS.items():
        monkeypatch.setitem(fake_backend.KNOBS, key, value)
    fake_backend.CALLS.clear()
    yield fake_backend.KNOBS


def new_run(ws: Path, **settings: Any) -> Path:
    """create_run with the fake backend, 2 epochs (best_val != latest), a small SDG budget and RCA top-k
    (a fifth less time per run; every label still gets a synthetic pair and a target), then `settings`."""
    from deftpipe.deft.context import DeftSettings
    from deftpipe.deft.run import create_run

    opts: dict[str, Any] = {"max_iterations": 1, "backend": fake_backend.NAME, "epochs": 2, "seed": 0,
                            "num_sdg": 8, "rca_top_k": 10}
    opts.update(settings)
    return create_run(DeftSettings(workspace=ws, **opts))


def state(rd: Path) -> dict[str, Any]:
    return json.loads((rd / "deft_state.json").read_text())


def journal(rd: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (rd / "loop_log.jsonl").read_text().splitlines() if line.strip()]


def committed(rd: Path) -> list[tuple[str, str, str]]:
    """The committed (iter, stage, status) sequence, in order."""
    return [(e["iter"], e["stage"], e["status"]) for e in state(rd)["events"]]


def read_rows(path: Path | str) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


_REFERENCE: dict[tuple[Any, ...], Path] = {}


def reference_run(template: Path, root: Path, *, max_iterations: int = 2, kpi_target_pct: float = 0.0) -> Path:
    """An uninterrupted fake-backend run (memoized per process); FAR < 0 is never met, so every iteration runs."""
    from deftpipe.deft.loop import run_loop

    key = (str(template), max_iterations, kpi_target_pct)
    if key in _REFERENCE and _REFERENCE[key].exists():
        return _REFERENCE[key]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "fsync", lambda fd: None)
        fake_backend.ensure_registered()
        for k, v in fake_backend.DEFAULT_KNOBS.items():
            mp.setitem(fake_backend.KNOBS, k, v)
        ws = copy_workspace(template, root / f"ref_ws_{max_iterations}_{kpi_target_pct:g}")
        rd = new_run(ws, max_iterations=max_iterations, kpi_target_pct=kpi_target_pct)
        outcome = run_loop(rd)
        assert outcome.status == "complete", outcome
    _REFERENCE[key] = rd
    return rd


def run_relative_rows(rd: Path, csv: Path | str) -> list[tuple[str, ...]]:
    """Rows of a loop CSV with this run's folder name replaced by RUN (comparable across runs)."""
    frame = read_rows(csv)
    prefix = f"results/{rd.name}/"
    return [tuple(str(v).replace(prefix, "results/RUN/") for v in row) for row in frame.itertuples(index=False)]
