from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deftpipe.cli.app import app
from deftpipe.cli.main import _load_commands

_load_commands()
FAKE = "tests.unit.automl.fake_backend:FakeBackend"


def test_without_tty_or_yes_prints_the_summary_writes_nothing_exits_3(ws: Path, fast_tmp: Path) -> None:
    out = fast_tmp / "out"
    res = CliRunner().invoke(app, ["automl", "--workspace", str(ws), "--out", str(out), "--backend", FAKE,
                                   "--param", "train.optim.lr=loguniform(1e-5,1e-2)", "--pin",
                                   "dataset.classify.batch_size=8", "--epochs", "2"])
    assert res.exit_code == 3, res.output
    assert "pre-launch summary" in res.output and "train.optim.lr ~ loguniform" in res.output
    assert "dataset.classify.batch_size=8" in res.output and "train.num_epochs=2" in res.output
    assert not out.exists()


def test_unknown_algorithm_exits_2_with_a_suggestion(ws: Path) -> None:
    res = CliRunner().invoke(app, ["automl", "--workspace", str(ws), "--algorithm", "hyperbnad", "--yes"])
    assert res.exit_code == 2
    assert "Did you mean 'hyperband'" in res.output


@pytest.mark.slow
def test_yes_runs_the_study_and_prints_one_result_line(ws: Path, fast_tmp: Path) -> None:
    out = fast_tmp / "out"
    res = CliRunner().invoke(app, ["automl", "--workspace", str(ws), "--out", str(out), "--backend", FAKE,
                                   "--recommendations", "2", "--epochs", "2", "--noise-rerun", "off", "--yes"])
    assert res.exit_code == 0, res.output
    assert "AutoML best trial_000" in res.output
    doc = json.loads((out / "best_rec.json").read_text())
    assert doc["best"]["observed_budget"] == {"num_epochs": 2}
    assert (out / "trials.csv").is_file() and (out / "automl_summary.md").is_file()
