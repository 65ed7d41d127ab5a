from __future__ import annotations

from pathlib import Path

import pytest

from deftpipe.errors import ContractError
from deftpipe.state import stages
from deftpipe.state.store import StateStore

from .conftest import new_store, run_next

EXPECTED_TWO_ITERATIONS = [
    ("baseline", "train"), ("baseline", "evaluate"), ("baseline", "rca"),
    ("iter1", "routing"), ("iter1", "sdg"), ("iter1", "data_mining"), ("iter1", "data_merge"),
    ("iter1", "train"), ("iter1", "evaluate"), ("iter1", "rca"),
    ("iter2", "routing"), ("iter2", "sdg"), ("iter2", "data_mining"), ("iter2", "data_merge"),
    ("iter2", "train"), ("iter2", "evaluate"), ("iter2", "loop_stop"),
]


def test_full_sequence_matches_spec_order_without_rca_after_last_iteration(store: StateStore) -> None:
    seen = []
    while store.next_stage() is not None:
        seen.append(run_next(store))
    assert seen == EXPECTED_TWO_ITERATIONS
    assert ("iter2", "rca") not in seen
    assert store.state.current_iteration == 2
    assert [e.seq for e in store.state.events] == list(range(1, len(seen) + 1))
    assert store.state.iterations["iter1"].status == "complete"
    assert store.state.iterations["iter2"].status == "complete"


def test_passing_evaluate_stops_the_loop_at_baseline(store: StateStore) -> None:
    run_next(store)
    run_next(store, passed=True)
    assert store.next_stage() == ("baseline", "loop_stop")


def test_zero_iterations_has_no_rca(tmp_path: Path) -> None:
    s = new_store(tmp_path / "run", max_iterations=0)
    assert stages.stages_for("baseline", max_iterations=0) == ("train", "evaluate")
    run_next(s)
    run_next(s)
    assert s.next_stage() == ("baseline", "loop_stop")


def test_next_stage_none_when_halted_failed_or_complete() -> None:
    base = {"status": "in_progress", "max_iterations": 1, "current_iteration": 0,
            "iterations": {"baseline": {"stage_completed": "rca"}}}
    assert stages.next_stage(base) == ("iter1", "routing")
    assert stages.next_stage({**base, "halt": {"reason": "regression"}}) is None
    assert stages.next_stage({**base, "status": "failed"}) is None
    assert stages.next_stage({**base, "status": "complete"}) is None


def test_anomalygen_reads_as_sdg() -> None:
    assert stages.normalize_stage("anomalygen") == "sdg"
    doc = {"status": "in_progress", "max_iterations": 2, "current_iteration": 1,
           "iterations": {"baseline": {"stage_completed": "rca"}, "iter1": {"stage_completed": "anomalygen"}}}
    assert stages.next_stage(doc) == ("iter1", "data_mining")
    assert stages.is_stage_committed(doc, "iter1", "sdg")
    assert not stages.is_stage_committed(doc, "iter1", "data_merge")


def test_unknown_stage_suggests_closest() -> None:
    with pytest.raises(ContractError, match="Did you mean 'data_merge'"):
        stages.normalize_stage("data_merg")


def test_iteration_labels() -> None:
    assert stages.iteration_label(0) == "baseline"
    assert stages.iteration_label(3) == "iter3"
    assert stages.iteration_number("final_automl") is None
    assert stages.iteration_number("iter12") == 12
    with pytest.raises(ContractError, match="iteration label 'iter0'"):
        stages.iteration_number("iter0")


def test_loop_stop_marks_stages_up_to_evaluate_committed() -> None:
    doc = {"status": "complete", "max_iterations": 2, "current_iteration": 0,
           "iterations": {"baseline": {"stage_completed": "loop_stop"}}}
    assert stages.is_stage_committed(doc, "baseline", "evaluate")
    assert not stages.is_stage_committed(doc, "baseline", "rca")
    assert stages.is_stage_committed(doc, "baseline", "loop_stop")
