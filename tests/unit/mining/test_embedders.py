"""FrozenEmbedder determinism and sense; checkpoint embedder through a fake backend; cache reuse."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deftpipe.backends.base import EmbedRequest
from deftpipe.errors import StageFailed
from deftpipe.mining import CheckpointEmbedder, Embedder, FrozenEmbedder, MiningHistory, run_mining
from tests.unit.mining.conftest import DIM, MiningWs, frame


class FakeBackend:
    """Deterministic embed(): a vector per object_name; counts calls and rows."""

    name = "fake"

    def __init__(self) -> None:
        self.requests: list[EmbedRequest] = []

    def embed(self, request: EmbedRequest) -> np.ndarray:
        self.requests.append(request)
        rows = pd.read_csv(request.csv, dtype=str)
        out = []
        for name in rows["object_name"]:
            rng = np.random.default_rng(sum(map(ord, name)) % 7)  # few distinct vectors -> real neighbours
            out.append(rng.standard_normal(DIM) * 3.0)
        return np.stack(out)

    def train(self, request: object) -> object:  # pragma: no cover - protocol filler
        raise NotImplementedError

    def infer(self, request: object) -> object:  # pragma: no cover - protocol filler
        raise NotImplementedError


def _frozen(mws: MiningWs, cache: Path | None = None) -> FrozenEmbedder:
    return FrozenEmbedder(workspace_root=mws.root, lights=("LightA", "LightB"), image_ext=".png", cache_dir=cache)


def test_frozen_embedder_is_deterministic_and_discriminative(mws: MiningWs) -> None:
    rows = frame([mws.row("pool", "D1@1", "missing", seed=1), mws.row("pool", "D2@1", "missing", seed=2),
                  mws.row("pool", "P1@1", "PASS", seed=3), mws.row("pool", "P2@1", "PASS", seed=4)])
    a = _frozen(mws).embed(rows, mws.images)
    b = _frozen(mws).embed(rows, mws.images)
    assert isinstance(_frozen(mws), Embedder)
    assert a.shape == (4, 128) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    sims = a @ a.T
    assert sims[0, 1] > sims[0, 2] and sims[2, 3] > sims[0, 2]  # defects closer to defects, PASS to PASS


def test_frozen_embedder_cache_is_reused(mws: MiningWs, tmp_path: Path) -> None:
    rows = frame([mws.row("pool", f"D{i}@1", "missing", seed=i) for i in range(3)])
    emb = _frozen(mws, tmp_path / "cache")
    first = np.array(emb.embed(rows, mws.images))
    again = _frozen(mws, tmp_path / "cache")
    second = np.array(again.embed(rows, mws.images))
    np.testing.assert_array_equal(first, second)
    assert emb.cache_stats == (0, 1) and again.cache_stats == (1, 0)
    assert len(list((tmp_path / "cache" / "embeddings").rglob("*.npy"))) == 1
    # Other rows -> another cache entry, not a stale hit.
    again.embed(rows.iloc[:2], mws.images)
    assert again.cache_stats == (1, 1)


def test_checkpoint_embedder_calls_backend_once_then_caches(mws: MiningWs, tmp_path: Path) -> None:
    ckpt = tmp_path / "model_epoch_001_step_010.pth"
    ckpt.write_bytes(b"weights-v1")
    gaps = frame([mws.row("kpi", "K1@1", "missing", seed=1)])
    pool = frame([mws.row("pool", f"M{i}@1", "missing", seed=10 + i) for i in range(8)])
    backend = FakeBackend()

    def mine() -> int:
        emb = CheckpointEmbedder(backend, ckpt, mws.root, tmp_path / "cache")
        res = run_mining(gaps, pool, embedder=emb, cfg=mws.cfg(min_similarity=-1.0, top_k_per_target=3),
                         history=MiningHistory(), protected=mws.protected())
        return len(res.mined)

    assert mine() == 3
    assert len(backend.requests) == 2  # pool, then targets
    req = backend.requests[0]
    assert req.checkpoint == ckpt and req.images_dir == mws.images and req.workspace_root == mws.root
    assert mine() == 3
    assert len(backend.requests) == 2  # second run: both from the cache
    ckpt.write_bytes(b"weights-v2")  # a new checkpoint is a new cache key
    assert mine() == 3
    assert len(backend.requests) == 4


def test_checkpoint_embedder_rejects_bad_shapes(mws: MiningWs, tmp_path: Path) -> None:
    ckpt = tmp_path / "c.pth"
    ckpt.write_bytes(b"x")
    backend = FakeBackend()
    backend.embed = lambda request: np.zeros((1, 4))  # type: ignore[method-assign]
    rows = frame([mws.row("pool", "A@1", "missing"), mws.row("pool", "B@1", "missing")])
    with pytest.raises(StageFailed, match=r"returned embeddings of shape \(1, 4\) for 2 rows"):
        CheckpointEmbedder(backend, ckpt, mws.root, None).embed(rows, mws.images)
    with pytest.raises(StageFailed, match="checkpoint '.*missing.pth' not found"):
        CheckpointEmbedder(backend, tmp_path / "missing.pth", mws.root, None).embed(rows, mws.images)


def test_frozen_embedder_mines_end_to_end(mws: MiningWs) -> None:
    gaps = frame([mws.row("kpi", "K1@1", "missing", seed=1)])
    pool = frame([mws.row("pool", f"M{i}@1", "missing", seed=10 + i) for i in range(4)]
                 + [mws.row("pool", "P0@1", "PASS", seed=20)])
    res = run_mining(gaps, pool, embedder=_frozen(mws), cfg=mws.cfg(min_similarity=0.5, top_k_per_target=2),
                     history=MiningHistory(), protected=mws.protected())
    assert len(res.mined) == 2 and set(res.mined["label"]) == {"missing"}
    assert res.source_embeddings.shape == (1, 128) and res.target_embeddings.shape == (2, 128)
    assert res.embedder_key.startswith("frozen-v1")


def test_frozen_embedder_reports_progress_per_chunk(mws: MiningWs) -> None:
    rows = frame([mws.row("pool", f"D{i}@1", "missing", seed=i) for i in range(5)])
    calls: list[tuple[int, int, str]] = []
    FrozenEmbedder(workspace_root=mws.root, lights=("LightA", "LightB"), image_ext=".png", chunk_rows=2,
                   progress=lambda d, t, m: calls.append((d, t, m))).embed(rows, mws.images)
    assert [(d, t) for d, t, _ in calls] == [(2, 5), (4, 5), (5, 5)]
