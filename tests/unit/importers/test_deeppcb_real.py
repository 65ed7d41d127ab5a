"""A few real DeepPCB pairs from /work/shared (skipped when that copy is absent)."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deftpipe.importers import import_deeppcb
from deftpipe.importers._boxes import label_crop, read_boxes
from deftpipe.workspace.images import load_pairs
from deftpipe.workspace.paths import ImageLocator
from deftpipe.workspace.spec import load_spec
from deftpipe.workspace.tables import read_samples_csv
# same place as tests/conftest.py DEEPPCB: <repo>/../shared/data/deeppcb
SRC = Path(__file__).resolve().parents[4] / "shared" / "data" / "deeppcb" / "PCBData"
CSVS = ("train/base/training_set.csv", "train/base/validation_set.csv", "kpi/testing_set.csv",
        "kpi/holdout_set.csv", "augmentation/mining_pool/mining_pool.csv")
pytestmark = pytest.mark.skipif(
    not any(SRC.glob("group*")), reason=f"DeepPCB data not present at {SRC} (shared data folder absent)"
)


@pytest.fixture(scope="module")
def real_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = tmp_path_factory.mktemp("deeppcb_real") / "ws"
    import_deeppcb(SRC, ws, max_pairs=12, max_per_split=100, seed=0)
    return ws


def test_real_pairs_give_a_loadable_workspace_with_labels_matching_the_boxes(real_ws: Path) -> None:
    spec = load_spec(real_ws / "specs/baseline_spec.yaml")
    assert spec["dataset"]["classify"]["input_map"] == {"Mono": 0}
    locator = ImageLocator(real_ws / "images", real_ws, ("Mono",), ".png")
    frames = []
    for rel in CSVS:
        rows = read_samples_csv(real_ws / rel)
        tests, goldens = load_pairs(rows, locator, size=(64, 64))
        assert tests.shape == goldens.shape == (len(rows), 1, 64, 64)
        frames.append(rows.assign(csv=rel))
    rows = pd.concat(frames, ignore_index=True)
    assert (rows.groupby("boardname")["csv"].nunique() == 1).all()  # no image in two splits
    digest = [hashlib.sha256((real_ws / "images" / p / f"{o}_Mono.png").read_bytes()).hexdigest()
              for p, o in zip(rows["input_path"], rows["object_name"])]
    assert (rows.assign(digest=digest).groupby("digest")["csv"].nunique() == 1).all()  # nor a test crop
    boxes = {p.stem: read_boxes(p, width=640, height=640) for p in SRC.glob("group*/*_not/*.txt")}
    for _, row in rows.iterrows():
        m = re.fullmatch(r"(\d+)_y(\d+)_x(\d+)", row["object_name"])
        assert m is not None and m[1] == row["boardname"]
        x, y = int(m[3]), int(m[2])
        assert label_crop((x, y, x + 64, y + 64), boxes[row["boardname"]]).label == row["label"]
    share = (rows["label"] != "PASS").mean()
    assert 0.05 <= share <= 0.15
    assert rows["label"].nunique() >= 5


def test_real_pass_crops_are_not_blank(real_ws: Path) -> None:
    rows = read_samples_csv(real_ws / "train/base/training_set.csv")
    rows = rows[rows["label"] == "PASS"]
    _, goldens = load_pairs(rows, ImageLocator(real_ws / "images", real_ws, ("Mono",), ".png"), size=(64, 64))
    bright = (goldens >= 128).reshape(len(rows), -1).mean(axis=1)
    assert np.minimum(bright, 1 - bright).min() >= 0.02
