"""Resume of a three-phase run interrupted at each phase boundary (SPEC §7 + §4 "committed stages are never
redone"): `run_phases(rd, load_config(rd))` or `deftpipe run --resume RD` finishes without re-running the
Phase 1 study, a committed DEFT stage or the Phase 3 study, and ends with the same trajectory and the same
committed (iter, stage, status) sequence as the uninterrupted QUICK run of the same seed."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from deftpipe.cli.app import app
from deftpipe.cli.main import _load_commands
from deftpipe.deft import steps
from deftpipe.pipeline import finish, handoff
from deftpipe.pipeline.run import load_config, run_phases
from tests.unit.pipeline import fake_backend
from tests.unit.pipeline.support import (
    QuickRun,
    committed,
    demo_template,  # noqa: F401
    new_results_dir,
    pipe,  # noqa: F401
    pipe_ws,  # noqa: F401
    quick_run,  # noqa: F401
    settings,
    state,
    summary_trajectory,
    trials_count,
)

pytestmark = pytest.mark.slow
_load_commands()


class SimulatedCrash(RuntimeError):
    """Stands in for the process dying at a boundary (not a DeftError: nothing may be committed for it)."""


def _crash(*_: Any, **__: Any) -> Any:
    raise SimulatedCrash("killed here")


def _patch_after_phase1(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(handoff, "merged_spec", _crash)


def _patch_inside_handoff(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(handoff, "preseed_baseline", _crash)  # the DEFT run exists, its baseline is not pre-seeded yet


def _patch_mid_deft(mp: pytest.MonkeyPatch) -> None:
    mp.setitem(steps.STEPS, "data_mining", _crash)  # iter1 routing and sdg are committed


def _patch_after_deft(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(handoff, "phase3_inputs", _crash)


def _patch_after_phase3_study(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(finish, "register_phase3", _crash)


def _patch_before_finish(mp: pytest.MonkeyPatch) -> None:
    mp.setattr(finish, "final_selection", _crash)


def _resume_api(rd: Path) -> list[str]:
    return run_phases(rd, load_config(rd), emit=lambda line: None).trajectory


def _resume_cli(rd: Path) -> list[str]:
    res = CliRunner().invoke(app, ["run", "--resume", str(rd)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert res.output.rstrip().splitlines()[-1] == f"Run directory: {rd.resolve()}"
    return summary_trajectory(rd)


BOUNDARIES: dict[str, tuple[Callable[[pytest.MonkeyPatch], None], Callable[[Path], list[str]]]] = {
    "after_phase1": (_patch_after_phase1, _resume_api),
    "inside_handoff": (_patch_inside_handoff, _resume_api),
    "mid_deft": (_patch_mid_deft, _resume_api),
    "after_deft": (_patch_after_deft, _resume_api),
    "after_phase3_study": (_patch_after_phase3_study, _resume_cli),
    "before_finish": (_patch_before_finish, _resume_api),
}


def _events(rd: Path) -> list[dict[str, Any]]:
    return state(rd)["events"] if (rd / "deft_state.json").exists() else []


@pytest.mark.parametrize("boundary", list(BOUNDARIES))
def test_resume_at_a_phase_boundary_finishes_like_an_uninterrupted_run(
        boundary: str, pipe_ws: Path, pipe: dict, quick_run: QuickRun) -> None:  # noqa: F811
    patch, resume = BOUNDARIES[boundary]
    ps = settings(pipe_ws)
    rd = new_results_dir(pipe_ws, ps)
    with pytest.MonkeyPatch.context() as mp:
        patch(mp)
        with pytest.raises(SimulatedCrash, match="killed here"):
            run_phases(rd, ps, emit=lambda line: None)
    phase1_trials = trials_count(rd / "automl_phase1")
    events_before = _events(rd)
    phase3_done = (rd / "final_automl" / "best_rec.json").exists()
    first = list(fake_backend.TRAIN_LOG)
    fake_backend.TRAIN_LOG.clear()

    trajectory = resume(rd)

    assert trajectory == quick_run.trajectory
    assert committed(rd) == committed(quick_run.rd)
    after = state(rd)["events"]
    assert after[:len(events_before)] == events_before  # nothing committed before the crash was redone
    assert [e["seq"] for e in after] == list(range(1, len(after) + 1))
    assert json.loads((rd / "best_model.json").read_text())["iteration"] == \
        json.loads((quick_run.rd / "best_model.json").read_text())["iteration"]
    resumed = fake_backend.TRAIN_LOG
    # the Phase 1 study is not re-run
    assert trials_count(rd / "automl_phase1") == phase1_trials == 2
    assert not [c for c in resumed if c.under("automl_phase1")]
    # DEFT trains its iteration exactly once over both processes, and never the pre-seeded baseline
    both = first + resumed
    assert len([c for c in both if c.under("iter1")]) == 1
    assert not [c for c in both if c.under("baseline")]
    assert state(rd)["iterations"]["baseline"]["source"] == "automl_phase1"
    # the Phase 3 study is not re-run once it finished
    p3 = [c for c in resumed if c.under("final_automl")]
    assert len(p3) == (0 if phase3_done else 2)
    assert trials_count(rd / "final_automl") == 2
    assert state(rd)["status"] == "complete" and state(rd)["iterations"]["final_automl"]["status"] == "complete"


def test_resume_of_a_finished_run_changes_nothing(pipe: dict, quick_run: QuickRun) -> None:  # noqa: F811
    rd = quick_run.rd
    events = state(rd)["events"]
    best_model = (rd / "best_model.json").read_bytes()
    trials = (trials_count(rd / "automl_phase1"), trials_count(rd / "final_automl"))
    trajectory = run_phases(rd, load_config(rd), emit=lambda line: None).trajectory
    assert trajectory == quick_run.trajectory
    assert state(rd)["events"] == events and (rd / "best_model.json").read_bytes() == best_model
    assert (trials_count(rd / "automl_phase1"), trials_count(rd / "final_automl")) == trials
    assert fake_backend.TRAIN_LOG == []
