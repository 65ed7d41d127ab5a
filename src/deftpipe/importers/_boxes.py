"""DeepPCB boxes and the crop label rule: which windows are PASS, which are one defect, which are ambiguous.

Pure geometry over integer pixel rectangles ``(x0, y0, x1, y1)`` (half-open); no
image is read here. A window gets a defect label only when every box it touches
lies mostly inside it and all those boxes share one type.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deftpipe.errors import ContractError
from deftpipe.workspace.layout import PASS_LABEL

# DeepPCB type ids (README of the dataset) -> our label names.
DEFECT_NAMES: dict[int, str] = {1: "open", 2: "short", 3: "mousebite", 4: "spur", 5: "copper", 6: "pin-hole"}
LABELS: tuple[str, ...] = (PASS_LABEL, *DEFECT_NAMES.values())

# Reasons a window got its verdict (the import report counts them).
PASS_REASON = "pass"
DEFECT_REASON = "defect"
PARTIAL_REASON = "partial"  # a box touches the window but is not mostly inside
MIXED_REASON = "mixed"      # boxes of two or more types are inside

_SPLIT_RE = re.compile(r"[,\s]+")


@dataclass(frozen=True)
class Box:
    """One annotated defect: half-open pixel rectangle plus DeepPCB type id."""

    x0: int
    y0: int
    x1: int
    y1: int
    type_id: int

    @property
    def label(self) -> str:
        return DEFECT_NAMES[self.type_id]

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


@dataclass(frozen=True)
class CropLabel:
    """Verdict for one window: `label` is None when the window must be dropped."""

    label: str | None
    reason: str


def parse_box_line(line: str, *, where: str) -> Box | None:
    """`x1,y1,x2,y2,type` (commas and/or spaces); blank lines give None."""
    text = line.strip()
    if not text:
        return None
    fields = [f for f in _SPLIT_RE.split(text) if f]
    if len(fields) != 5:
        raise ContractError(
            f"{where}: expected 5 fields 'x1,y1,x2,y2,type', got {len(fields)} in {text!r}; fix or delete the line."
        )
    try:
        x0, y0, x1, y1, type_id = (int(float(f)) for f in fields)
    except ValueError:
        raise ContractError(f"{where}: non-numeric field in {text!r}; every field must be an integer.") from None
    if type_id not in DEFECT_NAMES:
        raise ContractError(
            f"{where}: defect type {type_id} is not a DeepPCB type "
            f"({', '.join(f'{k}={v}' for k, v in DEFECT_NAMES.items())}); fix the last field."
        )
    if x1 <= x0 or y1 <= y0:
        raise ContractError(f"{where}: box {text!r} has x2 <= x1 or y2 <= y1; write the top-left corner first.")
    return Box(x0, y0, x1, y1, type_id)


def read_boxes(path: Path, *, width: int | None = None, height: int | None = None) -> list[Box]:
    """Every box of one annotation file, clipped to the image when its size is given."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise ContractError(f"{path}: cannot read the annotation file ({exc.strerror}).") from exc
    boxes: list[Box] = []
    for number, line in enumerate(text.splitlines(), start=1):
        box = parse_box_line(line, where=f"{path} line {number}")
        if box is None:
            continue
        if width is not None and height is not None:
            clipped = Box(max(box.x0, 0), max(box.y0, 0), min(box.x1, width), min(box.y1, height), box.type_id)
            if clipped.x1 <= clipped.x0 or clipped.y1 <= clipped.y0:
                raise ContractError(
                    f"{path} line {number}: box lies outside the {width}x{height} image; fix its coordinates."
                )
            box = clipped
        boxes.append(box)
    return boxes


def boxes_array(boxes: Sequence[Box]) -> np.ndarray:
    """(M, 5) int64: x0, y0, x1, y1, type_id."""
    if not boxes:
        return np.zeros((0, 5), np.int64)
    return np.array([(b.x0, b.y0, b.x1, b.y1, b.type_id) for b in boxes], np.int64)


def label_windows(windows: np.ndarray, boxes: Sequence[Box] | np.ndarray, *, min_inside: float = 0.7,
                  margin: int = 2) -> tuple[list[str | None], list[str]]:
    """Label many windows at once; see `label_crop` for the rule. Returns (labels, reasons)."""
    win = np.asarray(windows, np.int64).reshape(-1, 4)
    arr = boxes if isinstance(boxes, np.ndarray) else boxes_array(boxes)
    n = len(win)
    if len(arr) == 0:
        return [PASS_LABEL] * n, [PASS_REASON] * n
    wx0, wy0, wx1, wy1 = (win[:, i : i + 1] for i in range(4))
    bx0, by0, bx1, by1, btype = (arr[None, :, i] for i in range(5))
    inter_w = np.clip(np.minimum(wx1, bx1) - np.maximum(wx0, bx0), 0, None)
    inter_h = np.clip(np.minimum(wy1, by1) - np.maximum(wy0, by0), 0, None)
    frac = (inter_w * inter_h) / ((bx1 - bx0) * (by1 - by0))
    touch = ((np.minimum(wx1 + margin, bx1) - np.maximum(wx0 - margin, bx0)) > 0) & (
        (np.minimum(wy1 + margin, by1) - np.maximum(wy0 - margin, by0)) > 0
    )
    inside = touch & (frac >= min_inside)
    partial = (touch & ~inside).any(axis=1)
    type_ids = sorted(DEFECT_NAMES)
    has_type = np.stack([(inside & (btype == t)).any(axis=1) for t in type_ids], axis=1)
    n_types = has_type.sum(axis=1)
    first = has_type.argmax(axis=1)
    labels: list[str | None] = []
    reasons: list[str] = []
    for i in range(n):
        if partial[i]:
            labels.append(None)
            reasons.append(PARTIAL_REASON)
        elif n_types[i] > 1:
            labels.append(None)
            reasons.append(MIXED_REASON)
        elif n_types[i] == 1:
            labels.append(DEFECT_NAMES[type_ids[int(first[i])]])
            reasons.append(DEFECT_REASON)
        else:
            labels.append(PASS_LABEL)
            reasons.append(PASS_REASON)
    return labels, reasons


def label_crop(window: tuple[int, int, int, int], boxes: Sequence[Box], *, min_inside: float = 0.7,
               margin: int = 2) -> CropLabel:
    """Label one window `(x0, y0, x1, y1)` against the image's boxes.

    - no box within `margin` px of the window -> PASS;
    - every touching box has >= `min_inside` of its area inside, all of one type -> that type;
    - a touching box mostly outside (partial) or two types inside -> None (drop the window).

    Example:
        label_crop((0, 0, 64, 64), [Box(10, 10, 30, 30, 1)]).label == "open"
    """
    labels, reasons = label_windows(np.array([window]), boxes, min_inside=min_inside, margin=margin)
    return CropLabel(labels[0], reasons[0])


def max_inside_fraction(box: Box, crop: int) -> float:
    """The largest share of `box` any crop x crop window can hold (boxes bigger than the crop cannot be labelled)."""
    return min(box.width, crop) * min(box.height, crop) / (box.width * box.height)


def grid_positions(length: int, crop: int, stride: int) -> list[int]:
    """Window origins along one axis: every `stride` px, plus one flush with the far edge so the axis is covered."""
    last = length - crop
    out = list(range(0, last + 1, stride))
    if out and out[-1] != last:
        out.append(last)
    return out


def grid_windows(height: int, width: int, crop: int, stride: int) -> np.ndarray:
    """(N, 4) windows of a regular grid, row-major."""
    ys = grid_positions(height, crop, stride)
    xs = grid_positions(width, crop, stride)
    return np.array([(x, y, x + crop, y + crop) for y in ys for x in xs], np.int64).reshape(-1, 4)


def defect_window(box: Box, boxes: Sequence[Box], *, crop: int, height: int, width: int,
                  rng: np.random.Generator, min_inside: float = 0.7, margin: int = 2,
                  step: int = 4) -> tuple[int, int] | None:
    """Origin `(x, y)` of a crop holding `box` with an unambiguous label of `box`'s type, or None.

    Tries a seeded jitter around the box centre first (so defects are not always centred), then the
    exact centre, then every other placement that keeps the box inside, nearest first; this avoids
    neighbouring boxes of other types where the image allows it.
    """
    if max_inside_fraction(box, crop) < min_inside:
        return None
    cx2, cy2 = box.x0 + box.x1, box.y0 + box.y1  # doubled centre, integer

    def span(lo: int, hi: int, limit: int) -> tuple[int, int]:
        # origins where the box interval [lo, hi) stays inside the crop (or the crop inside the box)
        a, b = (hi - crop, lo) if hi - lo <= crop else (lo, hi - crop)
        return max(0, a), min(limit - crop, b)

    x_lo, x_hi = span(box.x0, box.x1, width)
    y_lo, y_hi = span(box.y0, box.y1, height)
    cx = int(np.clip((cx2 - crop) // 2, 0, width - crop))
    cy = int(np.clip((cy2 - crop) // 2, 0, height - crop))
    candidates: list[tuple[int, int]] = []
    if x_lo <= x_hi and y_lo <= y_hi:
        jx = int(np.clip(cx + rng.integers(-(x_hi - x_lo) // 4, (x_hi - x_lo) // 4 + 1), x_lo, x_hi))
        jy = int(np.clip(cy + rng.integers(-(y_hi - y_lo) // 4, (y_hi - y_lo) // 4 + 1), y_lo, y_hi))
        candidates.append((jx, jy))
    candidates.append((cx, cy))
    if x_lo <= x_hi and y_lo <= y_hi:
        xs = sorted(set(range(x_lo, x_hi + 1, step)) | {x_hi}, key=lambda v: (abs(v - cx), v))
        ys = sorted(set(range(y_lo, y_hi + 1, step)) | {y_hi}, key=lambda v: (abs(v - cy), v))
        grid = sorted(((x, y) for x in xs for y in ys), key=lambda p: (abs(p[0] - cx) + abs(p[1] - cy), p))
        candidates.extend(grid)
    seen: set[tuple[int, int]] = set()
    unique = [c for c in candidates if not (c in seen or seen.add(c))]  # type: ignore[func-returns-value]
    windows = np.array([(x, y, x + crop, y + crop) for x, y in unique], np.int64)
    labels, _ = label_windows(windows, boxes, min_inside=min_inside, margin=margin)
    for (x, y), label in zip(unique, labels):
        if label == box.label:
            return x, y
    return None
