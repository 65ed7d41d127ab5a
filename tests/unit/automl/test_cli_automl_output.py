"""`deftpipe automl --json` / `--log-level`: refusal as JSON; a run streams trial events and ends with its result."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deftpipe.cli.app import app
from deftpipe.cli.main import _load_commands

_load_commands()
FAKE = "tests.unit.automl.fake_backend:FakeBackend"


def test_json_without_yes_is_one_result_event_and_writes_nothing(ws: Path, fast_tmp: Path) -> None:
    out = fast_tmp / "out"
    res = CliRunner().invoke(app, ["automl", "--workspace", str(ws), "--out", str(out), "--backend", FAKE,
                                   "--epochs", "2", "--json"])
    assert res.exit_code == 3, res.output
    (ev,) = [json.loads(line) for line in res.stdout.splitlines()]
    assert ev["event"] == "result" and ev["exit_code"] == 3 and ev["command"] == "automl"
    assert "pre-launch summary" in res.stderr
    assert not out.exists()


@pytest.mark.slow
def test_json_run_streams_trials_and_the_result(ws: Path, fast_tmp: Path) -> None:
    out = fast_tmp / "out"
    res = CliRunner().invoke(app, ["automl", "--workspace", str(ws), "--out", str(out), "--backend", FAKE,
                                   "--recommendations", "2", "--epochs", "2", "--noise-rerun", "off", "--yes",
                                   "--json"])
    assert res.exit_code == 0, res.output
    evs = [json.loads(line) for line in res.stdout.splitlines()]
    ends = [e for e in evs if e["event"] == "trial_end"]
    assert [e["n_done"] for e in ends] == [1, 2] and all(e["n_trials"] == 2 for e in ends)
    assert len([e for e in evs if e["event"] == "trial_start"]) == 2
    assert [e["pct"] for e in evs if e["event"] == "progress" and e["task"] == "automl · trials"] == [50.0, 100.0]
    assert evs[-1]["event"] == "result" and evs[-1]["status"] == "ok" and evs[-1]["best_rec_id"].startswith("trial_")
    assert (out / "logs").is_dir() and any((out / "logs").glob("*.log"))
