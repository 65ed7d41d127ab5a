"""The zero-shot baseline the product ships (SPEC §8): crop-pair registration + 1 px-tolerant difference.

For each pair the golden is registered to the test crop by a ±max_shift px
search (`deftpipe.preprocess.registration`, the same code that builds the
model's difference channels), the 1 px morphological-tolerant difference is
averaged over lights, pixels the comparison cannot see properly are ignored
(the band the shift filled by edge replication and a `tolerance`-wide crop
border where the golden neighbourhood is cut off), and the pair's score is the
maximum of a 3×3 box mean, so a lone noisy pixel cannot decide. Higher = more
likely defect.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from deftpipe.errors import ContractError
from deftpipe.preprocess.registration import register, tolerant_difference
from deftpipe.workspace import spec as spec_mod
from deftpipe.workspace.io import write_csv_atomic

# Measured on 54 346 DeepPCB 64×64 crops (bench/zeroshot_deeppcb.py, FAR@100 / FAR@99 / AUROC):
#   no smoothing 10.6 / 9.5 / 0.972; 2×2 box 0.95 / 0.75 / 0.9975; 3×3 box 1.03 / 0.35 / 0.9979;
#   3×3 without the unseen-pixel mask 2.37 / 0.79 / 0.9963.
# 3×3 halves FAR@99 against 2×2 at an equal FAR@100 (within the noise of SPEC §8); larger boxes start to
# dilute 1–3 px pin-holes on low-contrast images.
DEFAULT_SMOOTH = 3
BATCH = 2048


def box_max(img: np.ndarray, k: int) -> np.ndarray:
    """Per image of (N, H, W): the maximum of the k×k box mean over valid positions (k <= 1: plain max)."""
    if k <= 1:
        return img.reshape(img.shape[0], -1).max(axis=1)
    n, h, w = img.shape
    k = min(k, h, w)
    c = np.zeros((n, h + 1, w + 1), dtype=np.float64)
    c[:, 1:, 1:] = img.cumsum(axis=1, dtype=np.float64).cumsum(axis=2)
    box = c[:, k:, k:] - c[:, :-k, k:] - c[:, k:, :-k] + c[:, :-k, :-k]
    return box.reshape(n, -1).max(axis=1) / (k * k)


def zero_shot_scores(test: np.ndarray, golden: np.ndarray, *, max_shift: int = 3, tolerance: int = 1,
                     smooth: int = DEFAULT_SMOOTH) -> np.ndarray:
    """Scores (N,) float64 for (N, C, H, W) uint8 test/golden pairs; higher = more likely defect.

    A pair that differs only by a shift within ±max_shift px and 1 px edge jitter scores ≈ 0;
    the score is in grey levels (0–255) of the smoothed tolerant difference.
    """
    t = np.asarray(test)
    g = np.asarray(golden)
    if t.shape != g.shape or t.ndim != 4:
        raise ContractError(
            f"zero-shot scorer needs test and golden as equal (N, C, H, W) arrays, got {t.shape} and {g.shape}."
        )
    if t.dtype != np.uint8 or g.dtype != np.uint8:
        raise ContractError(f"zero-shot scorer needs uint8 images, got {t.dtype} and {g.dtype}.")
    out = np.zeros(t.shape[0], dtype=np.float64)
    for start in range(0, t.shape[0], BATCH):
        diff = tolerant_map(t[start:start + BATCH], g[start:start + BATCH], max_shift=max_shift, tolerance=tolerance)
        out[start:start + BATCH] = box_max(diff, smooth)
    return out


def tolerant_map(test: np.ndarray, golden: np.ndarray, *, max_shift: int = 3, tolerance: int = 1,
                 mask_unseen: bool = True) -> np.ndarray:
    """(N, H, W) float32: the registered, tolerant difference averaged over lights (before reduction).

    With `mask_unseen`, pixels whose golden counterpart came from edge replication (the band of
    width |shift| the registration filled) or whose tolerance neighbourhood crosses the crop
    border are set to 0: there the map reports the crop boundary, not the part.
    """
    reg, shifts = register(test, golden, max_shift)
    diff = tolerant_difference(test, reg, tolerance).mean(axis=1, dtype=np.float32)
    if mask_unseen and diff.size:
        diff *= unseen_mask(shifts, diff.shape[1], diff.shape[2], border=max(0, tolerance))
    return diff


def unseen_mask(shifts: np.ndarray, height: int, width: int, *, border: int) -> np.ndarray:
    """(N, H, W) bool, True where test and registered golden both hold real, fully-surrounded pixels."""
    ys = np.arange(height)[None, :]
    xs = np.arange(width)[None, :]
    dy = shifts[:, :1]
    dx = shifts[:, 1:2]
    ok_y = (ys >= np.maximum(dy, 0)) & (ys < height + np.minimum(dy, 0)) & (ys >= border) & (ys < height - border)
    ok_x = (xs >= np.maximum(dx, 0)) & (xs < width + np.minimum(dx, 0)) & (xs >= border) & (xs < width - border)
    return ok_y[:, :, None] & ok_x[:, None, :]


def score_csv_zero_shot(csv: Path, *, images_dir: Path, workspace_root: Path, spec: Mapping[str, Any],
                        out_csv: Path) -> Path:
    """Score every row of a sample CSV with the zero-shot scorer; write the rows + `siamese_score` (%.17g).

    Lights, file extension, size and colour come from `spec` (dataset.classify.*); the shift search
    radius from `model.classify.max_shift_px` (default 3). Images are decoded in batches.
    """
    from deftpipe.workspace.images import load_pairs
    from deftpipe.workspace.paths import ImageLocator
    from deftpipe.workspace.tables import read_samples_csv

    settings = spec_mod.ImageSettings.from_spec(spec)
    max_shift = spec_mod.get(spec, "model.classify.max_shift_px", 3)
    max_shift = 3 if max_shift is None else int(max_shift)
    rows = read_samples_csv(csv)
    locator = ImageLocator(Path(images_dir), Path(workspace_root), settings.lights, settings.image_ext)
    scores = np.zeros(len(rows), dtype=np.float64)
    for start in range(0, len(rows), BATCH):
        part = rows.iloc[start:start + BATCH]
        test, golden = load_pairs(part, locator, grayscale=settings.grayscale,
                                  size=(settings.height, settings.width), csv_name=str(csv))
        scores[start:start + len(part)] = zero_shot_scores(test, golden, max_shift=max_shift)
    out = rows.copy()
    out["siamese_score"] = scores
    write_csv_atomic(out_csv, out)
    return Path(out_csv)
