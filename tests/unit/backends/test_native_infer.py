"""Inference CSV contract, embeddings and the CLI train -> infer path."""
from __future__ import annotations

import copy
import csv
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from deftpipe.backends import EmbedRequest, InferRequest, TrainRequest, TrainResult, create_backend
from deftpipe.errors import ContractError
from deftpipe.workspace.spec import set_key
from tests.unit.backends._tiny import TinyWorkspace


@pytest.fixture(scope="module")
def trained(tiny_ws: TinyWorkspace, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    spec = copy.deepcopy(tiny_ws.spec)
    set_key(spec, "train.num_epochs", 1)
    out = tmp_path_factory.mktemp("infer_train")
    return create_backend("native").train(TrainRequest(
        spec=spec, train_csv=tiny_ws.train_csv, val_csv=tiny_ws.val_csv, images_dir=tiny_ws.images_dir,
        workspace_root=tiny_ws.root, out_dir=out, cache_dir=tiny_ws.root / "cache", device="cpu"))


def test_inference_csv_keeps_columns_and_full_precision(trained: TrainResult, tiny_ws: TinyWorkspace,
                                                        tmp_path: Path) -> None:
    out = tmp_path / "sub" / "inference.csv"
    res = create_backend("native").infer(InferRequest(
        checkpoint=trained.best_val_ckpt, csv=tiny_ws.val_csv, images_dir=tiny_ws.images_dir,
        workspace_root=tiny_ws.root, out_csv=out, device="cpu"))
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    source = pd.read_csv(tiny_ws.val_csv, dtype=str)
    assert list(rows[0]) == [*source.columns, "siamese_score"]
    assert [r["kind"] for r in rows] == source["kind"].tolist()
    scores = [r["siamese_score"] for r in rows]
    assert all(s == "%.17g" % float(s) for s in scores)
    assert len(set(scores)) == len(scores)
    values = np.array([float(s) for s in scores])
    assert res.n_rows == len(rows) and res.pred_counts == {"PASS": int((values <= 0).sum()),
                                                           "defect": int((values > 0).sum())}


def test_embed_returns_one_pooled_feature_per_row(trained: TrainResult, tiny_ws: TinyWorkspace) -> None:
    emb = create_backend("native").embed(EmbedRequest(
        checkpoint=trained.latest_ckpt, csv=tiny_ws.val_csv, images_dir=tiny_ws.images_dir,
        workspace_root=tiny_ws.root, device="cpu", batch_size=3))
    n_rows = len(pd.read_csv(tiny_ws.val_csv))
    # embed_dim = 2 (avg ‖ max pooling) × (64 encoder + 32 diff-stem channels) for resnet_tiny
    assert emb.shape == (n_rows, 2 * (64 + 32)) and emb.dtype == np.float32 and np.isfinite(emb).all()


def test_wrong_light_count_is_a_contract_error(trained: TrainResult, tiny_ws: TinyWorkspace, tmp_path: Path) -> None:
    spec = copy.deepcopy(tiny_ws.spec)
    set_key(spec, "dataset.classify.input_map", {"LightA": 0})
    set_key(spec, "dataset.classify.num_input", 1)
    with pytest.raises(ContractError, match="expects 2 input channel"):
        create_backend("native").infer(InferRequest(
            checkpoint=trained.latest_ckpt, csv=tiny_ws.val_csv, images_dir=tiny_ws.images_dir,
            workspace_root=tiny_ws.root, out_csv=tmp_path / "x.csv", spec=spec, device="cpu"))


@pytest.mark.slow
def test_cli_train_then_infer(tiny_ws: TinyWorkspace, tmp_path: Path) -> None:
    from deftpipe.cli.main import _load_commands
    from deftpipe.cli.app import app

    _load_commands()
    ws = tmp_path / "ws"
    (ws / "specs").mkdir(parents=True)
    (ws / "train/base").mkdir(parents=True)
    shutil.copytree(tiny_ws.images_dir, ws / "images")
    (ws / "specs/baseline_spec.yaml").write_text(yaml.safe_dump(tiny_ws.spec))
    (ws / "train/base/training_set.csv").write_bytes(tiny_ws.train_csv.read_bytes())
    (ws / "train/base/validation_set.csv").write_bytes(tiny_ws.val_csv.read_bytes())
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--workspace", str(ws), "--epochs", "2", "--seed", "3",
                              "-o", "train.optim.lr=0.004", "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "best val loss" in res.output and "model_epoch_" in res.output
    ckpt = sorted((tmp_path / "out").glob("model_epoch_002_*.pth"))[0]
    res = runner.invoke(app, ["infer", "--checkpoint", str(ckpt), "--csv", str(ws / "train/base/validation_set.csv"),
                              "--workspace", str(ws), "--out", str(tmp_path / "scores.csv")])
    assert res.exit_code == 0, res.output
    assert "Scored 8 row(s)" in res.output
    assert "siamese_score" in pd.read_csv(tmp_path / "scores.csv").columns
    res = runner.invoke(app, ["infer", "--checkpoint", str(tmp_path / "missing.pth"), "--csv", str(tiny_ws.val_csv),
                              "--workspace", str(ws), "--out", str(tmp_path / "s2.csv")])
    assert res.exit_code == 2 and "not found" in res.output
