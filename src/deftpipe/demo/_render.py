"""Supersampled two-light canvas and the capture nuisance of an AOI camera.

Shapes are drawn as polygons on a canvas `SUPERSAMPLE`× finer than the output, one
float plane per light, and box-averaged down, which gives sub-pixel placement and
anti-aliased edges. Coordinates are always in output pixels (x, y).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

SUPERSAMPLE = 2
N_LIGHTS = 2
_SHIFT_BITS = 3  # cv2.fillPoly fractional bits: 1/8 of a supersampled pixel


@dataclass(frozen=True)
class Capture:
    """Where and how the camera saw the test board (drawn once per pair, shared by both lights)."""

    dx: float
    dy: float
    angle_deg: float
    blur_sigma: float
    gains: tuple[float, float]
    offsets: tuple[float, float]
    gradient: tuple[float, float]  # amplitude (grey levels across the crop), direction (rad)
    noise_sigma: float


class Canvas:
    """A (lights, H, W) float32 picture at supersampled resolution, composited front to back."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.hi = size * SUPERSAMPLE
        self.planes = np.zeros((N_LIGHTS, self.hi, self.hi), np.float32)

    def copy(self) -> Canvas:
        twin = Canvas.__new__(Canvas)
        twin.size, twin.hi, twin.planes = self.size, self.hi, self.planes.copy()
        return twin

    def fill(self, values: np.ndarray) -> None:
        """Set the whole canvas; `values` is (lights, hi, hi) or (lights,)."""
        self.planes[...] = np.asarray(values, np.float32).reshape((N_LIGHTS, -1, 1) if np.ndim(values) == 1
                                                                 else (N_LIGHTS, self.hi, self.hi))

    def _bbox(self, pts: np.ndarray) -> tuple[int, int, int, int] | None:
        lx, ly = (pts.min(axis=0) * SUPERSAMPLE).tolist()
        hx, hy = (pts.max(axis=0) * SUPERSAMPLE).tolist()
        x0, y0 = max(math.floor(lx) - 1, 0), max(math.floor(ly) - 1, 0)
        x1, y1 = min(math.ceil(hx) + 2, self.hi), min(math.ceil(hy) + 2, self.hi)
        if x1 <= x0 or y1 <= y0:
            return None
        return x0, y0, x1, y1

    def coverage(self, polys: Sequence[np.ndarray]) -> tuple[np.ndarray, tuple[int, int, int, int]] | None:
        """Anti-aliased coverage in [0, 1] (float32) of the union of `polys` inside their joint bounding box."""
        allpts = np.concatenate(polys, axis=0)
        box = self._bbox(allpts)
        if box is None:
            return None
        x0, y0, x1, y1 = box
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        parts = self._fixed(polys, box)
        cv2.fillPoly(mask, parts, 255, lineType=cv2.LINE_AA, shift=_SHIFT_BITS)
        return mask.astype(np.float32) * np.float32(1 / 255), box

    def labelled_coverage(self, polys: Sequence[np.ndarray]
                          ) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]] | None:
        """Union coverage plus a label map (k + 1 inside polys[k], 0 outside; later polys win)."""
        got = self.coverage(polys)
        if got is None:
            return None
        cov, box = got
        x0, y0, x1, y1 = box
        labels = np.zeros((y1 - y0, x1 - x0), np.uint8)
        for k, fixed in enumerate(self._fixed(polys, box)):
            cv2.fillPoly(labels, [fixed], k + 1, lineType=cv2.LINE_8, shift=_SHIFT_BITS)
        return cov, labels, box

    def _fixed(self, polys: Sequence[np.ndarray], box: tuple[int, int, int, int]) -> list[np.ndarray]:
        allpts = np.concatenate(polys, axis=0)
        origin = np.array([box[0] + 0.5, box[1] + 0.5])
        fixed = np.rint((allpts * SUPERSAMPLE - origin) * (1 << _SHIFT_BITS)).astype(np.int32)
        out, start = [], 0
        for p in polys:
            out.append(fixed[start:start + len(p)])
            start += len(p)
        return out

    def axes(self, box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Output-pixel x and y coordinates (1-D) of the supersampled pixel centres inside `box`."""
        x0, y0, x1, y1 = box
        return ((np.arange(x0, x1, dtype=np.float32) + 0.5) / SUPERSAMPLE,
                (np.arange(y0, y1, dtype=np.float32) + 0.5) / SUPERSAMPLE)

    def grid(self, box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Output-pixel coordinates (x, y) of the supersampled pixel centres inside `box`."""
        x0, y0, x1, y1 = box
        xs = (np.arange(x0, x1, dtype=np.float32) + 0.5) / SUPERSAMPLE
        ys = (np.arange(y0, y1, dtype=np.float32) + 0.5) / SUPERSAMPLE
        return np.meshgrid(xs, ys)

    def composite(self, cov: np.ndarray, box: tuple[int, int, int, int], values: np.ndarray,
                  alpha: Sequence[float] = (1.0, 1.0)) -> None:
        """Paint `values` ((lights,) or (lights, h, w)) over the canvas where `cov` > 0, per-light opacity `alpha`."""
        x0, y0, x1, y1 = box
        region = self.planes[:, y0:y1, x0:x1]
        vals = np.asarray(values, np.float32)
        if vals.ndim == 1:
            vals = vals[:, None, None]
        a = np.asarray(alpha, np.float32)[:, None, None] * cov[None]
        region += a * (vals - region)

    def poly(self, polys: Sequence[np.ndarray], values: Sequence[float] | np.ndarray,
             alpha: Sequence[float] = (1.0, 1.0)) -> None:
        got = self.coverage(polys)
        if got is not None:
            self.composite(got[0], got[1], np.asarray(values, np.float32), alpha)

    def add_gaussian(self, cx: float, cy: float, sigma: float, amps: Sequence[float]) -> None:
        """Additive soft spot (specular glare) of peak `amps` per light."""
        r = 3.0 * sigma
        box = self._bbox(np.array([[cx - r, cy - r], [cx + r, cy + r]]))
        if box is None:
            return
        gx, gy = self.grid(box)
        spot = np.exp(-((gx - cx) ** 2 + (gy - cy) ** 2) / (2.0 * sigma * sigma)).astype(np.float32)
        x0, y0, x1, y1 = box
        self.planes[:, y0:y1, x0:x1] += np.asarray(amps, np.float32)[:, None, None] * spot[None]

    def downsample(self) -> np.ndarray:
        """(lights, size, size) float32 box average of the supersampled planes."""
        return np.stack([cv2.resize(p, (self.size, self.size), interpolation=cv2.INTER_AREA) for p in self.planes])


def rect(cx: float, cy: float, w: float, h: float) -> np.ndarray:
    """Axis-aligned rectangle polygon (4, 2) centred at (cx, cy), width along x."""
    return np.array([[cx - w / 2, cy - h / 2], [cx + w / 2, cy - h / 2], [cx + w / 2, cy + h / 2],
                     [cx - w / 2, cy + h / 2]], np.float64)


def strokes(p0: np.ndarray, p1: np.ndarray, width: float) -> np.ndarray:
    """Straight segments p0[k] -> p1[k] of `width` as quads, shape (k, 4, 2)."""
    p0 = np.asarray(p0, np.float64).reshape(-1, 2)
    p1 = np.asarray(p1, np.float64).reshape(-1, 2)
    d = p1 - p0
    norm = np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)[:, None]
    n = d[:, ::-1] * np.array([-1.0, 1.0]) / norm * (width / 2)
    out = np.empty((len(p0), 4, 2))
    out[:, 0], out[:, 1], out[:, 2], out[:, 3] = p0 + n, p1 + n, p1 - n, p0 - n
    return out


def stroke(p0: np.ndarray, p1: np.ndarray, width: float) -> np.ndarray:
    """One straight segment of `width` as a quad polygon (4, 2)."""
    return strokes(p0, p1, width)[0]


def ring(poly: np.ndarray, width: float) -> list[np.ndarray]:
    """The outline of a closed polygon as edge strokes of `width`."""
    return list(strokes(poly, np.roll(poly, -1, axis=0), width))


def sample_capture(rng: np.random.Generator, *, max_shift: float = 2.0) -> Capture:
    """Misalignment, illumination and sensor parameters of one test capture."""
    common = rng.uniform(0.88, 1.12)
    gains = (common * rng.uniform(0.97, 1.03), common * rng.uniform(0.97, 1.03))
    offsets = (rng.uniform(-8, 8), rng.uniform(-8, 8))
    return Capture(
        dx=float(rng.uniform(-max_shift, max_shift)), dy=float(rng.uniform(-max_shift, max_shift)),
        angle_deg=float(rng.uniform(-0.4, 0.4)), blur_sigma=float(rng.uniform(0.0, 0.7)),
        gains=(float(gains[0]), float(gains[1])), offsets=(float(offsets[0]), float(offsets[1])),
        gradient=(float(rng.uniform(0, 10)), float(rng.uniform(0, 2 * np.pi))),
        noise_sigma=float(rng.uniform(1.2, 3.0)),
    )


def warp_matrix(cap: Capture, canvas_size: int) -> np.ndarray:
    c = canvas_size / 2.0
    m = cv2.getRotationMatrix2D((c, c), cap.angle_deg, 1.0)
    m[:, 2] += (cap.dx, cap.dy)
    return m


def warp_crop(planes: np.ndarray, m: np.ndarray, margin: int, *, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Warp each (H, W) plane by `m` on the enlarged canvas, then cut the `margin` off every side."""
    size = planes.shape[-1]
    out = [cv2.warpAffine(p, m, (size, size), flags=interpolation, borderMode=cv2.BORDER_REFLECT_101) for p in planes]
    stacked = np.stack(out)
    return stacked[:, margin:size - margin, margin:size - margin]


def develop(planes: np.ndarray, cap: Capture, rng: np.random.Generator) -> np.ndarray:
    """Blur, gain/offset/gradient and sensor noise on (lights, S, S) float planes -> uint8."""
    out = np.empty(planes.shape, np.uint8)
    s = planes.shape[-1]
    amp, ang = cap.gradient
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    ramp = amp * (((xx - s / 2) * np.cos(ang) + (yy - s / 2) * np.sin(ang)) / s)
    for k in range(planes.shape[0]):
        p = planes[k]
        if cap.blur_sigma > 0.15:
            p = cv2.GaussianBlur(p, (0, 0), cap.blur_sigma)
        p = p * cap.gains[k] + cap.offsets[k] + ramp
        p = p + rng.normal(0.0, cap.noise_sigma, p.shape).astype(np.float32)
        out[k] = np.clip(np.rint(p), 0, 255).astype(np.uint8)
    return out


def develop_golden(planes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The golden reference: an aligned, well-exposed capture with a little sensor noise."""
    noisy = planes + rng.normal(0.0, 1.0, planes.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
