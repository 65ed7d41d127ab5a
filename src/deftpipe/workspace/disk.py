"""Free-disk check of the pre-flights: an estimate of what a run writes against the free space where it writes.

Runs before anything is written, so a refused `run` / `deft` / `automl` leaves nothing under `results/`.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from deftpipe.errors import InsufficientDisk

# The estimate is rough (checkpoint size depends on the backbone, the cache on the decode size): ask for twice it.
MARGIN = 2
CHECKPOINT_BYTES = 2_000_000  # native resnet_tiny/small checkpoint with optimizer state, rounded up
FIXED_BYTES = 10_000_000  # state, journals, CSVs, report


def checkpoints_per_training(keep_checkpoints: str, epochs: int) -> int:
    """Files one training leaves: best_val + latest, or every epoch's file with `--keep-checkpoints all`."""
    return max(2, int(epochs)) if keep_checkpoints == "all" else 2


def estimate_bytes(*, n_rows: int, image_bytes: int, n_trainings: int, checkpoints_each: int = 2,
                   n_sdg: int = 0, checkpoint_bytes: int = CHECKPOINT_BYTES) -> int:
    """Bytes a run writes: checkpoints, decode cache (~3x the images it reads), SDG images, fixed files.

    Args:
        n_rows: pairs decoded once into the cache (training + validation + KPI + holdout).
        image_bytes: bytes of one pair's images on disk (all lights).
        n_trainings: trainings of the run (AutoML trials + DEFT baseline and iterations).
        n_sdg: synthetic pairs written over the whole run.
    """
    ckpts = n_trainings * checkpoints_each * checkpoint_bytes
    cache = n_rows * image_bytes * 3
    sdg = n_sdg * image_bytes * 2
    return int(ckpts + cache + sdg + FIXED_BYTES)


def sample_image_bytes(images_dir: Path, image_ext: str, n_lights: int) -> int:
    """Size of one pair's images, from the first image found (at least 1 kB per light)."""
    sample = next(iter(Path(images_dir).rglob(f"*{image_ext}")), None) if Path(images_dir).is_dir() else None
    size = sample.stat().st_size if sample is not None else 0
    return max(size, 1000) * max(1, n_lights)


def free_bytes(path: Path) -> int:
    """Free bytes on the file system that holds `path` (or its nearest existing parent)."""
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return int(shutil.disk_usage(probe).free)


def _fmt(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # unreachable; keeps the type checker content


def require_free_disk(path: Path, estimate: int, *, command: str, smaller: str) -> tuple[int, int]:
    """Refuse to start when the free space under `path` is below `MARGIN` x `estimate`; returns (free, needed).

    Args:
        command: the command being refused, for the message (`run`, `deft`, `automl`).
        smaller: the flags that shrink the run, for the hint.

    Raises:
        InsufficientDisk: free < needed; nothing has been written.
    """
    free = free_bytes(path)
    needed = MARGIN * int(estimate)
    if free < needed:
        raise InsufficientDisk(
            f"{command}: not enough free disk for {path}: {free:,} bytes ({_fmt(free)}) free, the run needs about "
            f"{needed:,} bytes ({_fmt(needed)}: {_fmt(estimate)} estimated x{MARGIN} margin); nothing was written.",
            hint=f"Free at least {_fmt(needed - free)} on that file system (old run folders under results/ and their "
                 f"cache/ folders can go), or shrink the run ({smaller}), then run the same command again.")
    return free, needed


def describe(free: int, estimate: int) -> str:
    """The pre-flight's one-line free-disk value."""
    return f"{_fmt(free)} free (run writes ≈ {_fmt(estimate)}; needs {_fmt(MARGIN * estimate)} with margin)"
