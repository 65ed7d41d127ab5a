"""Resume after a crash at every stage boundary and inside every stage (SPEC §4: committed stages are never
redone; an interrupted stage restarts with its output folder cleared) — the resumed run must commit the same
(iter, stage, status) sequence and train on the same combined CSVs as an uninterrupted run of the same seed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from deftpipe.deft import steps
from deftpipe.deft.loop import run_loop
from tests.conftest import REPO
from tests.unit.deft.loop_support import (
    committed,
    demo_template,  # noqa: F401
    demo_ws,  # noqa: F401
    fake,  # noqa: F401
    fast_fsync,  # noqa: F401
    journal,
    new_run,
    reference_run,
    run_relative_rows,
    state,
)

JUNK = "partial_output.junk"


class SimulatedCrash(RuntimeError):
    """Stands in for a process dying mid-stage (not a DeftError: the driver must not commit anything)."""


@pytest.fixture(scope="module")
def reference(demo_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    return reference_run(demo_template, tmp_path_factory.mktemp("ref"), max_iterations=2)


def _combined_rows(rd: Path) -> dict[str, Any]:
    its = state(rd)["iterations"]
    return {label: (run_relative_rows(rd, rec["combined_training_csv"]), run_relative_rows(rd, rec["provenance_csv"]))
            for label, rec in its.items() if rec.get("combined_training_csv")}


def _assert_same_as_reference(rd: Path, reference: Path) -> None:
    assert committed(rd) == committed(reference)
    events = state(rd)["events"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert journal(rd) == events
    assert _combined_rows(rd) == _combined_rows(reference)
    assert state(rd)["status"] == "complete"


def _partial_work(rd: Path, label: str, stage: str) -> None:
    """What a process killed mid-stage leaves behind: a stray file in the stage's folder, or a torn output."""
    it = rd / label
    if stage == "data_merge":  # shares iter<N>/dataset with the SDG images: its own outputs are the files
        torn = it / "dataset" / f"train_combined_{label}.csv"
        torn.write_text("input_path,golden_path\nimages/torn")
        return
    folder = {"train": it / "train", "evaluate": it / "inference", "rca": it / "rca_results" / "19990101_000000",
              "routing": it / "routing_results" / "19990101_000000", "sdg": it / "dataset" / "images",
              "data_mining": it / "mining_filter"}[stage]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / JUNK).write_text("half-written\n")


@pytest.mark.slow
def test_crash_inside_every_stage_then_resume(demo_ws: Path, fake: dict, reference: Path,  # noqa: F811
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    rd = new_run(demo_ws, max_iterations=2, kpi_target_pct=0.0)
    crashed: list[tuple[str, str]] = []
    real = dict(steps.STEPS)

    def crashing(stage: str) -> Any:
        def step(ctx: Any, store: Any, label: str, progress: Any) -> Any:
            result = real[stage](ctx, store, label, progress)  # every output written ...
            if (label, stage) not in crashed:
                crashed.append((label, stage))
                _partial_work(rd, label, stage)
                raise SimulatedCrash(f"killed inside {label}/{stage}")  # ... but nothing committed
            return result
        return step

    for stage in real:
        monkeypatch.setitem(steps.STEPS, stage, crashing(stage))
    real_finalize = steps.finalize

    def crashing_finalize(ctx: Any, store: Any) -> Any:
        out = real_finalize(ctx, store)
        if ("final", "loop_stop") not in crashed:
            crashed.append(("final", "loop_stop"))
            raise SimulatedCrash("killed after writing best_model.json, before loop_stop was committed")
        return out

    monkeypatch.setattr(steps, "finalize", crashing_finalize)
    for attempt in range(40):
        n_before = len(committed(rd))
        try:
            outcome = run_loop(rd)
            break
        except SimulatedCrash:
            assert len(committed(rd)) == n_before + (0 if attempt == 0 else 1)  # only the retried stage landed
    else:
        pytest.fail("the run never completed")
    assert outcome.status == "complete"
    assert len(crashed) == len(committed(reference))  # every stage (loop_stop included) crashed once
    _assert_same_as_reference(rd, reference)
    assert not list(rd.rglob(JUNK)), "a resumed stage kept files of its interrupted attempt"
    assert all(len(list((rd / lab / "rca_results").iterdir())) == 1 for lab in ("baseline", "iter1"))
    assert all(len(list((rd / lab / "routing_results").iterdir())) == 1 for lab in ("iter1", "iter2"))


@pytest.mark.slow
def test_stop_and_resume_at_every_stage_boundary(demo_ws: Path, fake: dict, reference: Path) -> None:  # noqa: F811
    rd = new_run(demo_ws, max_iterations=2, kpi_target_pct=0.0)
    expected = committed(reference)
    for i, (label, stage, _) in enumerate(expected[:-1]):
        outcome = run_loop(rd, until=stage)
        assert committed(rd) == expected[: i + 1], f"until={stage} should stop right after {label}/{stage}"
        assert outcome.status == "in_progress"
    outcome = run_loop(rd)
    assert outcome.status == "complete" and outcome.stop_reason == "max_iterations"
    _assert_same_as_reference(rd, reference)


def test_resume_of_a_complete_run_commits_nothing(demo_ws: Path, fake: dict) -> None:  # noqa: F811
    rd = new_run(demo_ws, max_iterations=0, kpi_target_pct=0.0)
    assert run_loop(rd).status == "complete"
    before = (rd / "deft_state.json").read_bytes()
    outcome = run_loop(rd)
    assert outcome.status == "complete" and outcome.lines == []
    assert (rd / "deft_state.json").read_bytes() == before


def test_unknown_until_stage_is_refused_with_a_suggestion(demo_ws: Path, fake: dict) -> None:  # noqa: F811
    from deftpipe.errors import ContractError

    rd = new_run(demo_ws, max_iterations=1)
    with pytest.raises(ContractError, match="unknown stage 'evalute'.*Did you mean 'evaluate'"):
        run_loop(rd, until="evalute")
    assert committed(rd) == []


@pytest.mark.slow
def test_killed_process_leaves_a_stale_lock_that_resume_takes_over(demo_ws: Path, fake: dict,  # noqa: F811
                                                                  reference: Path) -> None:
    """A real kill (os._exit inside iter1's train, no cleanup at all), then a resume in this process."""
    rd = new_run(demo_ws, max_iterations=2, kpi_target_pct=0.0)
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(REPO)!r})
        from tests.unit.deft import fake_backend
        fake_backend.ensure_registered()
        real_train = fake_backend.FakeDeftBackend.train
        def train(self, request):
            if "iter1" in str(request.out_dir):
                real_train(self, request)
                os._exit(137)
            return real_train(self, request)
        fake_backend.FakeDeftBackend.train = train
        from deftpipe.deft.loop import run_loop
        run_loop({str(rd)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert proc.returncode == 137, proc.stderr
    assert json.loads((rd / ".lock").read_text())["pid"] > 0  # the dead process's lock is still there
    assert committed(rd)[-1][:2] == ("iter1", "data_merge")
    lines: list[str] = []
    assert run_loop(rd, on_event=lines.append).status == "complete"
    assert any("took over a stale lock" in line for line in lines)
    _assert_same_as_reference(rd, reference)
