"""Decoding sample images into uint8 arrays (N, lights, H, W) with one clear error per bad file.

This is the uncached reader; the native backend's memmap cache wraps it.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from deftpipe.errors import ContractError
from deftpipe.workspace.paths import ImageLocator

# Images declaring more pixels are refused before decoding; real AOI crops are far smaller.
MAX_PIXELS = 64_000_000


_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, BMP or JPEG header without decoding; None for other formats.

    Lets a tiny file that declares a huge image (a decompression bomb) be refused before OpenCV
    allocates its pixels.
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] == b"BM" and len(data) >= 26:
        return (abs(int.from_bytes(data[18:22], "little", signed=True)),
                abs(int.from_bytes(data[22:26], "little", signed=True)))
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 <= len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker in _JPEG_SOF:
                return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
            if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length field
                i += 2
                continue
            i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def read_image(path: str | Path, *, grayscale: bool = True, where: str = "") -> np.ndarray:
    """Decode one image as uint8 (H, W) or (H, W, 3); raises ContractError for missing/empty/corrupt files."""
    p = Path(path)
    prefix = f"{where}: " if where else ""
    try:
        data = np.fromfile(p, dtype=np.uint8)
    except FileNotFoundError:
        raise ContractError(f"{prefix}image '{p}' not found; check input_path / golden_path / object_name.") from None
    except IsADirectoryError:
        raise ContractError(f"{prefix}image '{p}' is a folder, expected an image file.") from None
    if data.size == 0:
        raise ContractError(f"{prefix}image '{p}' is empty (0 bytes); replace it with a valid image.")
    size = declared_size(data[:65536].tobytes())
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        raise ContractError(
            f"{prefix}image '{p}' declares {size[0]}x{size[1]} pixels, more than the {MAX_PIXELS:,} this tool "
            "decodes (a corrupt header or a decompression bomb); re-export it at the spec's image size."
        )
    flag = cv2.IMREAD_GRAYSCALE if grayscale else cv2.IMREAD_COLOR
    try:
        img = cv2.imdecode(data, flag)
    except cv2.error as exc:
        raise ContractError(f"{prefix}image '{p}' cannot be decoded ({str(exc).strip().splitlines()[-1]}).") from exc
    if img is None:
        raise ContractError(f"{prefix}image '{p}' is corrupt or not an image format OpenCV reads; re-export it.")
    return img


def read_stack(paths: Sequence[str], *, grayscale: bool = True, size: tuple[int, int] | None = None,
               where: str = "") -> np.ndarray:
    """Decode the per-light files of one sample into (lights, H, W) uint8 (grey) — or (lights*3, H, W) colour.

    `size` = (height, width) required; a mismatch is an error rather than a silent resize.
    """
    planes: list[np.ndarray] = []
    sizes: list[str] = []
    for path in paths:
        img = read_image(path, grayscale=grayscale, where=where)
        sizes.append(f"{Path(path).name} {img.shape[1]}x{img.shape[0]}")
        if size is not None and img.shape[:2] != size:
            raise ContractError(
                f"{where}: image '{path}' is {img.shape[1]}x{img.shape[0]} but the spec says "
                f"{size[1]}x{size[0]} (dataset.classify.image_width/height); resize the data or fix the spec."
            )
        planes.extend([img] if img.ndim == 2 else list(np.moveaxis(img, -1, 0)))
    shapes = {pl.shape for pl in planes}
    if len(shapes) > 1:
        raise ContractError(f"{where}: the lights of one sample differ in size ({', '.join(sizes)}); all must match.")
    return np.stack(planes, axis=0)


def load_pairs(rows: pd.DataFrame, locator: ImageLocator, *, grayscale: bool = True,
               size: tuple[int, int] | None = None, csv_name: str = "CSV") -> tuple[np.ndarray, np.ndarray]:
    """Test and golden stacks for every row: two uint8 arrays (N, C, H, W)."""
    tests, goldens = locator.frame_paths(rows, csv_name=csv_name)
    n = len(rows)
    t_list: list[np.ndarray] = []
    g_list: list[np.ndarray] = []
    for i in range(n):
        where = f"{csv_name} line {int(rows.index[i]) + 2}"
        t = read_stack([tests[k][i] for k in range(len(tests))], grayscale=grayscale, size=size, where=where)
        g = read_stack([goldens[k][i] for k in range(len(goldens))], grayscale=grayscale, size=size, where=where)
        if t.shape != g.shape:
            raise ContractError(
                f"{where}: test image is {t.shape[2]}x{t.shape[1]} but its golden is {g.shape[2]}x{g.shape[1]}; "
                "test and golden must have the same size."
            )
        t_list.append(t)
        g_list.append(g)
    if not t_list:
        return np.zeros((0, 0, 0, 0), np.uint8), np.zeros((0, 0, 0, 0), np.uint8)
    return np.stack(t_list), np.stack(g_list)
