"""Register the golden to the test crop and build tolerant / untolerant difference maps (SPEC §8).

Works on the crop pair alone, batched with NumPy: for each pair an integer shift
within ±max_shift px minimising the mean absolute difference is applied to the
golden; the 1 px-tolerant difference is how far a test pixel lies outside the
[min, max] range of the golden's 3×3 neighbourhood, which forgives edges that
moved by one pixel while keeping real changes.

Arrays are (N, C, H, W) uint8 where C = lights; outputs keep that layout.
"""
from __future__ import annotations

import numpy as np


def _shift(img: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translate (…, H, W) by (dy, dx) with edge replication (no wrap-around)."""
    h, w = img.shape[-2:]
    ys = np.clip(np.arange(h) - dy, 0, h - 1)
    xs = np.clip(np.arange(w) - dx, 0, w - 1)
    return img[..., ys[:, None], xs[None, :]]


def best_shifts(test: np.ndarray, golden: np.ndarray, max_shift: int = 3) -> np.ndarray:
    """(N, 2) integer (dy, dx) per pair that best aligns golden onto test (all lights together)."""
    n = test.shape[0]
    if max_shift <= 0 or n == 0:
        return np.zeros((n, 2), dtype=np.int64)
    m = max_shift
    h, w = test.shape[-2:]
    t_in = test[..., m:h - m, m:w - m].astype(np.int16)
    g = golden.astype(np.int16)
    best = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    shifts = np.zeros((n, 2), dtype=np.int64)
    # Visit shifts from the centre outward so ties keep the smallest displacement.
    offsets = sorted(((dy, dx) for dy in range(-m, m + 1) for dx in range(-m, m + 1)),
                     key=lambda s: (abs(s[0]) + abs(s[1]), s))
    for dy, dx in offsets:
        g_in = g[..., m - dy:h - m - dy, m - dx:w - m - dx]  # a view: golden moved by (dy, dx)
        cost = np.abs(t_in - g_in).sum(axis=(1, 2, 3), dtype=np.int64)
        better = cost < best
        best = np.where(better, cost, best)
        shifts[better] = (dy, dx)
    return shifts


def apply_shifts(golden: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    out = np.empty_like(golden)
    for i, (dy, dx) in enumerate(shifts):
        out[i] = _shift(golden[i], int(dy), int(dx))
    return out


def register(test: np.ndarray, golden: np.ndarray, max_shift: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Registered golden (same shape/dtype as `golden`) and the shifts used."""
    shifts = best_shifts(test, golden, max_shift)
    return apply_shifts(golden, shifts), shifts


def _neighbourhood_minmax(img: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    r = radius
    h, w = img.shape[-2:]
    pad = [(0, 0)] * (img.ndim - 2) + [(r, r), (r, r)]
    padded = np.pad(img, pad, mode="edge")
    lo = img.copy()
    hi = img.copy()
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            view = padded[..., r + dy:r + dy + h, r + dx:r + dx + w]
            np.minimum(lo, view, out=lo)
            np.maximum(hi, view, out=hi)
    return lo, hi


def tolerant_difference(test: np.ndarray, golden: np.ndarray, tolerance: int = 1) -> np.ndarray:
    """uint8 map: distance of each test pixel from its golden 3×3 (for tolerance 1) [min, max] range."""
    lo, hi = _neighbourhood_minmax(golden, tolerance)
    t = test.astype(np.int16)
    below = lo.astype(np.int16) - t
    above = t - hi.astype(np.int16)
    return np.clip(np.maximum(below, above), 0, 255).astype(np.uint8)


def plain_difference(test: np.ndarray, golden: np.ndarray) -> np.ndarray:
    """uint8 |test − golden| with no tolerance: keeps 1–3 px defects the tolerant map nearly erases."""
    return np.abs(test.astype(np.int16) - golden.astype(np.int16)).astype(np.uint8)


def pair_channels(test: np.ndarray, golden: np.ndarray, *, max_shift: int = 3, tolerance: int = 1) -> dict[str, np.ndarray]:
    """Everything the model and the zero-shot scorer need from a batch of pairs.

    Returns: `golden_registered`, `diff_tolerant`, `diff_plain` (each N, C, H, W uint8) and `shifts` (N, 2).
    """
    reg, shifts = register(test, golden, max_shift)
    return {
        "golden_registered": reg,
        "diff_tolerant": tolerant_difference(test, reg, tolerance),
        "diff_plain": plain_difference(test, reg),
        "shifts": shifts,
    }
