"""Tiny synthetic AOI workspaces for the native backend tests: 32×32 two-light pairs, defects are bright blobs."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from deftpipe.workspace.spec import default_spec, set_key


@dataclass(frozen=True)
class TinyWorkspace:
    root: Path
    train_csv: Path
    val_csv: Path
    spec: dict[str, Any]

    @property
    def images_dir(self) -> Path:
        return self.root / "images"


def _board(rng: np.random.Generator, size: int) -> np.ndarray:
    img = np.full((size, size), 50, np.uint8)
    for _ in range(3):
        y, x = rng.integers(0, size - 8, 2)
        h, w = rng.integers(4, 9, 2)
        img[y:y + h, x:x + w] = 170
    return img


def make_tiny_workspace(root: Path, *, n_train: int = 24, n_val: int = 8, size: int = 32, seed: int = 0,
                        blob_value: int = 255) -> TinyWorkspace:
    """Write images + CSVs under `root`; half of the rows are defects ('blob'), with an extra 'kind' column."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, str]] = []
    for i in range(n_train + n_val):
        golden = _board(rng, size)
        dy, dx = rng.integers(-1, 2, 2)
        test = np.roll(golden, (int(dy), int(dx)), axis=(0, 1)).astype(np.int16)
        test = np.clip(test + rng.integers(-4, 5, test.shape), 0, 255).astype(np.uint8)
        defect = i % 2 == 1
        if defect:
            cy, cx = rng.integers(6, size - 6, 2)
            cv2.circle(test, (int(cx), int(cy)), 3, blob_value, -1)
        obj = f"C{i:03d}@1"
        for folder, img in ((f"boards/b{i % 3}", test), (f"golden/b{i % 3}", golden)):
            (root / "images" / folder).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / "images" / folder / f"{obj}_LightA.png"), img)
            cv2.imwrite(str(root / "images" / folder / f"{obj}_LightB.png"), (img * 0.7).astype(np.uint8))
        rows.append({"input_path": f"boards/b{i % 3}", "golden_path": f"golden/b{i % 3}",
                     "label": "blob" if defect else "PASS", "object_name": obj, "kind": f"k{i % 4}"})
    frame = pd.DataFrame(rows)
    train_csv, val_csv = root / "training_set.csv", root / "validation_set.csv"
    frame.iloc[:n_train].to_csv(train_csv, index=False)
    frame.iloc[n_train:].to_csv(val_csv, index=False)
    spec = default_spec()
    for key, value in (("dataset.classify.image_width", size), ("dataset.classify.image_height", size),
                       ("dataset.classify.batch_size", 8), ("train.num_epochs", 2), ("train.optim.lr", 0.005),
                       ("dataset.classify.train_dataset.images_dir", "images"),
                       ("dataset.classify.validation_dataset.images_dir", "images"),
                       ("dataset.classify.test_dataset.images_dir", "images")):
        set_key(spec, key, value)
    return TinyWorkspace(root, train_csv, val_csv, spec)


