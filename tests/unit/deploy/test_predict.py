from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from deftpipe.cli.app import app
from deftpipe.cli.main import _load_commands
from deftpipe.deploy import predict
from deftpipe.deploy.pairs import discover_pairs
from deftpipe.errors import ConfigError, ContractError
from tests.unit.deploy.conftest import TinyRun

_load_commands()
LIGHTS = ("LightA", "LightB")


def _kpi_as_pairs(run: TinyRun, folder: Path, *, n: int | None = None) -> list[str]:
    """Copy KPI rows into a pairs folder (<object_name>_test_<light>.png / _golden_<light>.png)."""
    rows = pd.read_csv(run.kpi_csv, dtype=str).head(n)
    folder.mkdir(parents=True, exist_ok=True)
    for r in rows.itertuples():
        for light in LIGHTS:
            for role, sub in (("test", r.input_path), ("golden", r.golden_path)):
                shutil.copy(run.images_dir / sub / f"{r.object_name}_{light}.png",
                            folder / f"{r.object_name}_{role}_{light}.png")
    return list(rows["object_name"])


@pytest.mark.parametrize("kind", ["pytorch", "onnx"])
def test_csv_decisions_match_the_runs_kpi_inference(kind: str, tiny_run: TinyRun, tiny_onnx: Path,
                                                    tmp_path: Path) -> None:
    model = tiny_run.results_dir if kind == "pytorch" else tiny_onnx
    seen: list[tuple[int, int]] = []
    res = predict(model, csv=tiny_run.kpi_csv, images_dir=tiny_run.images_dir, out_csv=tmp_path / "p.csv",
                  device="cpu", progress=lambda d, t, m: seen.append((d, t)))
    ref = pd.read_csv(tiny_run.kpi_inference_csv)
    got = pd.read_csv(res.out_csv)
    assert list(got.columns) == [*pd.read_csv(tiny_run.kpi_csv).columns, "siamese_score", "decision"]
    assert (got["object_name"] == ref["object_name"]).all()
    assert list(got["decision"]) == ["defect" if s > tiny_run.threshold else "PASS" for s in ref["siamese_score"]]
    delta = np.max(np.abs(got["siamese_score"] - ref["siamese_score"]))
    assert delta == 0.0 if kind == "pytorch" else delta <= 1e-4
    summary = json.loads(res.summary_path.read_text())
    assert res.summary_path == tmp_path / "p.csv.summary.json"
    assert summary["counts"] == {"defect": int((got["decision"] == "defect").sum()),
                                 "PASS": int((got["decision"] == "PASS").sum())}
    assert summary["threshold"] == tiny_run.threshold and summary["model_kind"] == kind
    assert seen[-1] == (len(ref), len(ref))


def test_pairs_folder_scores_equal_the_csv_scores(tiny_run: TinyRun, tiny_onnx: Path, tmp_path: Path) -> None:
    names = _kpi_as_pairs(tiny_run, tmp_path / "pairs")
    by_csv = pd.read_csv(predict(tiny_onnx, csv=tiny_run.kpi_csv, images_dir=tiny_run.images_dir,
                                 out_csv=tmp_path / "c.csv", device="cpu").out_csv)
    res = predict(tiny_onnx, pairs_dir=tmp_path / "pairs", out_csv=tmp_path / "f.csv", device="cpu")
    got = pd.read_csv(res.out_csv).set_index("object_name")
    assert sorted(got.index) == sorted(names)
    assert got.loc[names[0], "test_path"] == f"{names[0]}_test_LightA.png|{names[0]}_test_LightB.png"
    want = by_csv.set_index("object_name").loc[got.index]
    assert (got["siamese_score"] == want["siamese_score"]).all()
    assert (got["decision"] == want["decision"]).all()


def test_csv_without_label_column_is_scored(tiny_run: TinyRun, tiny_onnx: Path, tmp_path: Path) -> None:
    rows = pd.read_csv(tiny_run.kpi_csv, dtype=str).drop(columns=["label"]).head(3)
    rows.to_csv(tmp_path / "new.csv", index=False)
    res = predict(tiny_onnx, csv=tmp_path / "new.csv", images_dir=tiny_run.images_dir, out_csv=tmp_path / "p.csv")
    assert res.n_rows == 3 and "label" not in pd.read_csv(res.out_csv).columns


def test_pairs_folder_missing_light_names_pair_file_and_fix(tiny_run: TinyRun, tiny_onnx: Path,
                                                           tmp_path: Path) -> None:
    names = _kpi_as_pairs(tiny_run, tmp_path / "pairs", n=2)
    (tmp_path / "pairs" / f"{names[1]}_golden_LightB.png").unlink()
    with pytest.raises(ContractError, match=rf"pair '{names[1]}' lacks {names[1]}_golden_LightB\.png.*"
                                            r"add the missing files"):
        predict(tiny_onnx, pairs_dir=tmp_path / "pairs", out_csv=tmp_path / "p.csv")


def test_pairs_folder_unknown_light_suggests_the_closest(tmp_path: Path) -> None:
    (tmp_path / "a_test_LightC.png").write_bytes(b"x")
    with pytest.raises(ContractError, match=r"light 'LightC' is not one of .*Did you mean 'Light"):
        discover_pairs(tmp_path, lights=LIGHTS, image_ext=".png")


def test_pairs_folder_single_light_naming(tmp_path: Path) -> None:
    for f in ("a_test.png", "a_golden.png", "b_test_Top.png", "b_golden_Top.png", "notes.txt"):
        (tmp_path / f).write_bytes(b"x")
    pairs = discover_pairs(tmp_path, lights=("Top",), image_ext=".png")
    assert pairs.names == ("a", "b")
    assert [Path(p).name for p in pairs.files["golden"][0]] == ["a_golden.png", "b_golden_Top.png"]
    with pytest.raises(ContractError, match=r"'a_golden\.png' does not follow the pair naming: it names no light"):
        discover_pairs(tmp_path, lights=LIGHTS, image_ext=".png")


def test_pairs_folder_wrong_size_names_pair_and_size(tiny_run: TinyRun, tiny_onnx: Path, tmp_path: Path) -> None:
    names = _kpi_as_pairs(tiny_run, tmp_path / "pairs", n=2)
    cv2.imwrite(str(tmp_path / "pairs" / f"{names[0]}_test_LightB.png"), np.zeros((40, 40), np.uint8))
    with pytest.raises(ContractError, match=rf"pair '{names[0]}': image .*_test_LightB\.png' is 40x40 but .* 32x32") \
            as info:
        predict(tiny_onnx, pairs_dir=tmp_path / "pairs", out_csv=tmp_path / "p.csv")
    assert "this model takes 32x32 grey .png images" in (info.value.hint or "")


def test_csv_missing_light_and_unreadable_file_name_row_and_file(tiny_run: TinyRun, tiny_onnx: Path,
                                                                 tmp_path: Path) -> None:
    images = tmp_path / "images"
    shutil.copytree(tiny_run.images_dir, images)
    row = pd.read_csv(tiny_run.kpi_csv, dtype=str).iloc[2]
    target = images / row["input_path"] / f"{row['object_name']}_LightB.png"
    target.unlink()
    with pytest.raises(ContractError, match=r"testing_set\.csv' line 4: image '.*_LightB\.png' not found") as info:
        predict(tiny_onnx, csv=tiny_run.kpi_csv, images_dir=images, out_csv=tmp_path / "p.csv")
    assert "one per light in the order ['LightA', 'LightB']" in (info.value.hint or "")
    target.write_bytes(b"not a png")
    with pytest.raises(ContractError, match=r"line 4: image '.*_LightB\.png' is corrupt"):
        predict(tiny_onnx, csv=tiny_run.kpi_csv, images_dir=images, out_csv=tmp_path / "p.csv")


def test_predict_needs_exactly_one_input(tiny_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="exactly one of --csv FILE or --pairs DIR"):
        predict(tiny_onnx, out_csv=tmp_path / "p.csv")
    (tmp_path / "model.json").write_text("{}")
    with pytest.raises(ConfigError, match="neither a run directory nor a .onnx file"):
        predict(tmp_path / "model.json", csv=tmp_path / "x.csv", out_csv=tmp_path / "p.csv")


def test_predict_cli_error_exits_2_and_success_prints_counts(tiny_run: TinyRun, tiny_onnx: Path,
                                                              tmp_path: Path) -> None:
    env = {"COLUMNS": "200"}
    bad = CliRunner().invoke(app, ["predict", "--model", str(tiny_onnx), "--pairs", str(tmp_path / "none"),
                                   "--out", str(tmp_path / "p.csv")], env=env)
    assert bad.exit_code == 2 and "is not a folder" in bad.output
    _kpi_as_pairs(tiny_run, tmp_path / "pairs", n=3)
    ok = CliRunner().invoke(app, ["predict", "--model", str(tiny_onnx), "--pairs", str(tmp_path / "pairs"),
                                  "--out", str(tmp_path / "p.csv")], env=env)
    assert ok.exit_code == 0, ok.output
    assert "Scored 3 pair(s) with the onnx model" in ok.output and "predict: 3/3" in ok.output
    assert (tmp_path / "p.csv.summary.json").is_file()


def test_empty_csv_is_a_clear_error(tiny_onnx: Path, tmp_path: Path) -> None:
    (tmp_path / "new.csv").write_text("")
    with pytest.raises(ContractError, match="the file is empty"):
        predict(tiny_onnx, csv=tmp_path / "new.csv", out_csv=tmp_path / "p.csv")
