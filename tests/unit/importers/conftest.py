"""A small synthetic DeepPCB tree: traces on the left, blank copper-free area on the right, painted defects."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

SIZE = 192
# (x0, y0, x1, y1, type) per image slot; all on the traced left part, far apart
BOX_SETS: list[list[tuple[int, int, int, int, int]]] = [
    [(20, 14, 36, 30, 1), (90, 94, 104, 110, 5)],
    [(40, 54, 56, 70, 3), (100, 134, 114, 150, 6), (20, 140, 34, 156, 4)],
    [],
    [(60, 14, 74, 28, 2), (64, 34, 78, 48, 5)],  # two types 6 px apart: a centred crop catches both
]


def _board(rng: np.random.Generator) -> np.ndarray:
    img = np.full((SIZE, SIZE), 255, np.uint8)
    for y in range(12, SIZE - 12, 40):
        cv2.rectangle(img, (0, y), (int(SIZE * 0.62), y + 14), 0, -1)
    for x in range(16, int(SIZE * 0.62), 48):
        cv2.rectangle(img, (x, 0), (x + 8, SIZE - 1), 0, -1)
    img[rng.random(img.shape) < 0.002] ^= 255  # a little speckle, like JPEG noise on real boards
    return img


def _paint(test: np.ndarray, box: tuple[int, int, int, int, int]) -> None:
    x0, y0, x1, y1, _ = box
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    value = 255 - int(test[cy, cx])
    cv2.circle(test, (cx, cy), max(2, (x1 - x0) // 4), value, -1)


def build_deeppcb(root: Path, groups: dict[str, int], *, separator: str = ",") -> Path:
    rng = np.random.default_rng(7)
    data = root / "PCBData"
    for g, (name, n_images) in enumerate(sorted(groups.items())):
        gid = name.removeprefix("group")
        (data / name / gid).mkdir(parents=True)
        (data / name / f"{gid}_not").mkdir()
        for k in range(n_images):
            image_id = f"{gid}{k:03d}"
            golden = _board(rng)
            test = golden.copy()
            boxes = BOX_SETS[(k + g) % len(BOX_SETS)]
            for box in boxes:
                _paint(test, box)
            cv2.imwrite(str(data / name / gid / f"{image_id}_test.jpg"), test, [cv2.IMWRITE_JPEG_QUALITY, 100])
            cv2.imwrite(str(data / name / gid / f"{image_id}_temp.jpg"), golden, [cv2.IMWRITE_JPEG_QUALITY, 100])
            sep = separator if k % 2 == 0 else " "
            lines = [sep.join(str(v) for v in box) for box in boxes]
            (data / name / f"{gid}_not" / f"{image_id}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    return data


@pytest.fixture(scope="session")
def synth_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three groups of five 192x192 pairs (read-only use: tests never write here)."""
    return build_deeppcb(tmp_path_factory.mktemp("deeppcb"), {"group10000": 5, "group20000": 5, "group30000": 5})


@pytest.fixture()
def make_src(tmp_path: Path) -> Callable[..., Path]:
    def make(groups: dict[str, int], **kw: object) -> Path:
        return build_deeppcb(tmp_path / "src", groups, **kw)  # type: ignore[arg-type]
    return make
