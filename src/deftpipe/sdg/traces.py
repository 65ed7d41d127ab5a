"""Generators for binary copper-trace images (DeepPCB-like, one light, black/white).

Each edits the copper mask of the image being painted (threshold at 128; copper is
the minority colour, dark traces on white in DeepPCB) with morphology and writes
only the pixels that flipped, in the image's own copper / background levels.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from deftpipe.sdg._imaging import compose, is_binary_like, pick
from deftpipe.sdg.registry import BaseGenerator, GenerateOutput, GeneratorUnfit, register_generator


def copper_mask(plane: np.ndarray) -> tuple[np.ndarray, str]:
    """(bool copper mask, polarity) — copper is the minority side of 128."""
    bright = plane >= 128
    if bright.mean() <= 0.5:
        return bright, "bright_copper"
    return ~bright, "dark_copper"


def _edge(fg: np.ndarray) -> np.ndarray:
    return fg & ~cv2.erode(fg.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)


def _choose(rng: np.random.Generator, mask: np.ndarray, what: str) -> tuple[int, int]:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise GeneratorUnfit(f"no place for {what} on this base image")
    k = int(rng.integers(0, len(xs)))
    return int(ys[k]), int(xs[k])


def _inner(shape: tuple[int, int], margin: int) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[margin:shape[0] - margin, margin:shape[1] - margin] = True
    return m


def _disc(shape: tuple[int, int], cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _line(shape: tuple[int, int], a: tuple[float, float], b: tuple[float, float], thickness: int) -> np.ndarray:
    canvas = np.zeros(shape, np.uint8)
    cv2.line(canvas, (int(round(a[0])), int(round(a[1]))), (int(round(b[0])), int(round(b[1]))), 1,
             thickness=max(1, thickness), lineType=cv2.LINE_8)
    return canvas.astype(bool)


def _direction(fg: np.ndarray, y: int, x: int, radius: int) -> tuple[float, float]:
    """Unit (dx, dy) along the trace at (y, x): principal axis of nearby copper pixels."""
    h, w = fg.shape
    y0, y1, x0, x1 = max(0, y - radius), min(h, y + radius + 1), max(0, x - radius), min(w, x + radius + 1)
    ys, xs = np.nonzero(fg[y0:y1, x0:x1])
    if len(xs) < 3:
        return 1.0, 0.0
    cov = np.cov(np.stack([xs - xs.mean(), ys - ys.mean()]))
    vals, vecs = np.linalg.eigh(cov)
    vx, vy = vecs[:, int(np.argmax(vals))]
    return float(vx), float(vy)


class _TraceGenerator(BaseGenerator):
    """Shared flow: copper mask -> edited mask -> flipped pixels painted in the image's own levels."""

    def suits(self, golden: np.ndarray) -> bool:
        return is_binary_like(golden)

    def generate(self, test: np.ndarray, golden: np.ndarray, rng: np.random.Generator,
                 params: Mapping[str, Any]) -> GenerateOutput:
        plane = test[0]
        fg, polarity = copper_mask(plane)
        used = {k: v for k, v in params.items() if k != "label"}
        new_fg = self._edit(fg, rng, used)
        mask = new_fg != fg
        if not mask.any():
            raise GeneratorUnfit(f"{self.name}: the edit changed nothing on this base image")
        copper_v = float(np.median(plane[fg])) if fg.any() else (255.0 if polarity == "bright_copper" else 0.0)
        board_v = float(np.median(plane[~fg])) if (~fg).any() else 255.0 - copper_v
        painted = test.copy()
        painted[0] = np.where(new_fg, np.uint8(round(copper_v)), np.uint8(round(board_v)))
        used.update(polarity=polarity, n_flipped_px=int(mask.sum()))
        return compose(test, painted, mask), mask, used

    def _edit(self, fg: np.ndarray, rng: np.random.Generator, params: dict[str, Any]) -> np.ndarray:
        raise NotImplementedError


@register_generator
class TraceOpen(_TraceGenerator):
    """A gap cut across a thin trace (a broken conductor)."""

    name = "open"
    supported_labels = frozenset({"open"})

    def _edit(self, fg: np.ndarray, rng: np.random.Generator, params: dict[str, Any]) -> np.ndarray:
        dt = cv2.distanceTransform(fg.astype(np.uint8), cv2.DIST_L2, 3)
        max_half = float(params.get("max_half_width_px", 8.0))
        dil = cv2.dilate(dt, np.ones((3, 3), np.uint8))
        ridge = (dt >= 1.0) & (dt <= max_half) & (dt >= dil - 1e-3) & _inner(fg.shape, 3)
        y, x = (int(v) for v in pick(params, "centre_yx", lambda: np.array(_choose(rng, ridge, "an open"))))
        half = float(dt[y, x])
        vx, vy = _direction(fg, y, x, max(3, int(3 * half)))
        gap = float(pick(params, "gap_px", lambda: rng.uniform(2.0, 5.0)))
        reach = half + 3.0
        # a rotated rectangle: `gap` along the trace, across its full width
        corners = np.array([[x + vx * gap / 2 + -vy * reach, y + vy * gap / 2 + vx * reach],
                            [x + vx * gap / 2 + vy * reach, y + vy * gap / 2 - vx * reach],
                            [x - vx * gap / 2 + vy * reach, y - vy * gap / 2 - vx * reach],
                            [x - vx * gap / 2 - vy * reach, y - vy * gap / 2 + vx * reach]])
        cut = np.zeros(fg.shape, np.uint8)
        cv2.fillPoly(cut, [np.round(corners).astype(np.int32)], 1)
        # Only the trace under the cursor is cut, not a neighbour that happens to be near.
        _, labels = cv2.connectedComponents(fg.astype(np.uint8), connectivity=8)
        cut_b = cut.astype(bool) & (labels == labels[y, x])
        params.update(half_width_px=round(half, 2), direction=[round(vx, 3), round(vy, 3)])
        return fg & ~cut_b


@register_generator
class TraceShort(_TraceGenerator):
    """A thin copper link between two separate conductors (or two nearby parts of one)."""

    name = "short"
    supported_labels = frozenset({"short"})

    def _edit(self, fg: np.ndarray, rng: np.random.Generator, params: dict[str, Any]) -> np.ndarray:
        h, w = fg.shape
        n, labels = cv2.connectedComponents(fg.astype(np.uint8), connectivity=8)
        edge = _edge(fg) & _inner(fg.shape, 1)
        ys, xs = np.nonzero(edge)
        if len(xs) < 2:
            raise GeneratorUnfit("short: no copper edges on this base image")
        sel = rng.choice(len(xs), size=min(len(xs), 400), replace=False)
        ys, xs, lab = ys[sel], xs[sel], labels[ys[sel], xs[sel]]
        d = np.hypot(ys[:, None] - ys[None, :], xs[:, None] - xs[None, :])
        max_len = float(params.get("max_length_px", 0.35 * min(h, w)))
        different = lab[:, None] != lab[None, :]
        ok = different & (d >= 2) & (d <= max_len)
        kind = "between_nets"
        if not ok.any():
            # one net only: bridge a narrow background gap between two parts of it
            kind = "within_net"
            ok = (d >= 3) & (d <= min(max_len, 12))
            mids_y = np.rint((ys[:, None] + ys[None, :]) / 2).astype(int)
            mids_x = np.rint((xs[:, None] + xs[None, :]) / 2).astype(int)
            ok &= ~fg[mids_y, mids_x]
        if not ok.any():
            raise GeneratorUnfit("short: no two conductors close enough on this base image")
        ii, jj = np.nonzero(np.triu(ok))
        order = np.argsort(d[ii, jj], kind="stable")[: max(1, min(5, len(ii)))]
        k = order[int(rng.integers(0, len(order)))]
        a, b = (float(xs[ii[k]]), float(ys[ii[k]])), (float(xs[jj[k]]), float(ys[jj[k]]))
        thick = int(pick(params, "thickness_px", lambda: rng.integers(1, 4)))
        params.update(kind=kind, start_xy=[a[0], a[1]], end_xy=[b[0], b[1]], length_px=round(math.dist(a, b), 2))
        return fg | _line(fg.shape, a, b, thick)


@register_generator
class Mousebite(_TraceGenerator):
    """A few small bites taken out of a trace edge."""

    name = "mousebite"
    supported_labels = frozenset({"mousebite"})

    def _edit(self, fg: np.ndarray, rng: np.random.Generator, params: dict[str, Any]) -> np.ndarray:
        dt = cv2.distanceTransform(fg.astype(np.uint8), cv2.DIST_L2, 3)
        # bite where the trace is thick enough to survive it
        edge = _edge(fg) & _inner(fg.shape, 3) & (cv2.dilate(dt, np.ones((5, 5), np.uint8)) >= 2.5)
        y, x = (int(v) for v in pick(params, "centre_yx", lambda: np.array(_choose(rng, edge, "a mousebite"))))
        n_bites = int(pick(params, "n_bites", lambda: rng.integers(1, 4)))
        vx, vy = _direction(fg, y, x, 4)
        out = fg.copy()
        radii = []
        for i in range(n_bites):
            r = float(rng.uniform(1.0, 2.5))
            step = (i - (n_bites - 1) / 2) * 2.2 * r
            radii.append(round(r, 2))
            out &= ~_disc(fg.shape, y + vy * step, x + vx * step, r)
        params["radii_px"] = radii
        return out


@register_generator
class Spur(_TraceGenerator):
    """A thin copper protrusion growing out of a trace edge."""

    name = "spur"
    supported_labels = frozenset({"spur"})

    def _edit(self, fg: np.ndarray, rng: np.random.Generator, params: dict[str, Any]) -> np.ndarray:
        h, w = fg.shape
        edge = _edge(fg) & _inner(fg.shape, 4)
        y, x = (int(v) for v in pick(params, "root_yx", lambda: np.array(_choose(rng, edge, "a spur"))))
        soft = cv2.GaussianBlur(fg.astype(np.float32), (0, 0), 2.0)
        gy, gx = np.gradient(soft)
        nx, ny = -float(gx[y, x]), -float(gy[y, x])
        norm = math.hypot(nx, ny)
        nx, ny = (nx / norm, ny / norm) if norm > 1e-6 else (1.0, 0.0)
        length = float(pick(params, "length_px", lambda: rng.uniform(3.0, 10.0)))
        tilt = math.radians(float(pick(params, "tilt_deg", lambda: rng.uniform(-35, 35))))
        dx = nx * math.cos(tilt) - ny * math.sin(tilt)
        dy = nx * math.sin(tilt) + ny * math.cos(tilt)
        tip = (float(np.clip(x + dx * length, 0, w - 1)), float(np.clip(y + dy * length, 0, h - 1)))
        thick = int(pick(params, "thickness_px", lambda: rng.integers(1, 3)))
        params["tip_xy"] = [round(tip[0], 2), round(tip[1], 2)]
        return fg | _line(fg.shape, (float(x), float(y)), tip, thick)


@register_generator
class SpuriousCopper(_TraceGenerator):
    """An isolated copper blob on bare board."""

    name = "copper"
    supported_labels = frozenset({"copper"})

    def _edit(self, fg: np.ndarray, rng: np.random.Generator, params: dict[str, Any]) -> np.ndarray:
        r = float(pick(params, "radius_px", lambda: rng.uniform(1.5, 4.5)))
        dt_bg = cv2.distanceTransform((~fg).astype(np.uint8), cv2.DIST_L2, 3)
        room = (dt_bg >= r + 2) & _inner(fg.shape, int(math.ceil(r)) + 2)
        y, x = (int(v) for v in pick(params, "centre_yx", lambda: np.array(_choose(rng, room, "spurious copper"))))
        yy, xx = np.mgrid[0:fg.shape[0], 0:fg.shape[1]]
        ang = np.arctan2(yy - y, xx - x)
        wobble = 1 + 0.25 * np.sin(3 * ang + rng.uniform(0, 2 * np.pi))
        blob = (yy - y) ** 2 + (xx - x) ** 2 <= (r * wobble) ** 2
        return fg | blob


@register_generator
class PinHole(_TraceGenerator):
    """A small hole punched inside a copper area."""

    name = "pin-hole"
    supported_labels = frozenset({"pin-hole"})

    def _edit(self, fg: np.ndarray, rng: np.random.Generator, params: dict[str, Any]) -> np.ndarray:
        dt = cv2.distanceTransform(fg.astype(np.uint8), cv2.DIST_L2, 3)
        r = float(pick(params, "radius_px", lambda: rng.uniform(1.0, 2.5)))
        room = (dt >= r + 1.5) & _inner(fg.shape, 3)
        if not room.any():
            r = max(0.8, float(dt.max()) - 1.5)
            room = (dt >= r + 1.0) & _inner(fg.shape, 3)
            params["radius_px"] = round(r, 2)
        y, x = (int(v) for v in pick(params, "centre_yx", lambda: np.array(_choose(rng, room, "a pin-hole"))))
        return fg & ~_disc(fg.shape, y, x, r)
