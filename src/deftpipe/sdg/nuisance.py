"""PASS pairs carrying the nuisance that fooled the model: misalignment, illumination, noise, blur, benign variation.

`diagnose_nuisance` measures what differs in a false-alarm pair (shift, gain,
noise, sharpness); the generator draws its nuisance kind with those weights and
magnitudes near the measured ones, so the synthetic PASS rows teach the model to
ignore exactly that. The whole image may change: the mask is the full frame.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

from deftpipe.sdg._imaging import is_binary_like, pick, to_u8, translate
from deftpipe.sdg.registry import BaseGenerator, GenerateOutput, register_generator

KINDS: tuple[str, ...] = ("misalignment", "illumination", "noise", "blur", "benign_variation")
# Every kind keeps a floor weight: one false alarm is weak evidence of its cause.
_FLOOR = 0.15


def diagnose_nuisance(test: np.ndarray, golden: np.ndarray) -> dict[str, Any]:
    """What differs between a PASS pair's test and golden (C, H, W): shift, gain/offset, noise and blur ratios, weights."""
    t = test.astype(np.float32)
    g = golden.astype(np.float32)
    (sx, sy), _ = cv2.phaseCorrelate(g.mean(axis=0), t.mean(axis=0))
    shift = float(math.hypot(sx, sy))
    gains = [(float(t[c].mean()) + 1.0) / (float(g[c].mean()) + 1.0) for c in range(t.shape[0])]
    offsets = [float(t[c].mean() - g[c].mean()) for c in range(t.shape[0])]
    reg = np.stack([translate(g[c], sy, sx) for c in range(g.shape[0])])

    def hf(x: np.ndarray) -> float:
        return float(np.std(x - cv2.GaussianBlur(x, (0, 0), 1.0)))

    def sharp(x: np.ndarray) -> float:
        return float(cv2.Laplacian(x, cv2.CV_32F).var())

    noise_ratio = float(np.mean([(hf(t[c]) + 1e-3) / (hf(reg[c]) + 1e-3) for c in range(t.shape[0])]))
    blur_ratio = float(np.mean([(sharp(t[c]) + 1e-3) / (sharp(reg[c]) + 1e-3) for c in range(t.shape[0])]))
    weights = {
        "misalignment": min(1.0, shift / 1.0),
        "illumination": min(1.0, max(abs(x - 1) for x in gains) / 0.08 + max(abs(o) for o in offsets) / 12.0),
        "noise": float(np.clip((noise_ratio - 1.0) / 0.5, 0, 1)),
        "blur": float(np.clip((1.0 - blur_ratio) / 0.4, 0, 1)),
        "benign_variation": 0.3,
    }
    return {
        "shift_px": round(shift, 3), "shift_xy": [round(float(sx), 3), round(float(sy), 3)],
        "gain": [round(x, 4) for x in gains], "offset": [round(o, 3) for o in offsets],
        "noise_ratio": round(noise_ratio, 4), "blur_ratio": round(blur_ratio, 4),
        "weights": {k: round(v, 4) for k, v in weights.items()},
    }


@register_generator
class Nuisance(BaseGenerator):
    """Synthesizes a PASS pair: the golden stays, the test gets one benign nuisance.

    params: `kind` (one of KINDS) to force one; `diagnosis` (from `diagnose_nuisance`) to weight the draw.
    """

    name = "nuisance"
    supported_labels = frozenset({"PASS"})

    def generate(self, test: np.ndarray, golden: np.ndarray, rng: np.random.Generator,
                 params: Mapping[str, Any]) -> GenerateOutput:
        used = {k: v for k, v in params.items() if k != "label"}
        diag = used.pop("diagnosis", None) or {}
        weights = np.array([max(_FLOOR, float(diag.get("weights", {}).get(k, 0.3))) for k in KINDS])
        kind = str(pick(used, "kind", lambda: KINDS[int(rng.choice(len(KINDS), p=weights / weights.sum()))]))
        if kind not in KINDS:
            raise ValueError(f"nuisance kind '{kind}' unknown; choose one of {list(KINDS)}")
        binary = is_binary_like(test)
        out = self._apply(kind, test, rng, used, diag, binary)
        if diag:
            used["diagnosed"] = {k: v for k, v in diag.items() if k != "weights"}
            used["diagnosed_weights"] = diag.get("weights", {})
        used["kind"] = kind
        if binary:  # keep a black/white image black/white
            lo, hi = float(np.percentile(test, 1)), float(np.percentile(test, 99))
            out = np.where(out >= 128, np.uint8(round(hi)), np.uint8(round(lo)))
        return out, np.ones(test.shape[1:], bool), used

    def _apply(self, kind: str, test: np.ndarray, rng: np.random.Generator, p: dict[str, Any],
               diag: Mapping[str, Any], binary: bool) -> np.ndarray:
        c, h, w = test.shape
        t = test.astype(np.float32)
        if kind == "misalignment" or (binary and kind in ("illumination", "noise")):
            p["kind_applied"] = "misalignment"
            measured = float(diag.get("shift_px", 0.0))
            mag = float(pick(p, "shift_px", lambda: np.clip(
                measured * rng.uniform(0.8, 1.3) if measured >= 0.5 else rng.uniform(0.5, 2.5), 0.5, 3.0)))
            ang = float(pick(p, "shift_angle_deg", lambda: rng.uniform(0, 360)))
            rot = float(pick(p, "rotation_deg", lambda: rng.uniform(-0.5, 0.5)))
            m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), rot, 1.0)
            m[0, 2] += mag * math.cos(math.radians(ang))
            m[1, 2] += mag * math.sin(math.radians(ang))
            return np.stack([cv2.warpAffine(test[k], m, (w, h), flags=cv2.INTER_LINEAR,
                                            borderMode=cv2.BORDER_REPLICATE) for k in range(c)])
        if kind == "illumination":
            meas = diag.get("gain") or [1.0] * c
            gains = pick(p, "gain", lambda: np.array([
                np.clip(float(meas[k if k < len(meas) else 0]) * rng.uniform(0.97, 1.03)
                        if abs(float(meas[k if k < len(meas) else 0]) - 1) > 0.03 else rng.uniform(0.85, 1.15),
                        0.75, 1.3) for k in range(c)]))
            offsets = pick(p, "offset", lambda: rng.uniform(-8, 8, c))
            grad = float(pick(p, "gradient", lambda: rng.uniform(-8, 8)))
            ang = math.radians(float(pick(p, "gradient_angle_deg", lambda: rng.uniform(0, 360))))
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            ramp = ((xx - w / 2) * math.cos(ang) + (yy - h / 2) * math.sin(ang)) / max(h, w) * 2 * grad
            return np.stack([to_u8(t[k] * float(gains[k]) + float(offsets[k]) + ramp) for k in range(c)])
        if kind == "noise":
            sigma = float(pick(p, "sigma", lambda: rng.uniform(2.0, 6.0)))
            return to_u8(t + rng.normal(0, sigma, t.shape))
        if kind == "blur":
            sigma = float(pick(p, "sigma", lambda: rng.uniform(0.5, 1.2)))
            return np.stack([to_u8(cv2.GaussianBlur(t[k], (0, 0), sigma)) for k in range(c)])
        # benign_variation: the part sits a touch rotated / scaled and the solder reflects slightly differently
        rot = float(pick(p, "rotation_deg", lambda: rng.uniform(-1.5, 1.5)))
        scale = float(pick(p, "scale", lambda: rng.uniform(0.97, 1.03)))
        shine = float(pick(p, "solder_gain", lambda: rng.uniform(0.95, 1.05)))
        m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), rot, scale)
        out = []
        for k in range(c):
            warped = cv2.warpAffine(test[k], m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            wf = warped.astype(np.float32)
            bright = wf > np.percentile(wf, 85)
            wf[bright] *= shine
            out.append(to_u8(wf))
        return np.stack(out)
