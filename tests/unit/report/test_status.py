"""`deftpipe status` / `run_status` and `deftpipe report`: read-only, valid while a run holds its lock."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deftpipe.cli.app import app
from deftpipe.cli.main import _load_commands
from deftpipe.report import REPORT_FILE, run_status
from deftpipe.state import StateStore
from tests.unit.report.builders import FAIL_MESSAGE

_load_commands()
MakeRun = Callable[[str], Path]


def test_status_json_lines_name_current_stage(make_run: MakeRun) -> None:
    rd = make_run("in_progress")
    with StateStore.open(rd):  # the loop holds the lock in another process; status never takes it
        res = CliRunner().invoke(app, ["status", str(rd), "--json"])
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in res.output.strip().splitlines()]
    events, final = lines[:-1], lines[-1]
    assert [e["type"] for e in events] == ["event"] * len(events)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert final["type"] == "status" and final["n_events"] == len(events)
    assert final["current_stage"] == {"iter": "iter1", "stage": "train"}
    assert final["status"] == "in_progress" and final["best"]["iter"] == "baseline"


def test_status_human_shows_halt(make_run: MakeRun) -> None:
    rd = make_run("halted")
    res = CliRunner().invoke(app, ["status", str(rd)])
    assert res.exit_code == 0, res.output
    assert "HALTED at iter1" in res.output and "--accept-regression" in res.output
    assert res.output.count("  #") == 5  # the last five events


def test_status_failed(make_run: MakeRun) -> None:
    st = run_status(make_run("failed"))
    assert st["status"] == "failed"
    assert st["failure"] == {"iter": "iter1", "stage": "data_merge", "message": FAIL_MESSAGE}
    assert st["current_stage"] is None


def test_status_complete(make_run: MakeRun) -> None:
    st = run_status(make_run("complete"))
    assert st["stop_reason"] == "metric_met"
    assert st["best"]["iter"] == "iter1" and st["best"]["passed"] is True


def test_status_of_a_non_run_exits_2(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["status", str(tmp_path)])
    assert res.exit_code == 2
    assert "not a deftpipe run directory" in res.output


def test_report_cli_renders_and_opens(make_run: MakeRun, monkeypatch: pytest.MonkeyPatch) -> None:
    rd = make_run("in_progress")
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)
    with StateStore.open(rd):
        res = CliRunner().invoke(app, ["report", str(rd), "--open"])
    assert res.exit_code == 0, res.output
    assert (rd / REPORT_FILE).exists()
    assert opened == [(rd / REPORT_FILE).as_uri()]
