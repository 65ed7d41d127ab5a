from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from deftpipe.errors import ConfigError, ContractError
from deftpipe.importers import ImportSummary, import_deeppcb
from deftpipe.importers._boxes import grid_positions, label_crop, read_boxes
from deftpipe.importers._output import MARKER_NAME
from deftpipe.workspace.images import load_pairs
from deftpipe.workspace.paths import ImageLocator
from deftpipe.workspace.spec import load_spec
from deftpipe.workspace.tables import read_samples_csv

CSVS = {
    "train": "train/base/training_set.csv",
    "validation": "train/base/validation_set.csv",
    "kpi": "kpi/testing_set.csv",
    "holdout": "kpi/holdout_set.csv",
    "pool": "augmentation/mining_pool/mining_pool.csv",
}
CROP = 32
NAME_RE = re.compile(r"^(?P<id>\d+)_y(?P<y>\d+)_x(?P<x>\d+)$")


def _import(src: Path, ws: Path, **kw: object) -> ImportSummary:
    kw.setdefault("crop", CROP)
    kw.setdefault("max_per_split", 60)  # few files: the shared disk is slow under load
    return import_deeppcb(src, ws, **kw)  # type: ignore[arg-type]


def _rows(ws: Path) -> pd.DataFrame:
    parts = []
    for split, rel in CSVS.items():
        if (ws / rel).exists():
            frame = read_samples_csv(ws / rel)
            frame["split"] = split
            parts.append(frame)
    return pd.concat(parts, ignore_index=True)


def _boxes_of(src: Path) -> dict[str, list]:
    return {p.stem: read_boxes(p) for p in src.rglob("*_not/*.txt")}


@pytest.fixture(scope="module")
def centred_ws(synth_src: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("centred") / "ws"
    _import(synth_src, ws, pass_ratio=0.8)
    return ws


def test_workspace_loads_through_the_workspace_readers(centred_ws: Path) -> None:
    spec = load_spec(centred_ws / "specs/baseline_spec.yaml")
    classify = spec["dataset"]["classify"]
    assert classify["input_map"] == {"Mono": 0} and classify["num_input"] == 1
    assert (classify["image_width"], classify["image_height"], classify["image_ext"]) == (CROP, CROP, ".png")
    locator = ImageLocator(centred_ws / "images", centred_ws, ("Mono",), ".png")
    for split, rel in CSVS.items():
        rows = read_samples_csv(centred_ws / rel)
        assert list(rows.columns) == ["input_path", "golden_path", "label", "object_name", "boardname",
                                      "component_kind"]
        assert rows["input_path"].str.startswith(f"{split}/").all()
        tests, goldens = load_pairs(rows, locator, size=(CROP, CROP))
        assert tests.shape == (len(rows), 1, CROP, CROP) == goldens.shape
    summary = json.loads((centred_ws / "import_summary.json").read_text())
    assert summary["parameters"]["crop"] == CROP and summary["pairs"]["used"] == 15
    assert json.loads((centred_ws / MARKER_NAME).read_text())["status"] == "complete"
    assert not (centred_ws / "images.partial").exists()


def test_crop_labels_follow_the_boxes_and_the_pixels(centred_ws: Path, synth_src: Path) -> None:
    boxes = _boxes_of(synth_src)
    rows = _rows(centred_ws)
    locator = ImageLocator(centred_ws / "images", centred_ws, ("Mono",), ".png")
    tests, goldens = load_pairs(rows, locator, size=(CROP, CROP))
    diff = np.abs(tests.astype(int) - goldens.astype(int)).reshape(len(rows), -1).max(axis=1)
    for i, row in rows.iterrows():
        m = NAME_RE.match(row["object_name"])
        assert m and m["id"] == row["boardname"]
        x, y = int(m["x"]), int(m["y"])
        assert label_crop((x, y, x + CROP, y + CROP), boxes[row["boardname"]]).label == row["label"]
        if row["label"] == "PASS":
            assert diff[i] <= 16, row["object_name"]  # only JPEG noise
        else:
            assert diff[i] > 100, row["object_name"]  # the painted defect is in the crop
    assert set(rows["label"]) >= {"PASS", "open", "mousebite", "copper", "pin-hole", "spur"}


def _test_digests(ws: Path, rows: pd.DataFrame) -> pd.Series:
    return pd.Series([hashlib.sha256((ws / "images" / p / f"{o}_Mono.png").read_bytes()).hexdigest()
                      for p, o in zip(rows["input_path"], rows["object_name"])], index=rows.index)


def test_no_image_in_two_splits_and_test_groups_unseen_in_training(centred_ws: Path) -> None:
    rows = _rows(centred_ws)
    assert (rows.groupby("boardname")["split"].nunique() == 1).all()
    # no byte-identical test crop in two splits either (the validator's leakage content key)
    assert (rows.assign(digest=_test_digests(centred_ws, rows)).groupby("digest")["split"].nunique() == 1).all()
    assert json.loads((centred_ws / "import_summary.json").read_text())["windows"]["n_cross_split_twins_dropped"] > 0
    group = rows["boardname"].str[:5]
    train_side = set(group[rows["split"].isin(["train", "validation", "pool"])])
    test_side = set(group[rows["split"].isin(["kpi", "holdout"])])
    assert test_side and not (train_side & test_side)
    assert rows["component_kind"].eq("trace").all()


def test_pass_ratio_per_split(centred_ws: Path) -> None:
    rows = _rows(centred_ws)
    for split, part in rows.groupby("split"):
        n_def = int((part["label"] != "PASS").sum())
        assert n_def >= 1, split
        assert len(part) - n_def <= round(n_def * 0.8 / 0.2), split


def test_tiles_sit_on_the_grid_and_centred_crops_do_not(synth_src: Path, centred_ws: Path, tmp_path: Path) -> None:
    _import(synth_src, tmp_path / "tiles", mode="tiles", stride=16, pass_ratio=0.8)
    tiles = _rows(tmp_path / "tiles")
    grid = set(grid_positions(192, CROP, 16))
    xy = tiles["object_name"].str.extract(NAME_RE).astype({"x": int, "y": int})
    assert xy["x"].isin(grid).all() and xy["y"].isin(grid).all()
    assert (tiles["label"] != "PASS").any()
    centred = _rows(centred_ws)
    cxy = centred.loc[centred["label"] != "PASS", "object_name"].str.extract(NAME_RE).astype({"x": int, "y": int})
    assert not (cxy["x"].isin(grid) & cxy["y"].isin(grid)).all()


def _blank_share(ws: Path) -> float:
    rows = _rows(ws)
    rows = rows[rows["label"] == "PASS"]
    _, goldens = load_pairs(rows, ImageLocator(ws / "images", ws, ("Mono",), ".png"), size=(CROP, CROP))
    bright = (goldens >= 128).reshape(len(rows), -1).mean(axis=1)
    return float((np.minimum(bright, 1 - bright) < 0.02).mean())


@pytest.mark.slow
def test_blank_pass_crops_are_filtered_unless_kept(synth_src: Path, tmp_path: Path) -> None:
    opts = {"mode": "tiles", "pass_ratio": 0.99, "max_per_split": 400, "max_pairs": 6,
            "splits": "train=0.5,validation=0.25,kpi=0.25"}
    _import(synth_src, tmp_path / "filtered", **opts)
    kept = _import(synth_src, tmp_path / "kept", filter_blank=False, **opts)
    assert _blank_share(tmp_path / "filtered") == 0.0
    assert _blank_share(tmp_path / "kept") > 0.2  # the right third of every synthetic board is empty
    assert kept.details["windows"]["n_blank_pass_filtered"] == 0


@pytest.mark.slow
def test_same_seed_gives_identical_files_and_another_seed_differs(synth_src: Path, tmp_path: Path) -> None:
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        _import(synth_src, tmp_path / name, seed=seed, max_pairs=9, splits="train=0.5,validation=0.25,kpi=0.25")
    written = [rel for rel in CSVS.values() if (tmp_path / "a" / rel).exists()]
    assert len(written) == 3
    for rel in [*written, "specs/baseline_spec.yaml"]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    images_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a/images").rglob("*.png"))
    images_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b/images").rglob("*.png"))
    assert images_a == images_b
    assert all((tmp_path / "a" / p).read_bytes() == (tmp_path / "b" / p).read_bytes() for p in images_a[:50])
    assert any((tmp_path / "a" / rel).read_bytes() != (tmp_path / "c" / rel).read_bytes() for rel in written)


def test_max_pairs_draws_from_every_group(synth_src: Path, tmp_path: Path) -> None:
    summary = import_deeppcb(synth_src, tmp_path / "ws", crop=CROP, max_per_split=60, max_pairs=9,
                             splits="train=0.5,validation=0.25,kpi=0.25")
    assert summary.details["groups"] == {"group10000": 3, "group20000": 3, "group30000": 3}
    assert not (tmp_path / "ws/kpi/holdout_set.csv").exists()
    assert not (tmp_path / "ws/augmentation").exists()


def test_refuses_a_non_empty_folder_without_force(synth_src: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"is not empty \(notes.txt\); choose an empty folder, or pass --force"):
        _import(synth_src, ws)
    with pytest.raises(ConfigError, match=r"was not created by `deftpipe import deeppcb` \(no \.deftpipe-import"):
        _import(synth_src, ws, force=True)
    assert (ws / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_force_replaces_only_an_imported_workspace(synth_src: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    _import(synth_src, ws, max_pairs=10, splits="train=0.5,validation=0.25,kpi=0.25")
    (ws / "stray.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"is not empty .*pass --force"):
        _import(synth_src, ws)
    _import(synth_src, ws, force=True, max_pairs=10, splits="train=0.5,validation=0.25,kpi=0.25")
    assert not (ws / "stray.txt").exists() and (ws / "kpi/testing_set.csv").exists()
    (ws / "results/run_20250101_000000").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"holds run results .*--force would delete them"):
        _import(synth_src, ws, force=True)


def test_workspace_inside_the_source_is_refused(make_src: Callable[..., Path]) -> None:
    src = make_src({"group10000": 5})
    with pytest.raises(ConfigError, match=r"overlap; the source data is never modified"):
        _import(src, src / "ws")


def test_bad_annotation_line_names_file_and_line(make_src: Callable[..., Path], tmp_path: Path) -> None:
    src = make_src({"group10000": 5, "group20000": 5})
    bad = next(src.rglob("*_not/*.txt"))
    bad.write_text("10,10,30,30,1\n10,10,30\n")
    with pytest.raises(ContractError, match=rf"{re.escape(bad.name)} line 2: expected 5 fields"):
        _import(src, tmp_path / "ws")


def test_missing_source_and_bad_options(tmp_path: Path, synth_src: Path) -> None:
    with pytest.raises(ConfigError, match=r"source '.*nowhere' not found; point SRC at the DeepPCB 'PCBData'"):
        _import(tmp_path / "nowhere", tmp_path / "ws")
    with pytest.raises(ConfigError, match=r"--mode 'tile' is unknown.*Did you mean 'tiles'"):
        _import(synth_src, tmp_path / "ws", mode="tile")
    with pytest.raises(ConfigError, match=r"--crop 256 is larger than .*192x192"):
        _import(synth_src, tmp_path / "ws", crop=256)


def test_cli_prints_one_line_and_exits_2_on_a_user_error(synth_src: Path, tmp_path: Path) -> None:
    import deftpipe.cli.cmd_import  # noqa: F401  (registers `import deeppcb`)
    from deftpipe.cli.app import app

    runner = CliRunner()
    ws = tmp_path / "ws"
    args = ["import", "deeppcb", str(synth_src), str(ws), "--crop", str(CROP), "--max-pairs", "9",
            "--splits", "train=0.5,validation=0.25,kpi=0.25", "--seed", "1", "--max-per-split", "40"]
    ok = runner.invoke(app, args)
    assert ok.exit_code == 0, ok.output
    assert re.search(r"imported 9 DeepPCB pairs into .*: train \d+ \(\d+\.\d% defect\)", ok.output)
    again = runner.invoke(app, args)
    assert again.exit_code == 2
    assert "is not empty" in again.output and "--force" in again.output
    bad = runner.invoke(app, [*args, "--force", "--mode", "tile"])
    assert bad.exit_code == 2 and "Did you mean 'tiles'" in bad.output


def test_a_second_import_into_a_busy_workspace_is_refused(synth_src: Path, tmp_path: Path) -> None:
    import socket

    from deftpipe.errors import StateConflict
    from deftpipe.importers._output import LOCK_NAME

    ws = tmp_path / "ws"
    _import(synth_src, ws, max_pairs=9, splits="train=0.5,validation=0.25,kpi=0.25")
    # PID 1 is alive on every Linux host: it stands in for another import still writing here
    (ws / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": socket.gethostname()}))
    with pytest.raises(StateConflict, match=r"another deftpipe process \(PID 1\)"):
        _import(synth_src, ws, force=True, max_pairs=9, splits="train=0.5,validation=0.25,kpi=0.25")
    assert (ws / "kpi/testing_set.csv").exists()
