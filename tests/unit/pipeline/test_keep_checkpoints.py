"""`--keep-checkpoints best_latest|all` on `run`, `deft` and `automl` (SPEC §10): the choice reaches every backend
created for training, and with the native backend the trial / iteration folders hold exactly the promised files."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from deftpipe.backends.base import TrainRequest, TrainResult
from deftpipe.backends.registry import create_training_backend
from deftpipe.cli.app import app
from deftpipe.cli.main import _load_commands
from deftpipe.errors import EXIT_USER, ConfigError
from tests.unit.deft.loop_support import files_under
from tests.unit.pipeline.fake_backend import FakePipelineBackend

_load_commands()
NAME = "fake_keep"
CREATED: list[str] = []  # keep_checkpoints of the backend instance behind every train call


class KeepRecordingBackend(FakePipelineBackend):
    name = NAME

    def __init__(self, *, keep_checkpoints: str = "best_latest") -> None:
        self.keep_checkpoints = keep_checkpoints

    def train(self, request: TrainRequest) -> TrainResult:
        CREATED.append(self.keep_checkpoints)
        return super().train(request)


class NoRetentionBackend(FakePipelineBackend):
    """A plug-in whose factory takes no options at all."""

    name = "fake_no_retention"

    def __init__(self) -> None:
        pass


def _register(name: str, factory: Any) -> None:
    from deftpipe.backends.registry import _FACTORIES, register_backend

    if name not in _FACTORIES:
        register_backend(name)(factory)


@pytest.fixture
def created(pipe: dict[str, Any]) -> Iterator[list[str]]:
    _register(NAME, KeepRecordingBackend)
    CREATED.clear()
    yield CREATED
    CREATED.clear()


def _invoke(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return res.exit_code, res.output


def _only_run(ws: Path) -> Path:
    (rd,) = sorted((ws / "results").glob("run_*"))
    return rd


def test_deft_trains_every_iteration_with_the_chosen_retention(pipe_ws: Path, created: list[str]) -> None:
    code, out = _invoke("deft", "-w", str(pipe_ws), "--backend", NAME, "--max-iterations", "1", "--kpi-target", "0",
                        "--epochs", "2", "--num-sdg", "8", "--keep-checkpoints", "all", "--yes", "-q")
    assert code == 0, out
    assert created == ["all", "all"]  # baseline and iter1
    rd = _only_run(pipe_ws)
    assert json.loads((rd / "deft_state.json").read_text())["config"]["keep_checkpoints"] == "all"
    assert json.loads((rd / "provenance.json").read_text())["resolved_config"]["keep_checkpoints"] == "all"


def test_automl_trials_train_with_the_chosen_retention(pipe_ws: Path, created: list[str]) -> None:
    code, out = _invoke("automl", "-w", str(pipe_ws), "--backend", NAME, "--recommendations", "2", "--epochs", "2",
                        "--noise-rerun", "off", "--keep-checkpoints", "all", "--yes")
    assert code == 0, out
    assert created and set(created) == {"all"}
    plan = json.loads((_only_run(pipe_ws) / "automl_phase1" / "automl_plan.json").read_text())
    assert plan["keep_checkpoints"] == "all"


def test_run_hands_the_retention_to_both_automl_phases_and_the_loop(pipe_ws: Path, created: list[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import deftpipe.automl
    import deftpipe.pipeline.run as pipeline_run

    seen: dict[str, Any] = {}

    def fake_phases(rd: Path, settings: Any, **kw: Any) -> Any:
        seen["settings"] = settings
        return pipeline_run.PipelineOutcome(results_dir=rd)

    monkeypatch.setattr(pipeline_run, "run_phases", fake_phases)
    code, out = _invoke("run", "-w", str(pipe_ws), "--backend", NAME, "--max-iterations", "1", "--epochs", "2",
                        "--no-measure", "--keep-checkpoints", "all", "--yes", "-q")
    assert code == 0, out
    settings = seen["settings"]
    assert settings.keep_checkpoints == "all"
    saved = json.loads((_only_run(pipe_ws) / "pipeline_config.json").read_text())["settings"]
    assert saved["keep_checkpoints"] == "all"
    assert pipeline_run._deft_settings(settings, pipe_ws / "specs/baseline_spec.yaml").keep_checkpoints == "all"
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(deftpipe.automl, "run_automl", lambda *a, **kw: calls.append(kw))
    pipeline_run._automl(settings, pipe_ws / "results" / "x")
    assert calls[0]["keep_checkpoints"] == "all"


def test_an_unknown_retention_is_refused_with_the_closest_choice(pipe_ws: Path, created: list[str]) -> None:
    before = files_under(pipe_ws)
    for command in (["deft", "--max-iterations", "0"], ["automl"], ["run", "--max-iterations", "0", "--no-measure"]):
        code, out = _invoke(*command, "-w", str(pipe_ws), "--backend", NAME, "--keep-checkpoints", "al", "--yes")
        assert code == EXIT_USER, (command, out)
        assert "--keep-checkpoints is 'al'" in out and "Did you mean 'all'" in out, out
    assert files_under(pipe_ws) == before and not created


def test_a_backend_without_the_option_keeps_its_own_files_but_refuses_all(pipe: dict[str, Any]) -> None:
    _register(NoRetentionBackend.name, NoRetentionBackend)
    assert isinstance(create_training_backend(NoRetentionBackend.name), NoRetentionBackend)
    with pytest.raises(ConfigError, match="has no keep_checkpoints option"):
        create_training_backend(NoRetentionBackend.name, keep_checkpoints="all")


# --- the native backend: real file listings ------------------------------------------------------------------


def _train_dirs(rd: Path) -> list[Path]:
    return sorted(p.parent for p in rd.rglob("status.json") if p.parent.name == "train")


def _assert_kept(train_dir: Path, keep: str, epochs: int) -> None:
    kept = sorted(p.name for p in train_dir.glob("*.pth"))
    status = json.loads((train_dir / "status.json").read_text())
    if keep == "all":
        assert [name[:len("model_epoch_000")] for name in kept] == [f"model_epoch_{e:03d}" for e in
                                                                    range(1, epochs + 1)], (train_dir, kept)
    else:
        assert kept == sorted({Path(status["best_val"]).name, Path(status["latest"]).name}), (train_dir, kept)


@pytest.mark.slow
@pytest.mark.parametrize("keep", ["best_latest", "all"])
def test_native_deft_and_automl_keep_exactly_the_promised_files(tiny_ws: Path, keep: str) -> None:
    epochs = 3
    code, out = _invoke("deft", "-w", str(tiny_ws), "--epochs", str(epochs), "--max-iterations", "0",
                        "--keep-checkpoints", keep, "--yes", "-q")
    assert code == 0, out
    # pinned to a learning rate that separates the classes on this tiny set, so every trial is eligible
    code, out = _invoke("automl", "-w", str(tiny_ws), "--epochs", str(epochs), "--recommendations", "2",
                        "--algorithm", "random", "--param", "train.optim.weight_decay=loguniform(1e-6,1e-5)",
                        "--pin", "train.optim.lr=0.01", "--pin", "train.optim.optim=adamw", "--noise-rerun", "off",
                        "--keep-checkpoints", keep, "--yes")
    assert code == 0, out
    deft_rd, automl_rd = sorted((tiny_ws / "results").glob("run_*"))
    dirs = _train_dirs(deft_rd) + _train_dirs(automl_rd)
    assert [d.relative_to(tiny_ws / "results").as_posix().split("/", 1)[1] for d in dirs] == [
        "baseline/train", "automl_phase1/trial_0000/train", "automl_phase1/trial_0001/train"]
    for train_dir in dirs:
        _assert_kept(train_dir, keep, epochs)
