"""Tiny hand-made workspaces for unit tests (no dependency on the demo generator)."""
from __future__ import annotations

import zlib
from pathlib import Path

import cv2
import numpy as np
import yaml

from deftpipe.workspace.spec import default_spec

LIGHTS = ("LightA", "LightB")


def write_pair(images: Path, split: str, obj: str, *, defect: bool, size: int = 32, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    golden = np.full((size, size), 60, np.uint8)
    cv2.rectangle(golden, (size // 4, size // 3), (3 * size // 4, 2 * size // 3), 150, -1)
    for light_i, light in enumerate(LIGHTS):
        g = np.clip(golden.astype(int) + 20 * light_i, 0, 255).astype(np.uint8)
        t = np.clip(g.astype(int) + rng.integers(-3, 4, g.shape), 0, 255).astype(np.uint8)
        if defect:
            cv2.circle(t, (size // 2, size // 2), max(2, size // 8), 250, -1)
        for kind, img in (("test", t), ("golden", g)):
            folder = images / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{obj}_{light}.png"), img)


def make_workspace(root: Path, *, n_train: int = 12, n_val: int = 6, n_kpi: int = 6, size: int = 32,
                   spec_overrides: dict | None = None) -> Path:
    """A valid workspace: every 3rd row a defect, distinct objects per split."""
    images = root / "images"
    for split, n in (("train", n_train), ("val", n_val), ("kpi", n_kpi)):
        lines = ["input_path,golden_path,label,object_name,component_kind"]
        for i in range(n):
            obj = f"{split.upper()}{i}@1"
            defect = i % 3 == 0
            write_pair(images, split, obj, defect=defect, size=size, seed=zlib.crc32(f"{split}:{i}".encode()) % 100_000)
            label = "missing" if defect else "PASS"
            lines.append(f"{split}/test,{split}/golden,{label},{obj},chip")
        csv = {"train": root / "train/base/training_set.csv", "val": root / "train/base/validation_set.csv",
               "kpi": root / "kpi/testing_set.csv"}[split]
        csv.parent.mkdir(parents=True, exist_ok=True)
        csv.write_text("\n".join(lines) + "\n")
    spec = default_spec()
    spec["dataset"]["classify"]["image_width"] = size
    spec["dataset"]["classify"]["image_height"] = size
    for key, value in (spec_overrides or {}).items():
        node = spec
        parts = key.split(".")
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = value
    (root / "specs").mkdir(parents=True, exist_ok=True)
    (root / "specs/baseline_spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (root / "results").mkdir(exist_ok=True)
    return root
