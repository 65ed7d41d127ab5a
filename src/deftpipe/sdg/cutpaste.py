"""CutPaste (Li et al., 2021): a patch cut from elsewhere in the same image, jittered, Poisson-blended back.

The generic fallback: it paints any defect label when no specific generator fits a
pair; the engine records `generic=True` for such samples so nobody mistakes them
for a faithful rendering of that defect.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from deftpipe.sdg._imaging import compose, is_binary_like, pick, poisson_blend, to_u8
from deftpipe.sdg.registry import BaseGenerator, GenerateOutput, GeneratorUnfit, register_generator


@register_generator
class CutPaste(BaseGenerator):
    """`variant` "patch" (a rectangle, 12–30 % of the side) or "scar" (a thin long strip)."""

    name = "cutpaste"
    supported_labels = frozenset()
    generic = True
    priority = -10

    def generate(self, test: np.ndarray, golden: np.ndarray, rng: np.random.Generator,
                 params: Mapping[str, Any]) -> GenerateOutput:
        c, h, w = test.shape
        if min(h, w) < 12:
            raise GeneratorUnfit(f"cutpaste: image {w}x{h} is too small for a patch")
        used = {k: v for k, v in params.items() if k != "label"}
        variant = str(pick(used, "variant", lambda: "scar" if rng.random() < 0.3 else "patch"))
        if variant == "scar":
            long_side = int(pick(used, "length_px", lambda: rng.integers(max(4, h // 4), max(5, h // 2))))
            short_side = int(pick(used, "width_px", lambda: rng.integers(2, 4)))
            vertical = bool(pick(used, "vertical", lambda: bool(rng.random() < 0.5)))
            ph, pw = (long_side, short_side) if vertical else (short_side, long_side)
        else:
            ph = int(pick(used, "height_px", lambda: rng.integers(max(3, int(0.12 * h)), max(4, int(0.3 * h)) + 1)))
            pw = int(pick(used, "width_px", lambda: rng.integers(max(3, int(0.12 * w)), max(4, int(0.3 * w)) + 1)))
        m = 2  # keep off the border: Poisson blending needs a frame around the region
        ph, pw = min(ph, h - 2 * m - 1), min(pw, w - 2 * m - 1)
        sy, sx = (int(v) for v in pick(used, "source_yx", lambda: np.array(
            [rng.integers(0, h - ph + 1), rng.integers(0, w - pw + 1)])))
        # the destination must not sit on its own source, or the "defect" is invisible
        for _ in range(20):
            dy, dx = int(rng.integers(m, h - ph - m + 1)), int(rng.integers(m, w - pw - m + 1))
            if abs(dy - sy) >= ph // 2 + 1 or abs(dx - sx) >= pw // 2 + 1:
                break
        dy, dx = (int(v) for v in pick(used, "dest_yx", lambda: np.array([dy, dx])))
        flip = bool(pick(used, "flip", lambda: bool(rng.random() < 0.5)))
        gain = float(pick(used, "gain", lambda: rng.uniform(0.8, 1.25)))
        patch = test[:, sy:sy + ph, sx:sx + pw].astype(np.float32)
        if flip:
            patch = patch[:, :, ::-1] if pw > 1 else patch[:, ::-1, :]
        mask = np.zeros((h, w), bool)
        mask[dy:dy + ph, dx:dx + pw] = True
        binary = is_binary_like(golden) and is_binary_like(test)
        out = test.astype(np.float32)
        for k in range(c):
            src = test[k].astype(np.float32)
            piece = patch[k] if binary else np.clip(patch[k] * gain, 0, 255)
            src[dy:dy + ph, dx:dx + pw] = piece
            out[k] = src if binary else poisson_blend(test[k], to_u8(src), mask).astype(np.float32)
        result = compose(test, out, mask)
        if np.array_equal(result, test):
            raise GeneratorUnfit("cutpaste: the pasted patch equals what it covers (flat image)")
        used.update(variant=variant, patch_hw=[ph, pw], blend="none" if binary else "poisson")
        return result, mask, used
