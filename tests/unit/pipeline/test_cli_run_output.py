"""`deftpipe run --json`: the approval refusal is unchanged (exit 3, nothing written) and stdout stays JSON lines."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deftpipe.cli.app import app
from deftpipe.cli.main import _load_commands
from deftpipe.errors import EXIT_APPROVAL
from tests.unit.pipeline.support import QUICK_FLAGS, tree, tree_digest

_load_commands()


def test_run_json_without_yes_refuses_with_one_result_event(tiny_ws: Path) -> None:
    before = tree_digest(tiny_ws)
    res = CliRunner().invoke(app, ["run", "--workspace", str(tiny_ws), "--max-iterations", "1", "--no-measure",
                                   "--json"], env={"COLUMNS": "200"})
    assert res.exit_code == EXIT_APPROVAL, res.output
    (ev,) = [json.loads(line) for line in res.stdout.splitlines()]
    assert ev["event"] == "result" and ev["command"] == "run" and ev["exit_code"] == EXIT_APPROVAL
    assert ev["status"] == "error" and ev["error"] == "ApprovalNeeded" and ev["results_dir"] is None
    assert "9. Confirmation" in res.stderr  # the pre-flight is still printed, on stderr
    assert tree(tiny_ws / "results") == [] and tree_digest(tiny_ws) == before


@pytest.mark.slow
def test_run_json_streams_all_three_phases(pipe_ws: Path, pipe: dict) -> None:
    res = CliRunner().invoke(app, ["run", "--workspace", str(pipe_ws), *QUICK_FLAGS, "--yes", "--json"],
                             env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    evs = [json.loads(line) for line in res.stdout.splitlines()]  # nothing but JSON lines on stdout
    assert evs[0]["event"] == "run_start" and evs[-1]["event"] == "result" and evs[-1]["status"] == "ok"
    phases = [e["phase"] for e in evs if e["event"] == "phase_start"]
    assert phases == ["automl_phase1", "deft", "final_automl"]
    trials = [e for e in evs if e["event"] == "trial_end"]
    assert {e["phase"] for e in trials} == {"automl_phase1", "final_automl"} and len(trials) == 4
    ends = [e for e in evs if e["event"] == "stage_end"]
    assert [e["seq"] for e in ends] == list(range(1, len(ends) + 1))  # every committed event, in order
    assert ends[0]["iter"] == "baseline" and ends[0]["stage"] == "train"  # the pre-seeded baseline
    assert ends[-1]["iter"] == "final_automl"
    assert evs[-1]["deliverable"] and Path(evs[-1]["results_dir"]).is_dir()
    assert f"Run directory: {evs[-1]['results_dir']}" in res.stderr
