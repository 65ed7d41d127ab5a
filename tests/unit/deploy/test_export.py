from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from deftpipe.cli.app import app
from deftpipe.cli.main import _load_commands
from deftpipe.errors import ConfigError, ContractError, DependencyMissing
from deftpipe.workspace.io import sha256_file
from tests.unit.deploy.conftest import TinyRun

_load_commands()


def test_onnx_scores_match_pytorch_on_the_kpi_set(tiny_run: TinyRun, tiny_onnx: Path, tmp_path: Path) -> None:
    from deftpipe.deploy import predict

    common = {"csv": tiny_run.kpi_csv, "images_dir": tiny_run.images_dir, "device": "cpu"}
    pt = predict(tiny_run.results_dir, out_csv=tmp_path / "pt.csv", **common)
    ox = predict(tiny_onnx, out_csv=tmp_path / "onnx.csv", **common)
    assert (pt.model_kind, ox.model_kind) == ("pytorch", "onnx")
    a, b = (pd.read_csv(p) for p in (pt.out_csv, ox.out_csv))
    assert np.max(np.abs(a["siamese_score"] - b["siamese_score"])) <= 1e-4
    assert (a["decision"] == b["decision"]).all(), pd.concat([a, b], axis=1)[a["decision"] != b["decision"]]


def test_onnx_batch_axis_is_dynamic(tiny_run: TinyRun, tiny_onnx: Path) -> None:
    import torch

    from deftpipe.deploy.scorers import load_onnx_scorer, load_torch_scorer

    pt, ox = load_torch_scorer(tiny_run.results_dir, device="cpu"), load_onnx_scorer(tiny_onnx, device="cpu")
    gen = torch.Generator().manual_seed(1)
    for n in (1, 7):
        c, h, w = ox.info.n_channels, ox.info.image.height, ox.info.image.width
        test, golden = torch.randn((n, c, h, w), generator=gen), torch.randn((n, c, h, w), generator=gen)
        diff = torch.rand((n, 2 * c, h, w), generator=gen)
        got, want = ox.score(test, golden, diff), pt.score(test, golden, diff)
        assert got.shape == (n,)
        assert np.max(np.abs(got - want)) <= 1e-4


def test_metadata_round_trips_best_model_and_checkpoint(tiny_run: TinyRun, tiny_onnx: Path) -> None:
    import onnx

    from deftpipe.backends.native.checkpoint import load_checkpoint
    from deftpipe.deploy import read_onnx_metadata

    meta = read_onnx_metadata(tiny_onnx)
    bm = json.loads((tiny_run.results_dir / "best_model.json").read_text())
    payload = load_checkpoint(tiny_run.checkpoint)
    assert meta["threshold"] == bm["threshold"] == tiny_run.threshold
    for key in ("metric_contract", "metric_result", "far_pct", "iteration", "backbone_type", "backbone_frozen"):
        assert meta[key] == bm[key], key
    assert meta["holdout_result"] is None
    assert meta["lights"] == payload["image"]["lights"] == ["LightA", "LightB"]
    assert meta["input_map"] == {"LightA": 0, "LightB": 1}
    assert meta["image"] == {"width": 32, "height": 32, "image_ext": ".png", "grayscale": True}
    assert meta["normalization"] == payload["normalization"]
    assert (meta["input_mode"], meta["max_shift_px"], meta["tolerance"]) == ("registered_diff", 3, 1)
    assert meta["labels"] == ["PASS", "defect"]
    assert meta["training_data"] == {"csv_path": str(tiny_run.train_csv), "sha256": sha256_file(tiny_run.train_csv)}
    assert meta["source_checkpoint"]["sha256"] == sha256_file(tiny_run.checkpoint)
    assert meta["deftpipe_version"] == __import__("deftpipe").__version__
    assert meta["opset"] >= 17 and meta["export_check"]["max_abs_diff"] <= 1e-4
    proto = onnx.load(str(tiny_onnx))
    assert proto.opset_import[0].version >= 17
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    assert inputs == {"test": ["batch", 2, 32, 32], "golden": ["batch", 2, 32, 32], "diff": ["batch", 4, 32, 32]}
    assert [o.name for o in proto.graph.output] == ["siamese_score"]


def test_export_cli_without_best_model_exits_2(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["export", str(tmp_path), "--onnx", str(tmp_path / "m.onnx")], env={"COLUMNS": "200"})
    assert res.exit_code == 2, res.output
    assert "has no best_model.json" in res.output and "deftpipe deft --resume" in res.output
    assert not (tmp_path / "m.onnx").exists()


def test_export_cli_prints_one_line(tiny_run: TinyRun, tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    res = CliRunner().invoke(app, ["export", str(tiny_run.results_dir), "--onnx", str(out)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "Exported baseline deliverable" in res.output and out.is_file()
    assert not list(tmp_path.glob(".*tmp"))


def test_export_rejects_a_folder_as_output(tiny_run: TinyRun, tmp_path: Path) -> None:
    from deftpipe.deploy import export_onnx

    with pytest.raises(ConfigError, match="is a folder; give a file name"):
        export_onnx(tiny_run.results_dir, tmp_path)


def test_export_with_a_broken_best_model_names_the_file(tmp_path: Path) -> None:
    from deftpipe.deploy import export_onnx

    (tmp_path / "best_model.json").write_text('{"checkpoint": 1}')
    with pytest.raises(ContractError, match="best_model.json: keys must be exactly"):
        export_onnx(tmp_path, tmp_path / "m.onnx")


def test_missing_onnxruntime_is_a_friendly_error(tiny_run: TinyRun, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from deftpipe.deploy import export_onnx

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(DependencyMissing, match="needs the optional package 'onnxruntime'") as info:
        export_onnx(tiny_run.results_dir, tmp_path / "m.onnx")
    assert "deftpipe[onnx]" in (info.value.hint or "")
