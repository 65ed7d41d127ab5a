"""Embedders: sample rows -> L2-normalized float32 vectors, the k-NN space of mining.

`CheckpointEmbedder` (default) asks the model backend's `embed`; `FrozenEmbedder`
is a fixed, download-free feature map for large pools. Both cache their output
as .npy per (embedder `cache_key`, digest of the rows and their image root).
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from deftpipe.errors import ContractError, StageFailed
from deftpipe.workspace.io import sha256_file, write_atomic, write_csv_atomic

if TYPE_CHECKING:
    from deftpipe.backends.base import ModelBackend, ProgressFn

STAGE = "data_mining"


@runtime_checkable
class Embedder(Protocol):
    """Maps rows (paths relative to `images_dir`) to an (N, D) float32 array, one L2-normalized row each."""

    @property
    def cache_key(self) -> str: ...

    def embed(self, rows: pd.DataFrame, images_dir: Path) -> np.ndarray: ...


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero), float32 and C-contiguous for FAISS."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))[:, None]  # no (N, D) temporary, unlike linalg.norm
    np.divide(x, np.maximum(norms, 1e-12), out=x)
    return x


def rows_digest(rows: pd.DataFrame, images_dir: Path) -> str:
    """Digest of what determines the embeddings of `rows`: image root, paths, labels, order."""
    cols = [c for c in ("input_path", "golden_path", "label", "object_name") if c in rows.columns]
    h = hashlib.sha256(str(Path(images_dir).resolve()).encode())
    h.update(rows[cols].to_csv(index=False).encode())
    return h.hexdigest()[:32]


class EmbeddingCache:
    """`.npy` files under `<cache_dir>/embeddings/<cache_key>/<rows digest>.npy`, written atomically."""

    def __init__(self, cache_dir: Path | None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.hits = 0
        self.misses = 0

    def _path(self, cache_key: str, digest: str) -> Path | None:
        if self.cache_dir is None:
            return None
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", cache_key)[:80]
        return self.cache_dir / "embeddings" / slug / f"{digest}.npy"

    def get(self, cache_key: str, rows: pd.DataFrame, images_dir: Path) -> np.ndarray | None:
        path = self._path(cache_key, rows_digest(rows, images_dir))
        if path is None or not path.exists():
            return None
        try:
            arr = np.load(path, mmap_mode="r")
        except (OSError, ValueError):
            return None  # a damaged cache file is recomputed, never trusted
        if arr.ndim != 2 or arr.shape[0] != len(rows) or arr.dtype != np.float32:
            return None
        self.hits += 1
        return arr

    def put(self, cache_key: str, rows: pd.DataFrame, images_dir: Path, emb: np.ndarray) -> None:
        path = self._path(cache_key, rows_digest(rows, images_dir))
        self.misses += 1
        if path is None:
            return
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(emb, dtype=np.float32))
        write_atomic(path, buf.getvalue())


def _checked(emb: np.ndarray, n_rows: int, *, who: str) -> np.ndarray:
    emb = np.asarray(emb)
    if emb.ndim != 2 or emb.shape[0] != n_rows:
        raise StageFailed(STAGE, f"{who} returned embeddings of shape {emb.shape} for {n_rows} rows; "
                                 "expected (rows, dim). Check the backend's embed().")
    if not np.isfinite(emb).all():
        raise StageFailed(STAGE, f"{who} returned non-finite embeddings; check the checkpoint.")
    return l2_normalize(emb)


class CheckpointEmbedder:
    """Embeddings from the current checkpoint through `backend.embed(EmbedRequest)` (the default embedder).

    Example:
        emb = CheckpointEmbedder(create_backend("native"), ckpt, ws.root, run_dir / "cache")
    """

    def __init__(self, backend: ModelBackend, checkpoint: Path, workspace_root: Path, cache_dir: Path | None,
                 *, device: str = "auto", batch_size: int = 256, progress: ProgressFn | None = None) -> None:
        self.backend = backend
        self.progress = progress  # embedding a large pool is one of the long steps: show it
        self.checkpoint = Path(checkpoint)
        self.workspace_root = Path(workspace_root)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.device = device
        self.batch_size = batch_size
        self._cache = EmbeddingCache(self.cache_dir)
        self._digest: str | None = None

    @property
    def cache_key(self) -> str:
        if self._digest is None:
            if not self.checkpoint.is_file():
                raise StageFailed(STAGE, f"checkpoint '{self.checkpoint}' not found; mining embeds with the "
                                         "current checkpoint, pass an existing one (or --frozen).")
            self._digest = sha256_file(self.checkpoint)[:24]
        return f"ckpt-{getattr(self.backend, 'name', 'backend')}-{self._digest}"

    @property
    def cache_stats(self) -> tuple[int, int]:
        return self._cache.hits, self._cache.misses

    def embed(self, rows: pd.DataFrame, images_dir: Path) -> np.ndarray:
        from deftpipe.backends.base import EmbedRequest

        key = self.cache_key
        if len(rows) == 0:
            return np.zeros((0, 0), np.float32)
        cached = self._cache.get(key, rows, images_dir)
        if cached is not None:
            return cached
        tmp_root = self.cache_dir if self.cache_dir is not None else Path(tempfile.gettempdir())
        tmp_root.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="mining_rows_", suffix=".csv", dir=tmp_root)
        os.close(fd)
        csv = Path(name)
        try:
            write_csv_atomic(csv, rows.reset_index(drop=True))
            request = EmbedRequest(checkpoint=self.checkpoint, csv=csv, images_dir=Path(images_dir),
                                   workspace_root=self.workspace_root, cache_dir=self.cache_dir,
                                   device=self.device, batch_size=self.batch_size, progress=self.progress)
            emb = _checked(self.backend.embed(request), len(rows), who=f"backend '{self.backend.name}'")
        finally:
            csv.unlink(missing_ok=True)
        self._cache.put(key, rows, images_dir, emb)
        return emb


class FrozenEmbedder:
    """A fixed feature map of the registered pair, randomly projected (seeded) to `dim` dimensions.

    Per light, on pairs resized to `size`x`size` and registered (SPEC §8): the tolerant difference
    map and the test image pooled to 8x8, and intensity histograms of both. Each block is centred
    and unit-normed so none dominates, then a Gaussian projection fixed by `seed` maps the
    concatenation to `dim`. No weights, no downloads: the same rows give the same vectors anywhere.
    """

    VERSION = 1

    def __init__(self, *, workspace_root: Path, lights: Sequence[str], image_ext: str,
                 cache_dir: Path | None = None, dim: int = 128, size: int = 32, seed: int = 0,
                 chunk_rows: int = 2048, progress: ProgressFn | None = None) -> None:
        if size % 8:
            raise ValueError(f"FrozenEmbedder size must be a multiple of 8, got {size}")
        self.workspace_root = Path(workspace_root)
        self.lights = tuple(lights)
        self.image_ext = image_ext
        self.dim = dim
        self.size = size
        self.seed = seed
        self.chunk_rows = chunk_rows
        self.progress = progress
        self._cache = EmbeddingCache(cache_dir)
        self._projection: np.ndarray | None = None

    @property
    def cache_key(self) -> str:
        return f"frozen-v{self.VERSION}-d{self.dim}-s{self.size}-seed{self.seed}-{'+'.join(self.lights)}"

    @property
    def cache_stats(self) -> tuple[int, int]:
        return self._cache.hits, self._cache.misses

    def _project(self, n_in: int) -> np.ndarray:
        if self._projection is None or self._projection.shape[0] != n_in:
            rng = np.random.default_rng(self.seed)
            self._projection = (rng.standard_normal((n_in, self.dim)) / np.sqrt(self.dim)).astype(np.float32)
        return self._projection

    def embed(self, rows: pd.DataFrame, images_dir: Path) -> np.ndarray:
        if len(rows) == 0:
            return np.zeros((0, self.dim), np.float32)
        cached = self._cache.get(self.cache_key, rows, images_dir)
        if cached is not None:
            return cached
        from deftpipe.workspace.paths import ImageLocator

        locator = ImageLocator(Path(images_dir), self.workspace_root, self.lights, self.image_ext)
        tests, goldens = locator.frame_paths(rows, csv_name="mining rows")
        out = np.empty((len(rows), self.dim), np.float32)
        for start in range(0, len(rows), self.chunk_rows):
            stop = min(start + self.chunk_rows, len(rows))
            t = np.stack([self._read(tests, i, rows) for i in range(start, stop)])
            g = np.stack([self._read(goldens, i, rows) for i in range(start, stop)])
            feats = self.features(t, g)
            out[start:stop] = feats @ self._project(feats.shape[1])
            if self.progress is not None:
                self.progress(stop, len(rows), "embedding (frozen)")
        emb = l2_normalize(out)
        self._cache.put(self.cache_key, rows, images_dir, emb)
        return emb

    def _read(self, paths: list[list[str]], i: int, rows: pd.DataFrame) -> np.ndarray:
        import cv2

        from deftpipe.workspace.images import read_image

        planes = []
        for per_light in paths:
            img = read_image(per_light[i], grayscale=True, where=f"mining rows line {int(rows.index[i]) + 2}")
            if img.shape != (self.size, self.size):
                img = cv2.resize(img, (self.size, self.size), interpolation=cv2.INTER_AREA)
            planes.append(img)
        return np.stack(planes)

    def features(self, test: np.ndarray, golden: np.ndarray) -> np.ndarray:
        """(N, C, S, S) uint8 pairs -> (N, F) float32 block features before projection."""
        from deftpipe.preprocess.registration import pair_channels

        ch = pair_channels(test, golden, max_shift=2, tolerance=1)
        diff = ch["diff_tolerant"].astype(np.float32) / 255.0
        tst = test.astype(np.float32) / 255.0
        n, c, s, _ = tst.shape
        f = s // 8

        def pool(x: np.ndarray) -> np.ndarray:
            return x.reshape(n, c, 8, f, 8, f).mean(axis=(3, 5)).reshape(n, -1)

        diff_map = np.sqrt(pool(diff))                     # sqrt lifts faint defects
        test_map = pool(tst)
        test_map -= test_map.mean(axis=1, keepdims=True)   # structure, not brightness
        hist_t = _histograms(tst, np.linspace(0.0, 1.0, 17)) - 1.0 / 16
        hist_d = _histograms(diff, np.array([0, 2, 4, 8, 16, 32, 64, 128, 256]) / 255.0)
        hist_d[:, ::8] -= 1.0  # most pixels have no difference: centre the first bin
        weights = (1.0, 0.7, 0.5, 0.5)
        blocks = [w * l2_normalize(b) for w, b in zip(weights, (diff_map, test_map, hist_t, hist_d))]
        return np.concatenate(blocks, axis=1).astype(np.float32)


def _histograms(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(N, C, H, W) values -> (N, C*bins) per-plane histograms as fractions of the plane's pixels."""
    n, c = x.shape[:2]
    bins = len(edges) - 1
    flat = x.reshape(n * c, -1)
    idx = np.searchsorted(edges[1:-1], flat, side="right") + (np.arange(n * c) * bins)[:, None]
    counts = np.bincount(idx.ravel(), minlength=n * c * bins).reshape(n, c * bins)
    return counts.astype(np.float32) / flat.shape[1]
