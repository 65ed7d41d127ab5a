"""`deftpipe deft` (SPEC §9 exit codes): approval, a full run, the hard stop and the regression halt/resume."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deftpipe.cli.app import app
from deftpipe.cli.main import _load_commands
from deftpipe.errors import EXIT_APPROVAL, EXIT_HARD_STOP, EXIT_OK, EXIT_REGRESSION
from tests.unit.deft import fake_backend
from tests.unit.deft.loop_support import committed, files_under, state

_load_commands()


def _deft(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, ["deft", *args], catch_exceptions=False)
    return res.exit_code, res.output


def _run_dir(output: str) -> Path:
    dirs = set(re.findall(r"Run directory: (\S+)", output))
    assert len(dirs) == 1, output
    return Path(dirs.pop())


def test_without_tty_or_yes_exits_3_and_writes_nothing(demo_ws: Path, fake: dict) -> None:
    before = files_under(demo_ws)
    code, out = _deft("--workspace", str(demo_ws), "--max-iterations", "1", "--backend", fake_backend.NAME)
    assert code == EXIT_APPROVAL, out
    assert "DEFT pre-flight" in out and "approval needed: nothing was written" in out
    assert files_under(demo_ws) == before
    assert list((demo_ws / "results").iterdir()) == []


def test_unknown_backend_is_a_user_error_before_anything_runs(demo_ws: Path, fake: dict) -> None:
    code, out = _deft("--workspace", str(demo_ws), "--max-iterations", "1", "--backend", "fake_tset", "--yes")
    assert code == 2 and "unknown backend 'fake_tset'" in out and "Did you mean 'fake_test'" in out, out
    assert "DEFT pre-flight" not in out  # refused before the plan is even shown
    assert list((demo_ws / "results").iterdir()) == []


def test_unknown_until_stage_is_refused_before_a_run_exists(demo_ws: Path, fake: dict) -> None:
    code, out = _deft("--workspace", str(demo_ws), "--max-iterations", "1", "--until", "evalute", "--yes",
                      "--backend", fake_backend.NAME)
    assert code == 2 and "Did you mean 'evaluate'" in out, out
    assert list((demo_ws / "results").iterdir()) == []


def test_create_run_refuses_an_unknown_backend(demo_ws: Path, fake: dict) -> None:
    from deftpipe.errors import ConfigError
    from tests.unit.deft.loop_support import new_run

    with pytest.raises(ConfigError, match="unknown backend 'natve'.*Did you mean 'native'"):
        new_run(demo_ws, backend="natve")
    assert list((demo_ws / "results").iterdir()) == []


def test_yes_runs_through_then_regression_halt_and_accept(demo_ws: Path, fake: dict,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(fake_backend.KNOBS, "regress_from_iter", 1)
    code, out = _deft("--workspace", str(demo_ws), "--max-iterations", "1", "--epochs", "2", "--seed", "3",
                      "--kpi-target", "1", "--backend", fake_backend.NAME, "--yes")
    assert code == EXIT_REGRESSION, out
    rd = _run_dir(out)
    assert rd.parent == demo_ws / "results" and re.fullmatch(r"run_\d{8}_\d{6}(_\d+)?", rd.name)
    assert f"--resume {rd} --accept-regression" in out
    doc = state(rd)
    assert doc["status"] == "in_progress" and doc["halt"]["iter"] == "iter1"
    assert doc["config"]["seed"] == 3 and doc["config"]["num_epochs"] == 2
    assert (rd / "preflight.md").is_file()

    code, out = _deft("--resume", str(rd))
    assert code == EXIT_REGRESSION and "--accept-regression" in out, out
    code, out = _deft("--resume", str(rd), "--accept-regression")
    assert code == EXIT_OK, out
    assert f"Run directory: {rd}" in out
    assert state(rd)["status"] == "complete" and committed(rd)[-1] == ("iter1", "loop_stop", "ok")


def test_unreachable_kpi_exits_4(demo_ws: Path, fake: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(fake_backend.KNOBS, "mode", "invert")
    code, out = _deft("--workspace", str(demo_ws), "--max-iterations", "1", "--backend", fake_backend.NAME, "--yes")
    assert code == EXIT_HARD_STOP, out
    assert "KPI unreachable" in out and "unreachable_kpi.txt" in out
    rd = _run_dir(out)
    assert state(rd)["status"] == "failed"


@pytest.mark.slow
def test_native_backend_end_to_end_on_the_tiny_demo(demo_ws: Path, fast_fsync: None) -> None:
    code, out = _deft("--workspace", str(demo_ws), "--max-iterations", "1", "--epochs", "1", "--yes")
    assert code == EXIT_OK, out
    rd = _run_dir(out)
    doc = state(rd)
    assert doc["status"] == "complete" and doc["config"]["backend"] == "native"
    assert [s for _, s, _ in committed(rd)][:3] == ["train", "evaluate", "rca"]
    assert (rd / "best_model.json").is_file()
