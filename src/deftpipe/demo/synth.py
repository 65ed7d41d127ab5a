"""One synthetic golden/test pair of a PCB component crop, rendered in LightA and LightB.

Deterministic in `seed`: the scene, the PASS variation, the defect and the capture
nuisance each draw from their own stream, so the same seed with `label="PASS"`
and with a defect label gives the same pair except for the defect itself.

Example:
    pair = synthesize_pair("bridge", "ic", size=64, seed=(0, 3, 17))
    pair.test.shape  # (2, 64, 64) uint8, lights in LIGHTS order
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from deftpipe.demo._defects import DEFECTS, apply_pass_variation
from deftpipe.demo._render import develop, develop_golden, sample_capture, warp_crop, warp_matrix
from deftpipe.demo._scene import MARGIN, BoardStyle, build_scene, render, render_board, sample_board_style
from deftpipe.demo.catalog import ALLOWED_KINDS, COMPONENT_KINDS, LABELS
from deftpipe.errors import ConfigError
from deftpipe.workspace.layout import PASS_LABEL

__all__ = ["BoardStyle", "SynthPair", "sample_board_style", "synthesize_pair"]

# Stream ids appended to the sample seed.
_STYLE, _SCENE, _VARIATION, _DEFECT, _CAPTURE, _GOLDEN = range(6)
# A pixel belongs to the defect region when the defect changes it by more than this (grey levels, either light).
_MASK_MIN_CHANGE = 12.0


@dataclass(frozen=True)
class SynthPair:
    """Test and golden stacks (lights, size, size) uint8; `defect_mask` (size, size) bool in test coordinates."""

    test: np.ndarray
    golden: np.ndarray
    label: str
    kind: str
    defect_mask: np.ndarray | None = None


def _check(label: str, kind: str) -> None:
    if label not in LABELS:
        raise ConfigError(f"synthetic label '{label}' is unknown; choose one of {list(LABELS)}.")
    if kind not in COMPONENT_KINDS:
        raise ConfigError(f"component kind '{kind}' is unknown; choose one of {list(COMPONENT_KINDS)}.")
    if kind not in ALLOWED_KINDS[label]:
        raise ConfigError(
            f"defect '{label}' cannot occur on a '{kind}'; it needs one of {list(ALLOWED_KINDS[label])}."
        )


def synthesize_pair(label: str, kind: str, *, size: int, seed: Sequence[int], style: BoardStyle | None = None,
                    with_defect_mask: bool = False) -> SynthPair:
    """Render one golden/test pair of `kind` whose test shows `label` (PASS or a defect name).

    Args:
        seed: integers identifying the sample (e.g. (seed, split_id, index)); streams are derived from it.
        style: the board's materials; drawn from the seed when not given.
        with_defect_mask: also return where the defect changed the test image (costs one more render).
    """
    _check(label, kind)
    base = [int(s) for s in seed]
    if style is None:
        style = sample_board_style(np.random.default_rng([*base, _STYLE]))
    golden_scene = build_scene(kind, size, style, np.random.default_rng([*base, _SCENE]))
    test_scene = golden_scene.clone()
    apply_pass_variation(test_scene, np.random.default_rng([*base, _VARIATION]))
    clean_scene = test_scene
    if label != PASS_LABEL:
        test_scene = clean_scene.clone()
        DEFECTS[label](test_scene, np.random.default_rng([*base, _DEFECT]))
    capture_rng = np.random.default_rng([*base, _CAPTURE])
    capture = sample_capture(capture_rng)
    canvas = size + 2 * MARGIN
    m = warp_matrix(capture, canvas)
    board = render_board(golden_scene)
    test_planes = render(test_scene, board)
    test = develop(warp_crop(test_planes, m, MARGIN), capture, capture_rng)
    golden_planes = render(golden_scene, board)[:, MARGIN:canvas - MARGIN, MARGIN:canvas - MARGIN]
    golden = develop_golden(golden_planes, np.random.default_rng([*base, _GOLDEN]))
    mask = None
    if with_defect_mask:
        if label == PASS_LABEL:
            mask = np.zeros((size, size), bool)
        else:
            change = np.abs(test_planes - render(clean_scene, board)).max(axis=0, keepdims=True)
            moved = warp_crop(change, m, MARGIN, interpolation=cv2.INTER_NEAREST)[0]
            mask = moved > _MASK_MIN_CHANGE
    return SynthPair(test, golden, label, kind, mask)
