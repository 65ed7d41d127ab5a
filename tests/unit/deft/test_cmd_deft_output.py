"""`deftpipe deft --json` / `--log-level`: JSON lines only on stdout, the refusal unchanged, levels on terminal and file."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from deftpipe.cli.app import app
from deftpipe.cli.main import _load_commands
from deftpipe.errors import EXIT_APPROVAL, EXIT_OK
from tests.unit.deft import fake_backend
from tests.unit.deft.loop_support import files_under

_load_commands()


def _invoke(*args: str) -> Any:
    return CliRunner().invoke(app, ["deft", *args], catch_exceptions=False)


def _json_lines(stdout: str) -> list[dict[str, Any]]:
    lines = stdout.splitlines()
    assert lines, "nothing on stdout"
    return [json.loads(line) for line in lines]  # every line must parse: nothing else may be on stdout


def _log_text(rd: Path) -> str:
    logs = sorted((rd / "logs").glob("*.log"))
    assert logs, f"no log file under {rd / 'logs'}"
    return "\n".join(p.read_text(encoding="utf-8") for p in logs)


def test_json_streams_stage_events_and_a_final_result(demo_ws: Path, fake: dict) -> None:
    res = _invoke("--workspace", str(demo_ws), "--max-iterations", "1", "--epochs", "2", "--backend",
                  fake_backend.NAME, "--yes", "--json", "--log-level", "debug")
    assert res.exit_code == EXIT_OK, res.output
    evs = _json_lines(res.stdout)
    assert all({"ts", "event"} <= set(e) for e in evs)
    assert evs[-1]["event"] == "result" and evs[-1]["status"] == "ok" and evs[-1]["exit_code"] == 0
    rd = Path(evs[-1]["results_dir"])
    ends = [e for e in evs if e["event"] == "stage_end"]
    assert [e["seq"] for e in ends] == list(range(1, len(ends) + 1))
    assert {e["stage"] for e in ends} >= {"train", "evaluate", "rca", "routing", "sdg", "data_mining",
                                          "data_merge", "loop_stop"}
    assert all(e["phase"] == "deft" and e["status"] == "ok" and e["iter"] for e in ends)
    assert all(e["metric"]["name"] for e in ends if e["stage"] == "evaluate")
    starts = {(e["iter"], e["stage"]) for e in evs if e["event"] == "stage_start"}
    assert {(e["iter"], e["stage"]) for e in ends} <= starts
    assert evs[0]["event"] == "run_start" or any(e["event"] == "run_start" for e in evs)
    assert any(e["event"] == "progress" for e in evs)  # training / inference milestones
    assert "Run directory:" in res.stderr  # human text moved to stderr, not dropped
    # --log-level debug reaches the log file; the file always keeps the info status lines too
    text = _log_text(rd)
    assert " DEBUG deftpipe.deft.loop: stage baseline/train starting" in text
    assert " INFO deftpipe.run: [baseline · train]" in text


def test_json_without_yes_keeps_the_refusal_and_stdout_clean(demo_ws: Path, fake: dict) -> None:
    before = files_under(demo_ws)
    res = _invoke("--workspace", str(demo_ws), "--max-iterations", "1", "--backend", fake_backend.NAME, "--json")
    assert res.exit_code == EXIT_APPROVAL, res.output
    (ev,) = _json_lines(res.stdout)
    assert ev["event"] == "result" and ev["status"] == "error" and ev["exit_code"] == EXIT_APPROVAL
    assert "approval needed" in ev["message"]
    assert "DEFT pre-flight" in res.stderr  # the plan is still shown, on stderr
    assert files_under(demo_ws) == before


def test_log_level_warning_hides_info_lines_but_the_file_keeps_them(demo_ws: Path, fake: dict) -> None:
    res = _invoke("--workspace", str(demo_ws), "--max-iterations", "1", "--epochs", "2", "--backend",
                  fake_backend.NAME, "--yes", "--until", "rca", "--log-level", "warning")
    assert res.exit_code == EXIT_OK, res.output
    assert "[baseline · train]" not in res.output and "DEFT pre-flight" not in res.output
    assert ": 1/" not in res.output and "(100%)" not in res.output  # no progress lines either
    rd = Path(res.stdout.split("Run directory: ")[1].split()[0])
    text = _log_text(rd)
    assert " INFO deftpipe.run: [baseline · train]" in text and " DEBUG " not in text


def test_unknown_log_level_suggests_the_closest(demo_ws: Path, fake: dict) -> None:
    res = _invoke("--workspace", str(demo_ws), "--max-iterations", "1", "--backend", fake_backend.NAME,
                  "--yes", "--log-level", "warn")
    assert res.exit_code == 2 and "Did you mean 'warning'" in res.output, res.output
    assert list((demo_ws / "results").iterdir()) == []
