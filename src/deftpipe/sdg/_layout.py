"""Rough part layout of a component crop, estimated from its golden image: board, body, pads/solder.

Bright connected regions are solder and pads, the mid-grey (or dark) blob nearest the
centre is the part body, the border is board. Every step falls back to a centred
guess, so an estimate always exists (`estimated` says whether the fallback was used).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from deftpipe.preprocess.registration import best_shifts
from deftpipe.sdg._imaging import bbox, dilate, translate_mask


@dataclass(frozen=True)
class PartLayout:
    """Masks are bool (H, W); levels are per light (C,) medians of the base image."""

    body: np.ndarray
    pads: tuple[np.ndarray, ...]
    board: np.ndarray
    board_level: np.ndarray
    body_level: np.ndarray
    solder_level: np.ndarray
    axis: int  # 0: pads lie left/right of the body (x axis); 1: above/below (y axis)
    body_found: bool
    pads_found: bool
    shift: tuple[int, int]  # (dy, dx) golden -> painted image

    @property
    def shape(self) -> tuple[int, int]:
        return self.body.shape  # type: ignore[return-value]

    @property
    def pad_mask(self) -> np.ndarray:
        out = np.zeros(self.shape, bool)
        for p in self.pads:
            out |= p
        return out

    @property
    def body_box(self) -> tuple[int, int, int, int]:
        return bbox(self.body)

    def fillet(self, pad_index: int, reach: int = 3) -> np.ndarray:
        """The part of a pad next to the body (where the solder fillet wets the terminal)."""
        pad = self.pads[pad_index]
        near = dilate(self.body, reach) & pad
        return near if near.any() else pad

    def centre(self, mask: np.ndarray) -> tuple[float, float]:
        ys, xs = np.nonzero(mask)
        if len(xs) == 0:
            h, w = self.shape
            return (w - 1) / 2, (h - 1) / 2
        return float(xs.mean()), float(ys.mean())


def _components(mask: np.ndarray, min_area: int) -> list[np.ndarray]:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    comps = [(int(stats[i, cv2.CC_STAT_AREA]), i) for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= min_area]
    comps.sort(key=lambda t: (-t[0], t[1]))
    return [labels == i for _, i in comps]


def _centre_box(h: int, w: int, fy: float, fx: float) -> np.ndarray:
    m = np.zeros((h, w), bool)
    bh, bw = max(2, int(round(h * fy))), max(2, int(round(w * fx)))
    y0, x0 = (h - bh) // 2, (w - bw) // 2
    m[y0:y0 + bh, x0:x0 + bw] = True
    return m


def estimate_layout(golden: np.ndarray, *, align_to: np.ndarray | None = None, max_shift: int = 3) -> PartLayout:
    """Layout of the part in `golden` (C, H, W), moved onto `align_to` when given (the test image to paint)."""
    c, h, w = golden.shape
    grey = cv2.GaussianBlur(golden.astype(np.float32).mean(axis=0), (3, 3), 0.7)
    ring = max(1, min(h, w) // 16)
    border = np.concatenate([grey[:ring].ravel(), grey[-ring:].ravel(), grey[:, :ring].ravel(), grey[:, -ring:].ravel()])
    board_v = float(np.median(border))
    hi = float(np.percentile(grey, 99))
    span = max(hi - board_v, 1.0)
    min_area = max(3, int(0.004 * h * w))

    bright = grey >= board_v + 0.6 * span if span > 20 else np.zeros((h, w), bool)
    pads = _components(bright, min_area)[:16]

    mid = (np.abs(grey - board_v) > 0.2 * max(span, 40.0)) & ~dilate(bright, 1)
    mid = cv2.morphologyEx(mid.astype(np.uint8), cv2.MORPH_OPEN, np.ones((2, 2), np.uint8)).astype(bool)
    blobs = _components(mid, max(min_area, int(0.02 * h * w)))
    body = None
    if blobs:
        cy, cx = (h - 1) / 2, (w - 1) / 2

        def dist(m: np.ndarray) -> float:
            ys, xs = np.nonzero(m)
            return float(np.min((ys - cy) ** 2 + (xs - cx) ** 2))
        body = min(blobs, key=dist)
        # A blob that fills most of the crop is board texture, not a part.
        if body.mean() > 0.6:
            body = None
    body_found = body is not None
    if body is None:
        body = _centre_box(h, w, 0.34, 0.34)
        pads = [p for p in pads if not (p & body).all()]

    if pads:
        xs = [np.nonzero(p)[1].mean() for p in pads]
        ys = [np.nonzero(p)[0].mean() for p in pads]
        axis = 0 if (np.ptp(xs) if len(xs) > 1 else 1.0) >= (np.ptp(ys) if len(ys) > 1 else 0.0) else 1
    else:
        x0, y0, x1, y1 = bbox(body)
        axis = 0 if (x1 - x0) >= (y1 - y0) else 1
    pads_found = bool(pads)
    if not pads:
        pads = _fallback_pads(body, axis)

    dy = dx = 0
    if align_to is not None and align_to.shape == golden.shape:
        dy, dx = (int(v) for v in best_shifts(align_to[None], golden[None], max_shift)[0])
        if dy or dx:
            body = translate_mask(body, dy, dx)
            pads = [translate_mask(p, dy, dx) for p in pads]
            pads = [p for p in pads if p.any()] or _fallback_pads(body, axis)
    ref = align_to if align_to is not None else golden
    pad_mask = np.zeros((h, w), bool)
    for p in pads:
        pad_mask |= p
    board = ~dilate(body | pad_mask, 1)
    if not board.any():
        board = ~body

    def level(mask: np.ndarray, fallback: np.ndarray) -> np.ndarray:
        if not mask.any():
            return fallback
        return np.array([float(np.median(ref[i][mask])) for i in range(c)])

    board_level = level(board, np.full(c, board_v))
    body_level = level(body, board_level + 40)
    solder_level = level(pad_mask, np.minimum(board_level + 120, 250))
    return PartLayout(body=body, pads=tuple(pads), board=board, board_level=board_level, body_level=body_level,
                      solder_level=solder_level, axis=axis, body_found=body_found, pads_found=pads_found,
                      shift=(dy, dx))


def _fallback_pads(body: np.ndarray, axis: int) -> list[np.ndarray]:
    """Two pad boxes just outside the body's ends along `axis`."""
    h, w = body.shape
    x0, y0, x1, y1 = bbox(body)
    pads = []
    if axis == 0:
        pw = max(2, (x1 - x0) // 4)
        for a, b in ((max(0, x0 - pw), min(w, x0 + pw)), (max(0, x1 - pw), min(w, x1 + pw))):
            m = np.zeros((h, w), bool)
            m[y0:y1, a:b] = True
            pads.append(m)
    else:
        ph = max(2, (y1 - y0) // 4)
        for a, b in ((max(0, y0 - ph), min(h, y0 + ph)), (max(0, y1 - ph), min(h, y1 + ph))):
            m = np.zeros((h, w), bool)
            m[a:b, x0:x1] = True
            pads.append(m)
    return pads
