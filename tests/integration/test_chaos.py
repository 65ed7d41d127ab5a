"""Chaos in CI: the QUICK pipeline on the tiny demo, hard-killed (SIGKILL, no cleanup) inside a state
commit, inside the training-CSV merge and inside a checkpoint save, resumed after each kill, ends
exactly like an uninterrupted run: same committed stages, training CSVs and metrics, valid JSON, no
orphan temp file, a deliverable. `bench/chaos.py --kills N` is the long version (every site, random kills)."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from deftpipe.chaos import plan_kills, quick_run_argv, run_chaos, run_reference
from deftpipe.chaos.driver import make_demo_data

pytestmark = pytest.mark.slow

# In the order the pipeline reaches them: the baseline pre-seed commit, the iter1 merge, iter1 training.
CI_FAULTS = ("state_commit:1", "csv_merge:1", "checkpoint_save:1")
FAST = ("--no-measure",)  # the pre-flight timing run changes no result, only the estimate


def test_three_hard_kills_then_resume_equal_the_uninterrupted_run(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    ref_ws, ws = tmp_path / "reference_ws", tmp_path / "chaos_ws"
    for root in (ref_ws, ws):
        make_demo_data(root, scale="tiny", seed=0, log_dir=logs)
    reference = run_reference(ref_ws, quick_run_argv(ref_ws, extra=FAST), log_dir=logs)
    plan = plan_kills(len(CI_FAULTS), rng=random.Random(0), faults=CI_FAULTS)
    report = run_chaos(ws, quick_run_argv(ws, extra=FAST), plan, reference=reference, log_dir=logs,
                       emit=lambda _line: None)
    assert report.failure is None, report.failure
    assert report.differences == [], "\n".join(report.differences)
    assert (report.delivered, report.survived) == (3, 3), report.summary()
