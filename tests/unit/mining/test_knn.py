"""Exact FAISS search agrees with brute-force numpy; shards and batches change nothing; HNSW is close."""
from __future__ import annotations

import numpy as np
import pytest

from deftpipe.mining import l2_normalize, search, search_by_label


def _data(n_pool: int = 600, n_q: int = 25, d: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return l2_normalize(rng.standard_normal((n_pool, d))), l2_normalize(rng.standard_normal((n_q, d)))


def _brute(pool: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = q.astype(np.float64) @ pool.T.astype(np.float64)
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(sims, idx, axis=1)


@pytest.mark.parametrize(("method", "shard_rows", "batch_size"),
                         [("blas", 1_000_000, 4096), ("blas", 1, 3), ("flat_ip", 1_000_000, 4096),
                          ("flat_ip", 77, 4), ("flat_ip", 600, 1)])
def test_exact_search_matches_numpy(method: str, shard_rows: int, batch_size: int) -> None:
    pool, q = _data()
    nb = search(pool, q, 7, shard_rows=shard_rows, batch_size=batch_size, method=method)
    idx, sims = _brute(pool, q, 7)
    np.testing.assert_array_equal(nb.index, idx)
    np.testing.assert_allclose(nb.similarity, sims, atol=1e-5)


@pytest.mark.parametrize("method", ["blas", "flat_ip"])
def test_k_larger_than_pool_pads_with_minus_one(method: str) -> None:
    pool, q = _data(n_pool=3, n_q=2)
    nb = search(pool, q, 5, method=method)
    assert (nb.index[:, 3:] == -1).all() and np.isneginf(nb.similarity[:, 3:]).all()
    assert sorted(nb.index[0, :3]) == [0, 1, 2]


def test_blas_blocks_match_flat_index(monkeypatch: pytest.MonkeyPatch) -> None:
    import deftpipe.mining.knn as knn

    monkeypatch.setattr(knn, "BLOCK_VALUES", 1)  # force many 1024-row pool blocks
    pool, q = _data(n_pool=5000, n_q=9)
    a, b = search(pool, q, 6, method="blas", batch_size=4), search(pool, q, 6, method="flat_ip")
    np.testing.assert_array_equal(a.index, b.index)
    np.testing.assert_allclose(a.similarity, b.similarity, atol=1e-5)


def test_approximate_search_has_high_recall() -> None:
    pool, q = _data(n_pool=2000, n_q=50)
    exact, _ = _brute(pool, q, 5)
    approx = search(pool, q, 5, approximate=True)
    recall = np.mean([len(set(a) & set(e)) / 5 for a, e in zip(approx.index, exact)])
    assert recall >= 0.9


def test_search_by_label_matches_per_label_brute_force() -> None:
    rng = np.random.default_rng(3)
    pool, q = _data(n_pool=300, n_q=12, seed=3)
    pool_labels = rng.choice(np.array(["a", "b", "c"], dtype=object), size=300)
    q_labels = rng.choice(np.array(["a", "b"], dtype=object), size=12)
    hits = search_by_label(q, q_labels, lambda lab: pool[pool_labels == lab], pool_labels, top_k=4,
                           min_similarity=-1.0)
    assert (pool_labels[hits["pool_row"]] == q_labels[hits["target_row"]]).all()
    assert hits["pool_row"].is_unique
    # Every kept (target, row) pair is among that target's true top-4 of its label.
    for t in range(12):
        rows = np.flatnonzero(pool_labels == q_labels[t])
        top = set(rows[np.argsort(-(pool[rows] @ q[t]))[:4]])
        assert set(hits.loc[hits["target_row"] == t, "pool_row"]) <= top


def test_min_similarity_filters_hits() -> None:
    pool, q = _data()
    labels = np.full(len(pool), "x", dtype=object)
    hits = search_by_label(q, np.full(len(q), "x", dtype=object), lambda _l: pool, labels, top_k=5,
                           min_similarity=0.3)
    assert (hits["similarity"] >= 0.3).all()


def test_search_by_label_reports_progress_per_label() -> None:
    pool, q = _data(n_pool=60, n_q=6, seed=5)
    pool_labels = np.array(["a"] * 30 + ["b"] * 30, dtype=object)
    q_labels = np.array(["a", "a", "b", "b", "b", "c"], dtype=object)
    calls: list[tuple[int, int, str]] = []
    search_by_label(q, q_labels, lambda lab: pool[pool_labels == lab], pool_labels, top_k=2, min_similarity=-1.0,
                    progress=lambda d, t, m: calls.append((d, t, m)))
    assert [(d, t) for d, t, _ in calls] == [(2, 6), (5, 6), (6, 6)]
    assert "no pool rows" in calls[-1][2]
