"""Where mining reads images and how its rows map into workspace-root coordinates (SPEC §4).

Pool and KPI CSVs are relative to their image roots; every row mining writes is
relative to the workspace root, so the image-root prefix (e.g. `images/`) is
added exactly once. History and leakage keys use the same coordinates.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from deftpipe.errors import ConfigError
from deftpipe.workspace.layout import IMAGES_REL, REQUIRED_COLUMNS
from deftpipe.workspace.paths import ImageLocator
from deftpipe.workspace.tables import row_keys


def root_prefix(images_dir: Path, workspace_root: Path) -> str:
    """`images_dir` relative to the workspace root as a path prefix ('images/'; '' for the root itself)."""
    root = Path(os.path.realpath(workspace_root))
    images = Path(os.path.realpath(images_dir))
    try:
        rel = images.relative_to(root).as_posix()
    except ValueError:
        raise ConfigError(
            f"image root '{images_dir}' is outside the workspace '{root}'; keep mining images inside the workspace "
            "(SPEC §2) or pass a mining_images_root under it."
        ) from None
    return "" if rel in ("", ".") else rel.rstrip("/") + "/"


def norm_path(values: pd.Series, prefix: str = "") -> pd.Series:
    """POSIX-normalized relative paths with `prefix` prepended once: no '\\', no '//', no leading './' or '/'."""
    out = values.astype(str).str.replace("\\", "/", regex=False).str.replace(r"/{2,}", "/", regex=True)
    out = out.str.replace(r"^(\./)+", "", regex=True).str.strip("/")
    if prefix:
        out = prefix + out
    return out.str.replace(r"/{2,}", "/", regex=True)


def filepath_keys(rows: pd.DataFrame, *, first_light: str, image_ext: str, prefix: str = "") -> pd.Series:
    """History identity (`filepath`): the first light's test image, relative to the workspace root.

    Example:
        filepath_keys(pool, first_light="LightA", image_ext=".png", prefix="images/")
        # -> 'images/pool/test/C1@1_LightA.png'
    """
    folder = norm_path(rows["input_path"], prefix)
    name = rows["object_name"].astype(str) + f"_{first_light}{image_ext}"
    return (folder + "/" + name).str.lstrip("/")


def leakage_keys(rows: pd.DataFrame, *, prefix: str = "") -> pd.Series:
    """Normalized (input_path, golden_path, label, object_name) keys in workspace-root coordinates.

    `boardname` is left out on purpose: the same paths name the same files whatever the
    board column says, so ignoring it can only find more leaks, never fewer.
    """
    frame = rows[list(REQUIRED_COLUMNS)].copy()
    frame["input_path"] = norm_path(frame["input_path"])
    frame["golden_path"] = norm_path(frame["golden_path"])
    return row_keys(frame, prefix=prefix)


@dataclass(frozen=True)
class MiningLayout:
    """Image roots, lights and file extension mining needs; all roots inside `workspace_root`.

    Example:
        layout = MiningLayout.from_spec(ws.root, spec, cache_dir=run_dir / "cache")
    """

    workspace_root: Path
    lights: tuple[str, ...]
    image_ext: str
    pool_images_dir: Path | None = None     # image root of the pool CSV; default <ws>/images
    targets_images_dir: Path | None = None  # image root of the gaps (KPI) rows; default <ws>/images
    cache_dir: Path | None = None           # embedding cache; None = no caching

    def __post_init__(self) -> None:
        if not self.lights:
            raise ConfigError("MiningLayout.lights is empty; name the lights of dataset.classify.input_map.")
        object.__setattr__(self, "workspace_root", Path(os.path.realpath(self.workspace_root)))
        for name in ("pool_images_dir", "targets_images_dir"):
            value = getattr(self, name)
            path = self.workspace_root / IMAGES_REL if value is None else Path(value)
            if not path.is_absolute():
                path = self.workspace_root / path
            object.__setattr__(self, name, path)
            root_prefix(path, self.workspace_root)  # raises when outside the workspace

    @classmethod
    def from_spec(cls, workspace_root: Path | str, spec: Mapping[str, Any], *,
                  mining_images_root: Path | str | None = None, cache_dir: Path | None = None) -> MiningLayout:
        """Lights / extension from the spec; targets under `dataset.classify.images_dir` (default `images`)."""
        from deftpipe.workspace.spec import ImageSettings, get

        settings = ImageSettings.from_spec(spec)
        root = Path(workspace_root)
        images = Path(str(get(spec, "dataset.classify.images_dir") or IMAGES_REL))
        images = images if images.is_absolute() else root / images
        pool = Path(mining_images_root) if mining_images_root is not None else images
        return cls(workspace_root=root, lights=settings.lights, image_ext=settings.image_ext,
                   pool_images_dir=pool, targets_images_dir=images, cache_dir=cache_dir)

    @property
    def pool_dir(self) -> Path:
        assert self.pool_images_dir is not None  # set in __post_init__
        return self.pool_images_dir

    @property
    def targets_dir(self) -> Path:
        assert self.targets_images_dir is not None  # set in __post_init__
        return self.targets_images_dir

    @property
    def pool_prefix(self) -> str:
        return root_prefix(self.pool_dir, self.workspace_root)

    @property
    def targets_prefix(self) -> str:
        return root_prefix(self.targets_dir, self.workspace_root)

    def locator(self, images_dir: Path) -> ImageLocator:
        return ImageLocator(images_dir, self.workspace_root, self.lights, self.image_ext)
