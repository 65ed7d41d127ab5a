"""Generators for component crops (a chip/IC on solder mask with pads and solder fillets, grey lights).

Each paints one defect with one geometry shared by every light and per-light
appearance taken from that light's own board / body / solder levels. The layout comes
from the golden (`_layout.estimate_layout`), registered onto the image being painted.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from deftpipe.sdg._imaging import (
    bbox,
    blob_polygon,
    compose,
    dilate,
    erode,
    fill_poly_soft,
    is_binary_like,
    pick,
    poisson_blend,
    polyline_soft,
    texture,
    to_u8,
)
from deftpipe.sdg._layout import PartLayout, estimate_layout
from deftpipe.sdg.registry import BaseGenerator, GenerateOutput, GeneratorUnfit, register_generator


def _bare_footprint(test: np.ndarray, layout: PartLayout, region: np.ndarray, rng: np.random.Generator,
                    params: dict[str, Any]) -> np.ndarray:
    """`test` (float) with `region` showing what lies under the part: bare board plus the pads' copper lands.

    cv2.inpaint works from board-only context (pads and body masked to the board level first),
    so solder is not smeared into the footprint; the lands continue under the terminals.
    """
    radius = float(pick(params, "inpaint_radius", lambda: rng.uniform(2.0, 5.0)))
    flatten = float(pick(params, "land_brightness", lambda: rng.uniform(0.7, 0.9)))
    land_frac = float(pick(params, "land_under_part", lambda: rng.uniform(0.15, 0.3)))
    x0, y0, x1, y1 = layout.body_box
    reach = max(1, int(round(land_frac * ((x1 - x0) if layout.axis == 0 else (y1 - y0)))))
    kernel = np.ones((1, 2 * reach + 1) if layout.axis == 0 else (2 * reach + 1, 1), np.uint8)
    lands = cv2.dilate(layout.pad_mask.astype(np.uint8), kernel).astype(bool) & region
    out = np.empty(test.shape, np.float32)
    keep = ~(region | layout.board)
    for c in range(test.shape[0]):
        board_only = test[c].copy()
        board_only[keep] = np.uint8(round(float(layout.board_level[c])))
        filled = cv2.inpaint(board_only, region.astype(np.uint8), radius, cv2.INPAINT_TELEA).astype(np.float32)
        vals = test[c][layout.board].astype(np.float32) if layout.board.any() else np.zeros(1, np.float32)
        grain = max(0.5, 1.4826 * float(np.median(np.abs(vals - np.median(vals)))))
        plane = np.where(region, _regrain(filled, region, rng, grain), test[c].astype(np.float32))
        land_level = flatten * layout.solder_level[c] + (1 - flatten) * layout.board_level[c]
        plane[lands] = land_level + rng.normal(0.0, grain, int(lands.sum()))
        out[c] = plane
    params["land_reach_px"] = reach
    return out


def _regrain(plane: np.ndarray, region: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Give an inpainted (too smooth) region back some board grain."""
    out = plane.astype(np.float32)
    out[region] += rng.normal(0.0, sigma, int(region.sum())).astype(np.float32)
    return out


def _scale(layout: PartLayout) -> float:
    """Length unit: 1.0 for a 48 px crop."""
    return min(layout.shape) / 48.0


class _ComponentGenerator(BaseGenerator):
    """Shared flow: estimate the layout, paint, compose so nothing outside the mask moves."""

    def suits(self, golden: np.ndarray) -> bool:
        return not is_binary_like(golden)

    def generate(self, test: np.ndarray, golden: np.ndarray, rng: np.random.Generator,
                 params: Mapping[str, Any]) -> GenerateOutput:
        layout = estimate_layout(golden, align_to=test)
        used = {k: v for k, v in params.items() if k != "label"}
        painted, mask = self._paint(test, layout, rng, used)
        mask = mask.astype(bool)
        if not mask.any():
            raise GeneratorUnfit(f"{self.name}: nothing to paint on this base")
        used.update(layout_body_found=layout.body_found, layout_pads_found=layout.pads_found,
                    layout_shift=list(layout.shift))
        return compose(test, painted, mask), mask, used

    def _paint(self, test: np.ndarray, layout: PartLayout, rng: np.random.Generator,
               params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _pads_on_side(self, layout: PartLayout, side: int) -> list[int]:
        """Indices of pads at the low (side 0) or high (side 1) end of the body along the layout axis."""
        cx, cy = layout.centre(layout.body)
        centre = cx if layout.axis == 0 else cy
        out = []
        for i, pad in enumerate(layout.pads):
            px, py = layout.centre(pad)
            pos = px if layout.axis == 0 else py
            if (pos < centre) == (side == 0):
                out.append(i)
        return out


@register_generator
class MissingPart(_ComponentGenerator):
    """The part is gone: its footprint is inpainted from the surrounding pads and board; fillets flatten."""

    name = "missing"
    supported_labels = frozenset({"missing"})

    def _paint(self, test: np.ndarray, layout: PartLayout, rng: np.random.Generator,
               params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        s = _scale(layout)
        grow = int(pick(params, "grow_px", lambda: rng.integers(1, 3)))
        flatten = float(pick(params, "fillet_flatten", lambda: rng.uniform(0.7, 0.9)))
        region = dilate(layout.body, grow)
        out = _bare_footprint(test, layout, region, rng, params)
        # Without a terminal in it, the solder no longer climbs: fillets next to the footprint flatten.
        fillets = np.zeros(layout.shape, bool)
        for i in range(len(layout.pads)):
            fillets |= layout.fillet(i, reach=max(2, int(3 * s)))
        fillets &= ~region
        for c in range(out.shape[0]):
            land_level = flatten * layout.solder_level[c] + (1 - flatten) * layout.board_level[c]
            out[c][fillets] = 0.5 * out[c][fillets] + 0.5 * land_level
        return out, region | fillets


@register_generator
class ShiftedPart(_ComponentGenerator):
    """The body is translated (and slightly rotated) off its pads; the uncovered footprint is inpainted."""

    name = "shift"
    supported_labels = frozenset({"shift"})

    def _paint(self, test: np.ndarray, layout: PartLayout, rng: np.random.Generator,
               params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        s = _scale(layout)
        x0, y0, x1, y1 = layout.body_box
        length = (x1 - x0) if layout.axis == 0 else (y1 - y0)
        along = float(pick(params, "shift_along_px", lambda: rng.choice([-1, 1]) * rng.uniform(
            max(1.5, 2 * s), max(2.5 * s, 0.3 * length))))
        across = float(pick(params, "shift_across_px", lambda: rng.uniform(-3, 3) * s))
        angle = float(pick(params, "rotation_deg", lambda: rng.uniform(-8, 8)))
        dx, dy = (along, across) if layout.axis == 0 else (across, along)
        cx, cy = layout.centre(layout.body)
        m = cv2.getRotationMatrix2D((cx, cy), angle, 1.0)
        m[0, 2] += dx
        m[1, 2] += dy
        h, w = layout.shape
        region = dilate(layout.body, 1)
        bg = _bare_footprint(test, layout, region, rng, params)
        alpha = cv2.warpAffine(layout.body.astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR)
        out = np.empty_like(bg)
        for c in range(test.shape[0]):
            moved = cv2.warpAffine(test[c], m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            out[c] = bg[c] * (1 - alpha) + moved.astype(np.float32) * alpha
        return out, region | (alpha > 0)


@register_generator
class Tombstone(_ComponentGenerator):
    """One end of the part lifts: the body foreshortens towards the anchored end and that end's fillet is gone."""

    name = "tombstone"
    supported_labels = frozenset({"tombstone"})

    def _paint(self, test: np.ndarray, layout: PartLayout, rng: np.random.Generator,
               params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        n_light = test.shape[0]
        lifted = int(pick(params, "lifted_end", lambda: rng.integers(0, 2)))
        squash = float(pick(params, "squash", lambda: rng.uniform(0.4, 0.7)))
        widen = float(pick(params, "lifted_width", lambda: rng.uniform(0.9, 1.15)))
        gains = pick(params, "tilt_gain", lambda: np.array(
            [rng.uniform(0.6, 0.85)] + [rng.uniform(1.1, 1.35) for _ in range(n_light - 1)]))
        gains = np.asarray(gains, dtype=np.float32)
        x0, y0, x1, y1 = layout.body_box
        h, w = layout.shape
        src = np.float32([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
        dst = src.copy()
        if layout.axis == 0:
            length = x1 - x0
            half = (y1 - y0) * (widen - 1) / 2
            if lifted == 0:  # left end lifts: its edge moves right towards the anchor
                dst[[0, 3], 0] = x1 - length * squash
                dst[0, 1], dst[3, 1] = y0 - half, y1 + half
            else:
                dst[[1, 2], 0] = x0 + length * squash
                dst[1, 1], dst[2, 1] = y0 - half, y1 + half
        else:
            length = y1 - y0
            half = (x1 - x0) * (widen - 1) / 2
            if lifted == 0:
                dst[[0, 1], 1] = y1 - length * squash
                dst[0, 0], dst[1, 0] = x0 - half, x1 + half
            else:
                dst[[2, 3], 1] = y0 + length * squash
                dst[3, 0], dst[2, 0] = x0 - half, x1 + half
        persp = cv2.getPerspectiveTransform(src, dst)
        region = dilate(layout.body, 1)
        bg = _bare_footprint(test, layout, region, rng, params)
        alpha = cv2.warpPerspective(layout.body.astype(np.float32), persp, (w, h), flags=cv2.INTER_LINEAR)
        # Brightness ramps from the anchored end (unchanged) to the lifted end (tilted face).
        coord = np.arange(w if layout.axis == 0 else h, dtype=np.float32)
        lo, hi = (x0, x1) if layout.axis == 0 else (y0, y1)
        ramp = np.clip((coord - lo) / max(hi - lo, 1), 0, 1)
        ramp = 1 - ramp if lifted == 0 else ramp
        ramp2d = np.broadcast_to(ramp[None, :] if layout.axis == 0 else ramp[:, None], (h, w))
        # The lifted terminal leaves its pad: the fillet there is gone, bare flat pad remains.
        fillet = np.zeros((h, w), bool)
        for i in self._pads_on_side(layout, lifted):
            fillet |= layout.fillet(i, reach=max(2, int(3 * _scale(layout))))
        fillet &= ~region
        out = np.empty_like(bg)
        for c in range(n_light):
            warped = cv2.warpPerspective(test[c], persp, (w, h), flags=cv2.INTER_LINEAR,
                                         borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
            warped *= 1 + (gains[c] - 1) * ramp2d
            plane = bg[c].copy()
            flat = 0.55 * layout.solder_level[c] + 0.45 * layout.board_level[c]
            plane[fillet] = flat
            out[c] = plane * (1 - alpha) + warped * alpha
        params["tilt_gain"] = [round(float(g), 4) for g in gains]
        return out, region | (alpha > 0) | fillet


@register_generator
class SolderBridge(_ComponentGenerator):
    """A bright solder bridge joins two neighbouring pads/leads (a wavy band with a specular centre line)."""

    name = "bridge"
    supported_labels = frozenset({"bridge"})

    def _paint(self, test: np.ndarray, layout: PartLayout, rng: np.random.Generator,
               params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        s = _scale(layout)
        h, w = layout.shape
        pads = layout.pads
        centres = [layout.centre(p) for p in pads]
        pairs = sorted(((math.dist(centres[i], centres[j]), i, j) for i in range(len(pads))
                        for j in range(i + 1, len(pads))))
        if not pairs:
            raise GeneratorUnfit("bridge: fewer than two pads found")
        choice = int(pick(params, "pair_rank", lambda: rng.integers(0, min(2, len(pairs)))))
        _, i, j = pairs[min(choice, len(pairs) - 1)]
        a = self._nearest_point(pads[i], centres[j])
        b = self._nearest_point(pads[j], centres[i])
        # Bridges run over the solder mask, not over the part: move the band off the body when it would cross it.
        body = dilate(layout.body, 1)
        offset = 0.0
        if self._crosses(body, a, b):
            vx, vy = b[0] - a[0], b[1] - a[1]
            norm = math.hypot(vx, vy) or 1.0
            nx, ny = -vy / norm, vx / norm
            side = 1 if rng.random() < 0.5 else -1
            for step in range(1, max(h, w)):
                off = side * step
                pa = (a[0] + nx * off, a[1] + ny * off)
                pb = (b[0] + nx * off, b[1] + ny * off)
                if not self._crosses(body, pa, pb) or not (0 <= pa[0] < w and 0 <= pa[1] < h):
                    break
            offset = float(np.clip(off, -max(h, w) / 2, max(h, w) / 2))
            a, b = (a[0] + nx * offset, a[1] + ny * offset), (b[0] + nx * offset, b[1] + ny * offset)
            a = (float(np.clip(a[0], 1, w - 2)), float(np.clip(a[1], 1, h - 2)))
            b = (float(np.clip(b[0], 1, w - 2)), float(np.clip(b[1], 1, h - 2)))
        thick = float(pick(params, "thickness_px", lambda: rng.uniform(1.5, 3.5) * s))
        wave = float(pick(params, "waviness_px", lambda: rng.uniform(-1.5, 1.5) * s))
        mid = ((a[0] + b[0]) / 2, (a[1] + b[1]) / 2)
        vx, vy = b[0] - a[0], b[1] - a[1]
        norm = math.hypot(vx, vy) or 1.0
        mid = (mid[0] - vy / norm * wave, mid[1] + vx / norm * wave)
        pts = np.array([a, mid, b], dtype=np.float32)
        alpha = polyline_soft(h, w, pts, thick)
        spec = polyline_soft(h, w, pts, max(0.6, thick * 0.35)) * 0.8
        bright = pick(params, "brightness", lambda: rng.uniform(0.95, 1.08))
        out = test.astype(np.float32)
        for c in range(test.shape[0]):
            tone = min(250.0, layout.solder_level[c] * float(bright))
            top = min(255.0, tone + 0.6 * (255 - tone) + 15)
            body_tone = tone * (1 - spec) + top * spec
            out[c] = out[c] * (1 - alpha) + body_tone * alpha
        params.update(pad_pair=[int(i), int(j)], offset_px=round(offset, 2))
        return out, alpha > 0

    @staticmethod
    def _nearest_point(mask: np.ndarray, target: tuple[float, float]) -> tuple[float, float]:
        ys, xs = np.nonzero(mask)
        k = int(np.argmin((xs - target[0]) ** 2 + (ys - target[1]) ** 2))
        return float(xs[k]), float(ys[k])

    @staticmethod
    def _crosses(body: np.ndarray, a: tuple[float, float], b: tuple[float, float]) -> bool:
        h, w = body.shape
        t = np.linspace(0.15, 0.85, 16)
        xs = np.clip(np.rint(a[0] + (b[0] - a[0]) * t).astype(int), 0, w - 1)
        ys = np.clip(np.rint(a[1] + (b[1] - a[1]) * t).astype(int), 0, h - 1)
        return bool(body[ys, xs].mean() > 0.2)


@register_generator
class ExcessSolder(_ComponentGenerator):
    """A swollen solder blob over one fillet: brighter, convex, with a specular highlight (top light) or rim (ring light)."""

    name = "excess_solder"
    supported_labels = frozenset({"excess_solder"})

    def _paint(self, test: np.ndarray, layout: PartLayout, rng: np.random.Generator,
               params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        h, w = layout.shape
        k = int(pick(params, "pad_index", lambda: rng.integers(0, len(layout.pads))))
        k = min(k, len(layout.pads) - 1)
        fillet = layout.fillet(k, reach=max(2, int(3 * _scale(layout))))
        x0, y0, x1, y1 = bbox(layout.pads[k])
        cx, cy = layout.centre(fillet)
        grow = float(pick(params, "growth", lambda: rng.uniform(1.2, 1.7)))
        rx = max(2.0, (x1 - x0) / 2 * grow)
        ry = max(2.0, (y1 - y0) / 2 * grow)
        poly = blob_polygon(rng, cx, cy, rx, ry, n=14, roughness=0.12)
        alpha = fill_poly_soft(h, w, poly)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r2 = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
        hx = float(pick(params, "highlight_dx", lambda: rng.uniform(-0.3, 0.3))) * rx
        hy = float(pick(params, "highlight_dy", lambda: rng.uniform(-0.3, 0.3))) * ry
        spot = np.exp(-(((xx - cx - hx) / (0.35 * rx)) ** 2 + ((yy - cy - hy) / (0.35 * ry)) ** 2))
        rim = np.exp(-((np.sqrt(r2) - 0.8) / 0.18) ** 2)
        bright = float(pick(params, "brightness", lambda: rng.uniform(1.0, 1.12)))
        out = test.astype(np.float32)
        for c in range(test.shape[0]):
            tone = min(245.0, layout.solder_level[c] * bright)
            light = spot if c == 0 else 0.6 * rim + 0.2 * spot
            surface = tone + (255 - tone) * 0.9 * light - 0.15 * tone * (1 - light) * (r2 > 0.5)
            out[c] = out[c] * (1 - alpha) + surface * alpha
        params["pad_index"] = k
        return out, alpha > 0


@register_generator
class InsufficientSolder(_ComponentGenerator):
    """One fillet shrinks and dulls: the wetted area recedes from the pad edge and the fillet darkens."""

    name = "insufficient_solder"
    supported_labels = frozenset({"insufficient_solder"})

    def _paint(self, test: np.ndarray, layout: PartLayout, rng: np.random.Generator,
               params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        k = int(pick(params, "pad_index", lambda: rng.integers(0, len(layout.pads))))
        k = min(k, len(layout.pads) - 1)
        pad = layout.pads[k]
        shrink = int(pick(params, "shrink_px", lambda: rng.integers(1, 3)))
        core = erode(pad, shrink)
        ring = pad & ~core
        fillet = layout.fillet(k, reach=max(2, int(3 * _scale(layout))))
        darken = pick(params, "darken", lambda: np.array(
            [rng.uniform(0.4, 0.6)] + [rng.uniform(0.55, 0.75) for _ in range(test.shape[0] - 1)]))
        darken = np.asarray(darken, dtype=np.float32)
        soft = cv2.GaussianBlur(fillet.astype(np.float32), (0, 0), 0.8) * pad
        out = test.astype(np.float32)
        for c in range(test.shape[0]):
            plane = out[c]
            # receded edge: bare copper land, between pad and board in brightness
            land = 0.6 * layout.solder_level[c] + 0.4 * layout.board_level[c]
            plane[ring] = plane[ring] * 0.3 + land * 0.7
            # the fillet's bright meniscus is missing: flatten it towards the land level, then dull it
            plane = plane * (1 - 0.7 * soft) + land * 0.7 * soft
            factor = 1 - (1 - darken[c]) * soft
            out[c] = plane * factor
        params["darken"] = [round(float(d), 4) for d in darken]
        params["pad_index"] = k
        return out, pad


@register_generator
class ForeignMaterial(_ComponentGenerator):
    """A small textured debris blob or fibre, Poisson-blended (cv2.seamlessClone) anywhere on the crop."""

    name = "foreign_material"
    supported_labels = frozenset({"foreign_material"})

    def _paint(self, test: np.ndarray, layout: PartLayout, rng: np.random.Generator,
               params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        s = _scale(layout)
        h, w = layout.shape
        shape = str(pick(params, "shape", lambda: "fibre" if rng.random() < 0.4 else "blob"))
        margin = max(4, int(5 * s))
        cx = float(pick(params, "x", lambda: rng.uniform(margin, w - 1 - margin)))
        cy = float(pick(params, "y", lambda: rng.uniform(margin, h - 1 - margin)))
        if shape == "fibre":
            length = float(pick(params, "length_px", lambda: rng.uniform(8, 18) * s))
            ang = float(pick(params, "angle_deg", lambda: rng.uniform(0, 180)))
            bend = float(pick(params, "bend_px", lambda: rng.uniform(-3, 3) * s))
            ux, uy = math.cos(math.radians(ang)), math.sin(math.radians(ang))
            a = (cx - ux * length / 2, cy - uy * length / 2)
            b = (cx + ux * length / 2, cy + uy * length / 2)
            mid = (cx - uy * bend, cy + ux * bend)
            pts = np.clip(np.array([a, mid, b], np.float32), margin / 2, [w - 1 - margin / 2, h - 1 - margin / 2])
            alpha = polyline_soft(h, w, pts, float(pick(params, "thickness_px", lambda: rng.uniform(0.9, 1.6) * s)))
        else:
            rx = float(pick(params, "rx_px", lambda: rng.uniform(1.5, 4.0) * s))
            ry = float(pick(params, "ry_px", lambda: rng.uniform(1.5, 4.0) * s))
            poly = blob_polygon(rng, cx, cy, rx, ry, n=10, roughness=0.35, angle=rng.uniform(0, math.pi))
            alpha = fill_poly_soft(h, w, poly)
        tone = pick(params, "tone", lambda: "dark" if rng.random() < 0.65 else "bright")
        tex = texture(rng, h, w, scale=0.8)
        mask = dilate(alpha > 0.02, 2)
        out = test.astype(np.float32)
        for c in range(test.shape[0]):
            local = float(np.median(test[c][mask])) if mask.any() else float(layout.board_level[c])
            if tone == "dark":
                # dust absorbs the top light; under the low-angle ring light its edges scatter and glow
                base = local * (0.35 if c == 0 else 0.7)
            else:
                base = min(235.0, local * 1.3 + 40)
            debris = np.clip(base + 12 * tex, 0, 255)
            src = test[c].astype(np.float32) * (1 - alpha) + debris * alpha
            out[c] = poisson_blend(test[c], to_u8(src), mask).astype(np.float32)
        params["x"], params["y"] = round(cx, 2), round(cy, 2)
        return out, mask


@register_generator
class Scratch(_ComponentGenerator):
    """A thin anti-aliased scratch across board and body, dark or bright under the top light, bright under ring light."""

    name = "scratch"
    supported_labels = frozenset({"scratch"})

    def _paint(self, test: np.ndarray, layout: PartLayout, rng: np.random.Generator,
               params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        s = _scale(layout)
        h, w = layout.shape
        bx, by = layout.centre(layout.body)
        cx = float(pick(params, "x", lambda: np.clip(bx + rng.uniform(-0.25, 0.25) * w, 3, w - 4)))
        cy = float(pick(params, "y", lambda: np.clip(by + rng.uniform(-0.25, 0.25) * h, 3, h - 4)))
        length = float(pick(params, "length_px", lambda: rng.uniform(0.3, 0.75) * min(h, w)))
        ang = float(pick(params, "angle_deg", lambda: rng.uniform(0, 180)))
        curve = float(pick(params, "curvature_px", lambda: rng.uniform(-2, 2) * s))
        thick = float(pick(params, "thickness_px", lambda: rng.uniform(0.6, 1.3) * s))
        ux, uy = math.cos(math.radians(ang)), math.sin(math.radians(ang))
        pts = np.array([(cx - ux * length / 2, cy - uy * length / 2), (cx - uy * curve, cy + ux * curve),
                        (cx + ux * length / 2, cy + uy * length / 2)], np.float32)
        pts = np.clip(pts, 1, [w - 2, h - 2])
        alpha = polyline_soft(h, w, pts, thick)
        sign = float(pick(params, "top_light_sign", lambda: -1.0 if rng.random() < 0.5 else 1.0))
        deltas = pick(params, "contrast", lambda: np.array(
            [rng.uniform(30, 70)] + [rng.uniform(40, 90) for _ in range(test.shape[0] - 1)]))
        deltas = np.asarray(deltas, dtype=np.float32)
        grain = 0.75 + 0.25 * np.clip(texture(rng, h, w, scale=1.0), -1, 1)
        out = test.astype(np.float32)
        for c in range(test.shape[0]):
            d = deltas[c] * (sign if c == 0 else 1.0)
            out[c] = out[c] + d * alpha * grain
        params["contrast"] = [round(float(d), 3) for d in deltas]
        return out, alpha > 0
