"""Decode cache (SPEC §9): decoded pairs and their registered / difference channels as uint8 memmaps.

An entry is a folder `<cache_dir>/<kind>_<key>/` of `.npy` arrays (N, C, H, W) plus `meta.json`,
keyed by every file's (path, size, mtime) and H×W (plus max_shift for preprocessed
channels). It is built in a temp folder and renamed into place, so concurrent
processes (AutoML trials, resumes) either see a complete entry or none, and a
second process reuses it without decoding.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from deftpipe.errors import ContractError
from deftpipe.preprocess.registration import pair_channels
from deftpipe.workspace.images import read_stack
from deftpipe.workspace.io import pid_alive
from deftpipe.workspace.paths import ImageLocator

FORMAT = "deftpipe-decode-cache/1"
# Set to a file path to log one line per decode pass (tests count decodes across processes).
DECODE_LOG_ENV = "DEFTPIPE_DECODE_LOG"
_REG_CHUNK = 256
_decoded_images = 0

ProgressFn = Callable[[int, int, str], None]


def decoded_image_count() -> int:
    """Image files decoded by this process so far (cache hits decode nothing)."""
    return _decoded_images


@dataclass(frozen=True)
class DecodedPairs:
    """uint8 test and golden stacks (N, C, H, W), possibly read-only memmaps, and their cache key."""

    test: np.ndarray
    golden: np.ndarray
    key: str
    from_cache: bool


def _stat_key(paths: list[str], *, where: str) -> str:
    parts = []
    for p in paths:
        try:
            st = os.stat(p)
        except FileNotFoundError:
            raise ContractError(f"{where}: image '{p}' not found; check input_path / golden_path / object_name.") from None
        except OSError as exc:
            raise ContractError(f"{where}: image '{p}' cannot be read ({exc.strerror}).") from exc
        parts.append(f"{p}\0{st.st_size}\0{st.st_mtime_ns}")
    return "\1".join(parts)


def pairs_key(rows: pd.DataFrame, locator: ImageLocator, *, grayscale: bool, size: tuple[int, int],
              csv_name: str = "CSV") -> tuple[str, list[list[str]], list[list[str]]]:
    """Cache key over every file's (path, size, mtime) in row order, plus H×W and colour mode."""
    tests, goldens = locator.frame_paths(rows, csv_name=csv_name)
    h = hashlib.sha256(f"{FORMAT}|{size[0]}x{size[1]}|grey={grayscale}|lights={locator.lights}".encode())
    for i in range(len(rows)):
        where = f"{csv_name} line {int(rows.index[i]) + 2}"
        files = [t[i] for t in tests] + [g[i] for g in goldens]
        h.update(_stat_key(files, where=where).encode())
        h.update(b"\2")
    return h.hexdigest()[:32], tests, goldens


def _log_decode(n_images: int, what: str) -> None:
    global _decoded_images
    _decoded_images += n_images
    target = os.environ.get(DECODE_LOG_ENV)
    if target:
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()} {what} {n_images}\n")


@contextlib.contextmanager
def _building(cache_dir: Path, name: str) -> Iterator[tuple[Path, Path]]:
    """Yield (tmp, final): fill tmp; on success it is renamed to final unless another process won the race."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / name
    tmp = cache_dir / f".{name}.{os.getpid()}.tmp"
    for stale in cache_dir.glob(f".{name}.*.tmp"):  # left by a process that died mid-build
        pid = stale.name[len(name) + 2:-len(".tmp")]
        if stale == tmp or (pid.isdigit() and not pid_alive(int(pid))):
            shutil.rmtree(stale, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp, final
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "meta.json").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # someone else finished the same entry first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise



def _entry_ready(folder: Path) -> bool:
    return (folder / "meta.json").exists()


def _open(folder: Path, name: str) -> np.ndarray:
    return np.load(folder / f"{name}.npy", mmap_mode="r")


def _alloc(folder: Path | None, name: str, shape: tuple[int, ...]) -> np.ndarray:
    if folder is None:
        return np.empty(shape, dtype=np.uint8)
    return np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+", dtype=np.uint8, shape=shape)


def _decode_into(test: np.ndarray, golden: np.ndarray, tests: list[list[str]], goldens: list[list[str]],
                 rows: pd.DataFrame, *, grayscale: bool, size: tuple[int, int], csv_name: str,
                 progress: ProgressFn | None) -> None:
    n = len(rows)
    step = max(1, n // 20)
    for i in range(n):
        where = f"{csv_name} line {int(rows.index[i]) + 2}"
        test[i] = read_stack([t[i] for t in tests], grayscale=grayscale, size=size, where=where)
        golden[i] = read_stack([g[i] for g in goldens], grayscale=grayscale, size=size, where=where)
        if progress is not None and ((i + 1) % step == 0 or i + 1 == n):
            progress(i + 1, n, f"decoding {csv_name}")


def decode_pairs(rows: pd.DataFrame, locator: ImageLocator, *, grayscale: bool, size: tuple[int, int],
                 cache_dir: Path | None = None, csv_name: str = "CSV",
                 progress: ProgressFn | None = None) -> DecodedPairs:
    """Test and golden stacks of every row, decoded once and cached under `cache_dir` (None: in memory only).

    Raises:
        ContractError: a missing, corrupt or wrongly sized image (naming the CSV line and file).
    """
    key, tests, goldens = pairs_key(rows, locator, grayscale=grayscale, size=size, csv_name=csv_name)
    n_ch = len(locator.lights) * (1 if grayscale else 3)
    shape = (len(rows), n_ch, size[0], size[1])
    if cache_dir is not None and len(rows) > 0:
        folder = Path(cache_dir) / f"pairs_{key}"
        if _entry_ready(folder):
            return DecodedPairs(_open(folder, "test"), _open(folder, "golden"), key, True)
        with _building(Path(cache_dir), folder.name) as (tmp, final):
            test, golden = _alloc(tmp, "test", shape), _alloc(tmp, "golden", shape)
            _decode_into(test, golden, tests, goldens, rows, grayscale=grayscale, size=size, csv_name=csv_name,
                         progress=progress)
            test.flush()
            golden.flush()
            del test, golden
            meta = {"format": FORMAT, "kind": "pairs", "key": key, "shape": list(shape), "csv": csv_name}
            (tmp / "meta.json").write_text(json.dumps(meta))
        _log_decode(2 * len(rows) * len(locator.lights), f"pairs_{key}")
        return DecodedPairs(_open(final, "test"), _open(final, "golden"), key, False)
    test, golden = _alloc(None, "test", shape), _alloc(None, "golden", shape)
    _decode_into(test, golden, tests, goldens, rows, grayscale=grayscale, size=size, csv_name=csv_name,
                 progress=progress)
    _log_decode(2 * len(rows) * len(locator.lights), f"pairs_{key}")
    return DecodedPairs(test, golden, key, False)


REGISTERED_NAMES: tuple[str, ...] = ("golden_registered", "diff_tolerant", "diff_plain")


def registered_channels(pairs: DecodedPairs, *, max_shift: int, tolerance: int = 1,
                        cache_dir: Path | None = None,
                        progress: ProgressFn | None = None) -> dict[str, np.ndarray]:
    """The registered golden and tolerant / untolerant difference maps of `pairs` (SPEC §8), cached like pairs."""
    key = hashlib.sha256(f"{pairs.key}|shift={max_shift}|tol={tolerance}".encode()).hexdigest()[:32]
    shape = pairs.test.shape
    folder = Path(cache_dir) / f"reg_{key}" if cache_dir is not None and shape[0] > 0 else None
    if folder is not None and _entry_ready(folder):
        return {name: _open(folder, name) for name in REGISTERED_NAMES}

    def fill(target: Path | None) -> dict[str, np.ndarray]:
        out = {name: _alloc(target, name, shape) for name in REGISTERED_NAMES}
        n = shape[0]
        for start in range(0, n, _REG_CHUNK):
            stop = min(n, start + _REG_CHUNK)
            ch = pair_channels(np.asarray(pairs.test[start:stop]), np.asarray(pairs.golden[start:stop]),
                               max_shift=max_shift, tolerance=tolerance)
            for name in REGISTERED_NAMES:
                out[name][start:stop] = ch[name]
            if progress is not None:
                progress(stop, n, "registering golden to test")
        return out

    if folder is None or cache_dir is None:
        return fill(None)
    with _building(Path(cache_dir), folder.name) as (tmp, final):
        arrays = fill(tmp)
        for arr in arrays.values():
            if isinstance(arr, np.memmap):
                arr.flush()
        del arrays
        meta = {"format": FORMAT, "kind": "registered", "key": key, "pairs_key": pairs.key,
                "max_shift": max_shift, "tolerance": tolerance, "shape": list(shape)}
        (tmp / "meta.json").write_text(json.dumps(meta))
    return {name: _open(final, name) for name in REGISTERED_NAMES}
