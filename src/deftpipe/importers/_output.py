"""The target workspace of an importer: refusing foreign folders, the ownership marker, the derived spec.

An importer writes only into an empty (or absent) folder, or with `force` into
one it created itself (marker file); it never writes inside the source data.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from deftpipe.errors import ConfigError
from deftpipe.workspace.io import write_json_atomic
from deftpipe.workspace.spec import set_key, template_text

MARKER_NAME = ".deftpipe-import.json"
LOCK_NAME = ".deftpipe-import.lock"  # held for the whole import; two imports into one folder would interleave
STAGING_IMAGES = "images.partial"


def _is_within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_target(ws: Path, src: Path, *, force: bool, command: str) -> None:
    """Raise ConfigError unless `ws` may be (re)written by this importer."""
    ws_real, src_real = ws.resolve(), src.resolve()
    if _is_within(ws_real, src_real) or _is_within(src_real, ws_real):
        raise ConfigError(
            f"workspace '{ws}' and source '{src}' overlap; the source data is never modified, so choose a "
            "workspace folder outside the source (and not containing it)."
        )
    if not ws.exists():
        return
    if not ws.is_dir():
        raise ConfigError(f"workspace '{ws}' exists and is a file, not a folder; choose another path.")
    entries = sorted(p.name for p in ws.iterdir() if p.name != LOCK_NAME)
    if not entries:
        return
    if not force:
        shown = ", ".join(entries[:5]) + (" …" if len(entries) > 5 else "")
        raise ConfigError(
            f"workspace '{ws}' is not empty ({shown}); choose an empty folder, or pass --force to replace a "
            f"workspace that `{command}` created earlier.",
        )
    if not (ws / MARKER_NAME).is_file():
        raise ConfigError(
            f"workspace '{ws}' is not empty and was not created by `{command}` (no {MARKER_NAME}); --force only "
            "replaces workspaces the importer made itself. Choose an empty folder or delete this one yourself."
        )
    results = ws / "results"
    if results.is_dir() and any(results.iterdir()):
        raise ConfigError(
            f"workspace '{ws}' holds run results in {results}; --force would delete them. Move or delete "
            "results/ yourself first, or import into a new folder."
        )


def clear_target(ws: Path) -> None:
    """Empty a folder `check_target` accepted (absent, empty, or marked as ours); the import lock stays."""
    if ws.exists():
        for entry in ws.iterdir():
            if entry.name == LOCK_NAME:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    ws.mkdir(parents=True, exist_ok=True)


def write_marker(ws: Path, *, command: str, status: str, extra: dict[str, Any] | None = None) -> None:
    write_json_atomic(ws / MARKER_NAME, {"created_by": command, "status": status, **(extra or {})})


def write_png(path: Path, data: bytes) -> None:
    """Plain write into the staging folder (an fsync per crop would cost ~1 ms x tens of thousands of files).

    Atomicity comes from `publish_images` renaming the whole folder; a crash before that leaves the
    marker at status `in_progress` and the import is simply redone with --force.
    """
    with open(path, "wb") as fh:
        fh.write(data)


def publish_images(ws: Path) -> Path:
    """Rename `images.partial/` to `images/`: readers never see a half-written image tree."""
    staging, final = ws / STAGING_IMAGES, ws / "images"
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    return final


def derived_spec_text(*, crop: int, pass_ratio: float, source: str) -> str:
    """The package template adapted to one grey light (`Mono`) of `crop` px PNG crops."""
    spec = yaml.safe_load(template_text())
    defect_weight = round(min(10.0, max(1.0, pass_ratio / (1.0 - pass_ratio) / 2.0)), 2)
    for key, value in {
        "dataset.classify.input_map": {"Mono": 0},
        "dataset.classify.num_input": 1,
        "dataset.classify.image_width": crop,
        "dataset.classify.image_height": crop,
        "dataset.classify.image_ext": ".png",
        "dataset.classify.grayscale": True,
        "dataset.classify.batch_size": 64,
        "dataset.classify.augmentation_config.rgb_input_mean": [0.5],
        "dataset.classify.augmentation_config.rgb_input_std": [0.5],
        "train.num_epochs": 10,
        "train.checkpoint_interval": 1,
        "train.optim.lr": 0.002,
        # half the PASS:defect odds: enough pull towards 100 % recall without drowning PASS
        "train.classify.cls_weight": [1.0, defect_weight],
    }.items():
        set_key(spec, key, value)
    header = (
        f"# deftpipe baseline spec for {source}: one grey light 'Mono', {crop}x{crop} PNG crops of\n"
        "# near-binary PCB images (test vs golden). Derived from the package template; edit freely.\n"
    )
    return header + yaml.safe_dump(spec, sort_keys=False)
