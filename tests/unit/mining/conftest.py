"""A tiny mining workspace (32 px, two lights) and fake embedders with controlled similarities."""
from __future__ import annotations

import hashlib
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deftpipe.mining import MiningConfig, MiningHistory, MiningLayout, ProtectedSets, l2_normalize
from tests.helpers import LIGHTS, write_pair

DIM = 16
COLUMNS = ["input_path", "golden_path", "label", "object_name"]


def frame(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS)


class VectorEmbedder:
    """Deterministic fake: a vector per object_name from `table`, else a hash-seeded random one."""

    def __init__(self, table: Mapping[str, np.ndarray] | None = None, *, key: str = "fake") -> None:
        self.table = dict(table or {})
        self.key = key
        self.calls: list[int] = []

    @property
    def cache_key(self) -> str:
        return self.key

    def vector(self, name: str) -> np.ndarray:
        if name in self.table:
            return np.asarray(self.table[name], np.float32)
        seed = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
        return np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)

    def embed(self, rows: pd.DataFrame, images_dir: Path) -> np.ndarray:
        self.calls.append(len(rows))
        if len(rows) == 0:
            return np.zeros((0, DIM), np.float32)
        return l2_normalize(np.stack([self.vector(n) for n in rows["object_name"]]))


def unit(*coords: float) -> np.ndarray:
    v = np.zeros(DIM, np.float32)
    v[: len(coords)] = coords
    return v


def at_cos(c: float) -> np.ndarray:
    """A unit vector whose cosine with e0 is exactly `c`."""
    return unit(c, float(np.sqrt(max(0.0, 1 - c * c))))


class MiningWs:
    """Workspace root + helpers to add pairs; pool rows live under images/pool/, KPI under images/kpi/."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.images = root / "images"

    def pair(self, split: str, obj: str, *, defect: bool = True, seed: int = 0) -> tuple[str, str, str]:
        write_pair(self.images, split, obj, defect=defect, seed=seed)
        return f"{split}/test", f"{split}/golden", obj

    def row(self, split: str, obj: str, label: str, *, seed: int = 0) -> tuple[str, str, str, str]:
        inp, gold, name = self.pair(split, obj, defect=label != "PASS", seed=seed)
        return inp, gold, label, name

    def copy_test_images(self, src_split: str, src_obj: str, dst_split: str, dst_obj: str) -> tuple[str, str, str]:
        """Same test-image bytes under another folder and name (leak by content)."""
        for kind in ("test", "golden"):
            (self.images / dst_split / kind).mkdir(parents=True, exist_ok=True)
            for light in LIGHTS:
                shutil.copyfile(self.images / src_split / kind / f"{src_obj}_{light}.png",
                                self.images / dst_split / kind / f"{dst_obj}_{light}.png")
        return f"{dst_split}/test", f"{dst_split}/golden", dst_obj

    @property
    def layout(self) -> MiningLayout:
        return MiningLayout(workspace_root=self.root, lights=LIGHTS, image_ext=".png")

    def cfg(self, **kw: object) -> MiningConfig:
        return MiningConfig(layout=self.layout, **kw)  # type: ignore[arg-type]

    def protected(self, **frames: pd.DataFrame) -> ProtectedSets:
        return ProtectedSets.from_frames(frames, images_dir=self.images, lights=LIGHTS, image_ext=".png",
                                         workspace_root=self.root)


@pytest.fixture
def mws(tmp_path: Path) -> MiningWs:
    root = tmp_path / "ws"
    root.mkdir()
    return MiningWs(root)


@pytest.fixture
def empty_history() -> MiningHistory:
    return MiningHistory()
