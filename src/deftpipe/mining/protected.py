"""Rows mining must never return: validation, KPI and holdout rows, by key or by content hash.

Keys are normalized (input_path, golden_path, label, object_name) in workspace-root
coordinates; the content hash is sha256 over the test-image bytes of all lights,
sorted by light (the leakage key of SPEC §5, same as workspace validation).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from deftpipe.mining.layout import leakage_keys, root_prefix
from deftpipe.workspace.content_hash import content_hashes
from deftpipe.workspace.paths import ImageLocator
from deftpipe.workspace.tables import read_samples_csv

LEAK_SOURCES: tuple[str, ...] = ("validation", "kpi", "holdout")


def missing_files(rows: pd.DataFrame, locator: ImageLocator) -> pd.Series:
    """Boolean per row: True when any test or golden file of any light is absent."""
    tests, goldens = locator.frame_paths(rows)
    missing = [False] * len(rows)
    for per_light in (*tests, *goldens):
        for i, path in enumerate(per_light):
            if not missing[i] and not os.path.isfile(path):
                missing[i] = True
    return pd.Series(missing, index=rows.index, dtype=bool)


@dataclass(frozen=True)
class ProtectedSets:
    """Leakage keys per source (`validation`, `kpi`, `holdout`) and the union of their content hashes.

    Example:
        protected = ProtectedSets.from_csvs(validation=ws.validation_csv, kpi=ws.kpi_csv,
                                            images_dir=ws.images_dir, lights=("LightA", "LightB"), image_ext=".png")
    """

    keys: dict[str, frozenset[str]] = field(default_factory=dict)
    hashes: frozenset[str] = frozenset()

    @classmethod
    def empty(cls) -> ProtectedSets:
        return cls()

    @classmethod
    def from_frames(cls, frames: dict[str, pd.DataFrame], *, images_dir: Path, lights: Sequence[str],
                    image_ext: str, workspace_root: Path | None = None, hash_content: bool = True) -> ProtectedSets:
        """Keys (and hashes) of rows whose paths are relative to `images_dir`."""
        root = Path(workspace_root) if workspace_root is not None else Path(images_dir).parent
        prefix = root_prefix(Path(images_dir), root)
        locator = ImageLocator(Path(images_dir), root, tuple(lights), image_ext)
        keys: dict[str, frozenset[str]] = {}
        hashes: set[str] = set()
        for source, frame in frames.items():
            if source not in LEAK_SOURCES:
                raise ValueError(f"unknown protected source '{source}'; use one of {list(LEAK_SOURCES)}")
            keys[source] = frozenset(leakage_keys(frame, prefix=prefix))
            if hash_content and len(frame):
                hashes.update(h for h in content_hashes(frame, locator, missing_ok=True) if h is not None)
        return cls(keys=keys, hashes=frozenset(hashes))

    @classmethod
    def from_csvs(cls, *, validation: Path | None = None, kpi: Path | None = None, holdout: Path | None = None,
                  images_dir: Path, lights: Sequence[str], image_ext: str,
                  workspace_root: Path | None = None) -> ProtectedSets:
        """Read the base CSVs (paths relative to `images_dir`); a None or absent holdout CSV is skipped."""
        frames: dict[str, pd.DataFrame] = {}
        for source, path in (("validation", validation), ("kpi", kpi), ("holdout", holdout)):
            if path is None or (source == "holdout" and not Path(path).exists()):
                continue
            frames[source] = read_samples_csv(path, name=str(path), allow_empty=True)
        return cls.from_frames(frames, images_dir=images_dir, lights=lights, image_ext=image_ext,
                               workspace_root=workspace_root)

    def leak_source(self, keys: Iterable[str]) -> list[str | None]:
        """Per key: the first source (validation, kpi, holdout) that holds it, else None."""
        out: list[str | None] = []
        for key in keys:
            out.append(next((s for s in LEAK_SOURCES if key in self.keys.get(s, ())), None))
        return out

    def __len__(self) -> int:
        return sum(len(v) for v in self.keys.values())
