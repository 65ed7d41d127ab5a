from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from deftpipe.errors import ContractError, StateConflict
from deftpipe.state.rundir import clear_stage_dir, find_resumable, new_run_dir
from deftpipe.state.store import StateStore

from .conftest import new_store, run_next, write_file

NOW = datetime(2026, 5, 4, 6, 46, 53, tzinfo=timezone.utc)


def test_new_run_dir_name_and_collisions(tmp_path: Path) -> None:
    results = tmp_path / "ws" / "results"
    made = [new_run_dir(results, now=NOW) for _ in range(3)]
    assert [p.name for p in made] == ["run_20260504_064653", "run_20260504_064653_1", "run_20260504_064653_2"]
    assert all(p.is_dir() and p.parent == results.resolve() for p in made)


def test_new_run_dir_converts_to_utc(tmp_path: Path) -> None:
    from datetime import timedelta

    local = NOW.astimezone(timezone(timedelta(hours=8)))
    assert new_run_dir(tmp_path / "ws/results", now=local).name == "run_20260504_064653"


def test_new_run_dir_refuses_results_outside_workspace(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (ws / "results").symlink_to(elsewhere)
    with pytest.raises(ContractError, match="outside the workspace"):
        new_run_dir(ws / "results", now=NOW)
    with pytest.raises(ContractError, match="outside the workspace"):
        new_run_dir(tmp_path / "other" / "results", now=NOW, workspace_root=ws)


def test_clear_stage_dir(rd: Path, store: StateStore) -> None:
    stage_dir = rd / "iter1" / "sdg"
    write_file(stage_dir / "half_written.csv")
    write_file(stage_dir / "sub" / "x.png")
    out = clear_stage_dir(stage_dir)
    assert out == stage_dir and stage_dir.is_dir() and not any(stage_dir.iterdir())
    assert clear_stage_dir(rd / "iter1" / "new").is_dir()
    assert (rd / "deft_state.json").exists()


def test_clear_stage_dir_refuses_outside_a_run(rd: Path, store: StateStore, tmp_path: Path) -> None:
    victim = write_file(tmp_path / "precious" / "data.csv").parent
    with pytest.raises(ContractError, match="not inside a run directory"):
        clear_stage_dir(victim)
    with pytest.raises(ContractError, match="not a folder inside the run directory"):
        clear_stage_dir(rd, results_dir=rd)
    with pytest.raises(ContractError, match="not a folder inside the run directory"):
        clear_stage_dir(victim, results_dir=rd)
    assert (victim / "data.csv").exists()


def test_find_resumable_rules(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="not a deftpipe run directory"):
        find_resumable(tmp_path)
    rd = tmp_path / "run_a"
    s = new_store(rd)
    run_next(s)
    point = find_resumable(rd)
    assert point.next_stage == ("baseline", "evaluate") and point.stale_lock_pid is None and point.halt is None
    s.set_halt(reason="regression", iter_label="baseline", value=1.0, best=0.5, margin=0.1)
    assert find_resumable(rd).halt is not None
    s.clear_halt()
    s.mark_failed("evaluate", "inference crashed")
    with pytest.raises(StateConflict, match="failed at baseline/evaluate: inference crashed; failed runs are never"):
        find_resumable(rd)
    done = new_store(tmp_path / "run_b", max_iterations=0)
    run_next(done)
    run_next(done)
    done.complete({})
    with pytest.raises(StateConflict, match="already complete"):
        find_resumable(tmp_path / "run_b")
