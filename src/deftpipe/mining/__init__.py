"""k-NN mining of real pool rows similar to the model's weak KPI samples (SPEC §5 "Mining").

    result = run_mining(gaps, pool, embedder=emb, cfg=MiningConfig(layout=layout), history=h, protected=p)
    write_mining_outputs(result, run_dir / "iter1" / "mining_filter", sdg_rows=sdg)
"""
from __future__ import annotations

from deftpipe.mining.embedders import CheckpointEmbedder, Embedder, EmbeddingCache, FrozenEmbedder, l2_normalize
from deftpipe.mining.engine import (
    KNN_SUMMARY_COLUMNS,
    NAME,
    MiningConfig,
    MiningResult,
    load_pool,
    run_mining,
)
from deftpipe.mining.history import MiningHistory
from deftpipe.mining.knn import Neighbours, search, search_by_label
from deftpipe.mining.layout import MiningLayout, filepath_keys, leakage_keys
from deftpipe.mining.outputs import check_new_rows, write_mining_outputs
from deftpipe.mining.protected import ProtectedSets
from deftpipe.mining.rejections import REJECTION_REASONS, classify_pool
from deftpipe.workspace.content_hash import content_hashes

__all__ = [
    "KNN_SUMMARY_COLUMNS",
    "NAME",
    "REJECTION_REASONS",
    "CheckpointEmbedder",
    "Embedder",
    "EmbeddingCache",
    "FrozenEmbedder",
    "MiningConfig",
    "MiningHistory",
    "MiningLayout",
    "MiningResult",
    "Neighbours",
    "ProtectedSets",
    "check_new_rows",
    "classify_pool",
    "content_hashes",
    "filepath_keys",
    "l2_normalize",
    "leakage_keys",
    "load_pool",
    "run_mining",
    "search",
    "search_by_label",
    "write_mining_outputs",
]
