"""Candidate crops of one DeepPCB pair: defect windows from the boxes, PASS windows from box-free, non-blank areas.

Only positions and labels come out; pixels are cut later, and only for the crops
a split keeps. The PASS order is a seeded shuffle, so taking a prefix is a fair sample.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from deftpipe.importers._boxes import (
    DEFECT_REASON,
    MIXED_REASON,
    PARTIAL_REASON,
    Box,
    boxes_array,
    defect_window,
    grid_windows,
    label_windows,
    max_inside_fraction,
)
from deftpipe.workspace.layout import PASS_LABEL

MODES: tuple[str, ...] = ("defect-centred", "tiles")


@dataclass(frozen=True)
class CropRules:
    """How windows are placed, labelled and filtered (the importer's keyword options)."""

    crop: int = 64
    mode: str = "defect-centred"
    stride: int | None = None
    min_inside: float = 0.7        # share of a box's area that must lie in the crop to label it
    margin: int = 2                # px around a crop that must be box-free for PASS
    filter_blank: bool = True
    min_foreground: float = 0.02   # minority-colour share of the golden below which a PASS crop is blank
    min_std: float = 4.0           # grey-level std of the golden below which a PASS crop is blank
    max_pass_overlap: float = 0.25  # defect-centred PASS crops may share at most this share of their area

    @property
    def tile_stride(self) -> int:
        return self.stride or self.crop

    @property
    def pass_stride(self) -> int:
        return self.stride or max(1, self.crop // 4)


@dataclass
class ImageCandidates:
    """What one pair can contribute: defect crops `(x, y, label)` and PASS origins `(x, y)` in sampling order."""

    defects: list[tuple[int, int, str]] = field(default_factory=list)
    passes: list[tuple[int, int]] = field(default_factory=list)
    n_boxes: int = 0
    n_boxes_labelled: int = 0
    n_boxes_too_large: int = 0
    n_boxes_ambiguous: int = 0     # defect-centred: no placement avoided boxes of other types / partial boxes
    n_dropped_partial: int = 0     # tiles: windows dropped because a box is only partly inside
    n_dropped_mixed: int = 0       # tiles: windows dropped because boxes of two types are inside
    n_pass_windows: int = 0        # PASS windows before blank filtering (tiles: tiles; defect-centred: grid)
    n_blank: int = 0


def blank_windows(golden: np.ndarray, windows: np.ndarray, *, min_foreground: float, min_std: float) -> np.ndarray:
    """Boolean per window: the golden crop is near-uniform (almost no copper edge or almost all one colour)."""
    win = np.asarray(windows, np.int64).reshape(-1, 4)
    if len(win) == 0:
        return np.zeros(0, bool)
    bright = cv2.integral((golden >= 128).view(np.uint8))
    s1, s2 = cv2.integral2(np.ascontiguousarray(golden), sdepth=cv2.CV_64F, sqdepth=cv2.CV_64F)
    x0, y0, x1, y1 = win.T

    def box_sum(table: np.ndarray) -> np.ndarray:
        return (table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]).astype(np.float64)

    area = ((x1 - x0) * (y1 - y0)).astype(np.float64)
    share = box_sum(bright) / area
    minority = np.minimum(share, 1.0 - share)
    mean = box_sum(s1) / area
    var = np.maximum(box_sum(s2) / area - mean * mean, 0.0)
    return (minority < min_foreground) | (np.sqrt(var) < min_std)


def _spread(order: np.ndarray, windows: np.ndarray, crop: int, max_overlap: float) -> list[int]:
    """Greedy pick in `order`, skipping windows that overlap an already picked one by more than `max_overlap`."""
    limit = max_overlap * crop * crop
    xy = windows[order, :2]
    blocked = np.zeros(len(order), bool)
    picked: list[int] = []
    for k in range(len(order)):
        if blocked[k]:
            continue
        picked.append(int(order[k]))
        ow = np.clip(crop - np.abs(xy[:, 0] - xy[k, 0]), 0, None)
        oh = np.clip(crop - np.abs(xy[:, 1] - xy[k, 1]), 0, None)
        blocked |= ow * oh > limit
    return picked


def _n_boxes_covered(defects: Sequence[tuple[int, int, str]], arr: np.ndarray, crop: int, min_inside: float) -> int:
    """Boxes that lie (mostly) inside at least one defect crop."""
    if len(arr) == 0 or not defects:
        return 0
    kept = np.array([(x, y, x + crop, y + crop) for x, y, _ in defects], np.int64)
    ix = np.minimum(kept[:, None, 2], arr[None, :, 2]) - np.maximum(kept[:, None, 0], arr[None, :, 0])
    iy = np.minimum(kept[:, None, 3], arr[None, :, 3]) - np.maximum(kept[:, None, 1], arr[None, :, 1])
    area = (arr[:, 2] - arr[:, 0]) * (arr[:, 3] - arr[:, 1])
    inside = np.clip(ix, 0, None) * np.clip(iy, 0, None) / area[None, :] >= min_inside
    return int(inside.any(axis=0).sum())


def image_candidates(boxes: Sequence[Box], golden: np.ndarray, rules: CropRules,
                     rng: np.random.Generator) -> ImageCandidates:
    """Defect and PASS crop candidates of one pair (`golden` is the template image, used for blank filtering).

    tiles:          every grid window is labelled; defect windows kept, PASS windows shuffled.
    defect-centred: one window per box (`defect_window`); PASS windows from a finer grid, shuffled,
                    then thinned so no two overlap by more than `max_pass_overlap`.
    """
    height, width = golden.shape[:2]
    crop = rules.crop
    out = ImageCandidates(n_boxes=len(boxes))
    arr = boxes_array(boxes)
    kw = {"min_inside": rules.min_inside, "margin": rules.margin}
    tiles = rules.mode == "tiles"
    pool = grid_windows(height, width, crop, rules.tile_stride if tiles else rules.pass_stride)
    labels, reasons = label_windows(pool, arr, **kw)
    if tiles:
        out.defects = [(int(w[0]), int(w[1]), str(lab)) for w, lab, why in zip(pool, labels, reasons)
                       if why == DEFECT_REASON]
        out.n_dropped_partial = reasons.count(PARTIAL_REASON)
        out.n_dropped_mixed = reasons.count(MIXED_REASON)
    else:
        for box in boxes:
            if max_inside_fraction(box, crop) < rules.min_inside:
                out.n_boxes_too_large += 1
                continue
            origin = defect_window(box, boxes, crop=crop, height=height, width=width, rng=rng, **kw)
            if origin is None:
                out.n_boxes_ambiguous += 1
            elif (*origin, box.label) not in out.defects:
                out.defects.append((*origin, box.label))
    pass_idx = np.array([i for i, lab in enumerate(labels) if lab == PASS_LABEL], np.int64)
    order = rng.permutation(pass_idx)
    out.n_pass_windows = len(order)
    if len(order) and rules.filter_blank:
        blank = blank_windows(golden, pool[order], min_foreground=rules.min_foreground, min_std=rules.min_std)
        out.n_blank = int(blank.sum())
        order = order[~blank]
    if not tiles:
        order = np.array(_spread(order, pool, crop, rules.max_pass_overlap), np.int64)
    out.passes = [(int(pool[i, 0]), int(pool[i, 1])) for i in order]
    out.n_boxes_labelled = _n_boxes_covered(out.defects, arr, crop, rules.min_inside)
    return out
