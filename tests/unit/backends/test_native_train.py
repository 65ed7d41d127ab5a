"""Native backend training: checkpoints, init semantics, retention, determinism, early stop, both input modes."""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from deftpipe.backends import InferRequest, TrainRequest, TrainResult, create_backend
from deftpipe.backends.native.checkpoint import load_checkpoint
from deftpipe.backends.native.train import TrainSettings, arch_from_spec, build_model, initialize
from deftpipe.errors import ConfigError, ContractError
from deftpipe.workspace.spec import set_key
from tests.unit.backends._tiny import TinyWorkspace


def _train(ws: TinyWorkspace, out: Path, *, overrides: dict[str, Any] | None = None, keep: str = "best_latest",
           seed: int = 0, cache: Path | None = None, **kw: Any) -> TrainResult:
    spec = copy.deepcopy(ws.spec)
    for key, value in (overrides or {}).items():
        set_key(spec, key, value)
    request = TrainRequest(spec=spec, train_csv=ws.train_csv, val_csv=ws.val_csv, images_dir=ws.images_dir,
                           workspace_root=ws.root, out_dir=out, cache_dir=cache or ws.root / "cache", seed=seed,
                           device="cpu", **kw)
    return create_backend("native", keep_checkpoints=keep).train(request)


def _scores(ws: TinyWorkspace, ckpt: Path, out_csv: Path) -> pd.DataFrame:
    create_backend("native").infer(InferRequest(checkpoint=ckpt, csv=ws.val_csv, images_dir=ws.images_dir,
                                                workspace_root=ws.root, out_csv=out_csv, cache_dir=ws.root / "cache",
                                                device="cpu"))
    return pd.read_csv(out_csv)


@pytest.fixture(scope="module")
def run_all(tiny_ws: TinyWorkspace, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    """2 epochs, every checkpoint kept."""
    out = tmp_path_factory.mktemp("run_all")
    return _train(tiny_ws, out, overrides={"train.num_epochs": 2}, keep="all")


def test_checkpoint_files_follow_the_naming_rule_and_keep_all(run_all: TrainResult) -> None:
    files = sorted(p.name for p in run_all.latest_ckpt.parent.glob("*.pth"))
    assert files == ["model_epoch_001_step_003.pth", "model_epoch_002_step_006.pth"]
    assert run_all.latest_ckpt.name == "model_epoch_002_step_006.pth"
    assert run_all.epochs_run == 2 and len(run_all.history) == 2
    payload = load_checkpoint(run_all.latest_ckpt)
    assert payload["epoch"] == 2 and payload["step"] == 6
    assert payload["label_names"] == ["PASS", "defect"]
    assert payload["arch"]["input_mode"] == "registered_diff"
    assert payload["spec"]["train"]["num_epochs"] == 2
    assert payload["normalization"]["mean"] == [0.5, 0.5]


def test_status_and_train_log_describe_the_run(run_all: TrainResult) -> None:
    out = run_all.latest_ckpt.parent
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "complete" and status["epoch"] == 2
    assert status["best_val"] == str(run_all.best_val_ckpt) and status["latest"] == str(run_all.latest_ckpt)
    assert status["best_val_loss"] == pytest.approx(min(status["val_losses"].values()))
    lines = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert all({"train_loss", "val_loss", "seconds"} <= set(r) for r in lines)


def test_default_retention_keeps_only_best_and_latest(tiny_ws: TinyWorkspace, tmp_path: Path) -> None:
    # Validation at epoch 2 only: epoch 1's file is written (checkpoint_interval 1), then superseded.
    res = _train(tiny_ws, tmp_path, overrides={"train.num_epochs": 2, "train.validation_interval": 2})
    kept = sorted(p.name for p in tmp_path.glob("*.pth"))
    assert kept == ["model_epoch_002_step_006.pth"] == [res.best_val_ckpt.name] == [res.latest_ckpt.name]
    status = json.loads((tmp_path / "status.json").read_text())
    assert list(status["val_losses"]) == ["2"]


def test_defects_score_higher_after_training(run_all: TrainResult, tiny_ws: TinyWorkspace, tmp_path: Path) -> None:
    frame = _scores(tiny_ws, run_all.latest_ckpt, tmp_path / "scores.csv")
    defect = frame.loc[frame["label"] != "PASS", "siamese_score"]
    ok = frame.loc[frame["label"] == "PASS", "siamese_score"]
    assert defect.min() > ok.max()


@pytest.mark.slow  # the resume test's bitwise weight equality covers determinism in the fast run
def test_same_seed_gives_identical_scores(run_all: TrainResult, tiny_ws: TinyWorkspace, tmp_path: Path) -> None:
    again = _train(tiny_ws, tmp_path / "again", overrides={"train.num_epochs": 2}, keep="all")
    a = _scores(tiny_ws, run_all.latest_ckpt, tmp_path / "a.csv")["siamese_score"].to_numpy()
    b = _scores(tiny_ws, again.latest_ckpt, tmp_path / "b.csv")["siamese_score"].to_numpy()
    assert np.array_equal(a, b)
    assert again.history == run_all.history


def test_resume_continues_like_an_uninterrupted_run(run_all: TrainResult, tiny_ws: TinyWorkspace,
                                                    tmp_path: Path) -> None:
    first = run_all.latest_ckpt.parent / "model_epoch_001_step_003.pth"
    res = _train(tiny_ws, tmp_path, overrides={"train.num_epochs": 2,
                                               "train.resume_training_checkpoint_path": str(first)})
    assert res.epochs_run == 1 and res.latest_ckpt.name == "model_epoch_002_step_006.pth"
    resumed = load_checkpoint(res.latest_ckpt)
    straight = load_checkpoint(run_all.latest_ckpt)
    assert resumed["init_mode"] == "resume"
    # Identical weights need the optimizer moments and scheduler position restored, not just the weights.
    for key, value in straight["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key
    assert resumed["scheduler"]["last_epoch"] == 6
    assert first.exists()  # a resume source outside out_dir is left alone


def test_resume_of_a_finished_run_is_refused(run_all: TrainResult, tiny_ws: TinyWorkspace, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="already finished epoch 2"):
        _train(tiny_ws, tmp_path, overrides={"train.num_epochs": 2,
                                             "train.resume_training_checkpoint_path": str(run_all.latest_ckpt)})


def test_pretrained_loads_weights_and_restarts_the_epoch_counter(run_all: TrainResult, tiny_ws: TinyWorkspace,
                                                                 tmp_path: Path) -> None:
    spec = copy.deepcopy(tiny_ws.spec)
    set_key(spec, "train.pretrained_model_path", str(run_all.latest_ckpt))
    arch = arch_from_spec(spec)
    model = build_model(arch)
    init = initialize(model, TrainSettings.from_spec(spec), arch)
    assert (init.mode, init.start_epoch, init.step, init.optimizer) == ("pretrained", 0, 0, None)
    source = load_checkpoint(run_all.latest_ckpt)["state_dict"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, source[key]), key
    res = _train(tiny_ws, tmp_path, overrides={"train.num_epochs": 1,
                                               "train.pretrained_model_path": str(run_all.latest_ckpt)})
    assert res.latest_ckpt.name == "model_epoch_001_step_003.pth"
    assert load_checkpoint(res.latest_ckpt)["init_mode"] == "pretrained"
    assert run_all.latest_ckpt.exists()  # the source is never pruned


def test_checkpoint_of_another_architecture_is_refused(run_all: TrainResult, tiny_ws: TinyWorkspace,
                                                        tmp_path: Path) -> None:
    with pytest.raises(ContractError, match=r"model_epoch_002_step_006\.pth.*backbone: 'resnet_small' vs 'resnet_tiny'"):
        _train(tiny_ws, tmp_path, overrides={"model.backbone.type": "resnet_small",
                                             "train.pretrained_model_path": str(run_all.latest_ckpt)})


def test_on_epoch_true_stops_early(tiny_ws: TinyWorkspace, tmp_path: Path) -> None:
    seen: list[tuple[int, float]] = []

    def prune(epoch: int, val_loss: float) -> bool:
        seen.append((epoch, val_loss))
        return True

    res = _train(tiny_ws, tmp_path, overrides={"train.num_epochs": 3}, on_epoch=prune)
    assert res.stopped_early and res.epochs_run == 1 and len(seen) == 1 and math.isfinite(seen[0][1])
    assert res.latest_ckpt.name == "model_epoch_001_step_003.pth"
    assert json.loads((tmp_path / "status.json").read_text())["state"] == "stopped_early"


def test_raw_mode_frozen_backbone_sgd_focal_run(tiny_ws: TinyWorkspace, tmp_path: Path) -> None:
    progress: list[tuple[int, int, str]] = []
    res = _train(tiny_ws, tmp_path, overrides={
        "train.num_epochs": 1, "model.classify.input_mode": "raw", "model.backbone.freeze_backbone": True,
        "model.classify.difference_module": "abs-diff", "train.optim.optim": "sgd", "train.optim.policy": "step",
        "train.classify.loss": "focal"}, progress=lambda d, t, m: progress.append((d, t, m)))
    payload = load_checkpoint(res.latest_ckpt)
    assert payload["arch"]["input_mode"] == "raw"
    assert not any(k.startswith("diff_stem") for k in payload["state_dict"])
    assert (3, 3, "epoch 1/1") in progress and progress[-1][2] == "epoch 1/1"
    frame = _scores(tiny_ws, res.latest_ckpt, tmp_path / "raw.csv")
    assert frame["siamese_score"].notna().all()
