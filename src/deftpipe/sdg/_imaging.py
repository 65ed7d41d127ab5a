"""Pixel helpers shared by the generators: masks, composition, Poisson blending, PSNR, domain tests.

Images are uint8 stacks (C, H, W) — one plane per light; masks are bool (H, W).
`compose` is what keeps every generator's promise that pixels outside its mask are untouched.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

# A plane counts as binary (DeepPCB-like) when this share of pixels sits near black or white;
# JPEG ringing around trace edges keeps real binary scans a little below 100 %.
BINARY_SHARE = 0.95
_BINARY_LO, _BINARY_HI = 48, 207


def to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def compose(base: np.ndarray, painted: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`painted` inside `mask`, `base` (byte-exact) everywhere else; both (C, H, W)."""
    return np.where(mask[None, :, :], to_u8(painted) if painted.dtype != np.uint8 else painted, base)


def dilate(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    if radius <= 0:
        return mask.astype(bool)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.astype(np.uint8), k).astype(bool)


def erode(mask: np.ndarray, radius: int = 1) -> np.ndarray:
    if radius <= 0:
        return mask.astype(bool)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.erode(mask.astype(np.uint8), k).astype(bool)


def translate(plane: np.ndarray, dy: float, dx: float, *, border: int = cv2.BORDER_REPLICATE,
              interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Translate one (H, W) plane by (dy, dx) pixels (sub-pixel allowed)."""
    h, w = plane.shape
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(plane, m, (w, h), flags=interpolation, borderMode=border)


def translate_mask(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Integer translation of a bool mask, zero-filled (no wrap-around)."""
    out = np.zeros_like(mask, dtype=bool)
    h, w = mask.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = mask[ys, xs]
    return out


def bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) with exclusive ends; (0, 0, 0, 0) for an empty mask."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return (0, 0, 0, 0)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def is_binary_like(stack: np.ndarray) -> bool:
    """True for a single-light black/white trace image such as DeepPCB's."""
    if stack.shape[0] != 1:
        return False
    plane = stack[0]
    share = float(((plane <= _BINARY_LO) | (plane >= _BINARY_HI)).mean())
    return share >= BINARY_SHARE and 0.0 < float((plane >= 128).mean()) < 1.0


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB between uint8 arrays over `mask` (H, W) broadcast to all planes; inf when identical, nan when empty."""
    a32 = a.astype(np.float64)
    b32 = b.astype(np.float64)
    if mask is not None:
        sel = np.broadcast_to(mask[None] if a.ndim == 3 else mask, a.shape)
        if not sel.any():
            return float("nan")
        a32, b32 = a32[sel], b32[sel]
    mse = float(np.mean((a32 - b32) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(255.0 ** 2 / mse)


def keep_off_border(mask: np.ndarray, margin: int = 2) -> np.ndarray:
    """`mask` without its outer `margin` pixels (seamlessClone misbehaves on regions touching the border)."""
    out = mask.copy()
    out[:margin, :] = False
    out[-margin:, :] = False
    out[:, :margin] = False
    out[:, -margin:] = False
    return out


def poisson_blend(dst: np.ndarray, src: np.ndarray, mask: np.ndarray, *, max_iter: int = 600) -> np.ndarray:
    """Poisson image editing (Pérez et al. 2003, seamless cloning): `src`'s gradients inside `mask`, `dst` on its rim.

    All (H, W) and aligned; returns (H, W) uint8 equal to `dst` outside `mask`. This is the
    equation cv2.seamlessClone solves; it is solved here (conjugate gradient on the region)
    because OpenCV 5.0's seamlessClone loses most of the source gradient on small regions
    (a 13 px debris patch came out at 1/7 of its contrast), which would erase small defects.
    """
    m = keep_off_border(mask, 1)
    if not m.any():
        return dst.copy()
    x0, y0, x1, y1 = bbox(m)
    sl = (slice(y0 - 1, y1 + 1), slice(x0 - 1, x1 + 1))
    om = m[sl]
    d = dst[sl].astype(np.float64)
    s = src[sl].astype(np.float64)
    diff = np.where(om, 0.0, d - s)  # boundary values of the correction g = f - src

    def neighbours_sum(a: np.ndarray) -> np.ndarray:
        out = np.zeros_like(a)
        out[1:, :] += a[:-1, :]
        out[:-1, :] += a[1:, :]
        out[:, 1:] += a[:, :-1]
        out[:, :-1] += a[:, 1:]
        return out

    def apply_a(g: np.ndarray) -> np.ndarray:  # 4 g_p - sum of neighbours inside the region
        return np.where(om, 4.0 * g - neighbours_sum(np.where(om, g, 0.0)), 0.0)

    b = np.where(om, neighbours_sum(diff), 0.0)
    g = np.zeros_like(b)
    r = b.copy()
    p = r.copy()
    rs = float((r * r).sum())
    tol = 1e-6 * max(float((b * b).sum()), 1e-12)
    for _ in range(max_iter):
        if rs <= tol:
            break
        ap = apply_a(p)
        alpha = rs / float((p * ap).sum())
        g += alpha * p
        r -= alpha * ap
        rs_new = float((r * r).sum())
        p = r + (rs_new / rs) * p
        rs = rs_new
    out = dst.copy()
    region = to_u8(s + g)
    out[sl] = np.where(om, region, dst[sl])
    return np.where(mask & ~m, dst, out).astype(np.uint8)


def soft_shape(h: int, w: int, draw: object, *, supersample: int = 4) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of a shape drawn by `draw(canvas, scale)` on a supersampled canvas."""
    s = supersample
    canvas = np.zeros((h * s, w * s), np.uint8)
    draw(canvas, s)  # type: ignore[operator]
    return cv2.resize(canvas.astype(np.float32) / 255.0, (w, h), interpolation=cv2.INTER_AREA)


def blob_polygon(rng: np.random.Generator, cx: float, cy: float, rx: float, ry: float, *,
                 n: int = 12, roughness: float = 0.3, angle: float = 0.0) -> np.ndarray:
    """An irregular closed polygon (n, 2) float around (cx, cy): an ellipse with a noisy radius."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = 1.0 + roughness * rng.uniform(-1, 1, n)
    x = rx * r * np.cos(t)
    y = ry * r * np.sin(t)
    ca, sa = math.cos(angle), math.sin(angle)
    return np.stack([cx + ca * x - sa * y, cy + sa * x + ca * y], axis=1)


def fill_poly_soft(h: int, w: int, poly: np.ndarray, *, supersample: int = 4) -> np.ndarray:
    def draw(canvas: np.ndarray, s: int) -> None:
        pts = np.round(poly * s + (s - 1) / 2).astype(np.int32)
        cv2.fillPoly(canvas, [pts], 255, lineType=cv2.LINE_AA)
    return soft_shape(h, w, draw, supersample=supersample)


def polyline_soft(h: int, w: int, pts: np.ndarray, thickness: float, *, supersample: int = 4) -> np.ndarray:
    def draw(canvas: np.ndarray, s: int) -> None:
        p = np.round(pts * s + (s - 1) / 2).astype(np.int32)
        cv2.polylines(canvas, [p], False, 255, thickness=max(1, int(round(thickness * s))), lineType=cv2.LINE_AA)
    return soft_shape(h, w, draw, supersample=supersample)


def texture(rng: np.random.Generator, h: int, w: int, *, scale: float = 1.2) -> np.ndarray:
    """Smooth zero-mean unit-ish noise (H, W) float32 for debris and surface variation."""
    noise = rng.standard_normal((h, w)).astype(np.float32)
    sm = cv2.GaussianBlur(noise, (0, 0), scale)
    return sm / (float(sm.std()) + 1e-6)


def pick(params: dict[str, Any], key: str, draw: Callable[[], Any]) -> Any:
    """`params[key]` when given (an override), else a fresh draw, recorded in `params`."""
    if key not in params:
        value = draw()
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        params[key] = value
    return params[key]
