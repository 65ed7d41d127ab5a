"""Writes the `mining_filter/` artifacts of SPEC §4–5 from a MiningResult, each file atomically.

`mining_pool.csv` = SDG rows + novel mined rows (workspace-root coordinates, `origin`
column); a result with neither is a hard stop, so no retrain ever runs on an unchanged dataset.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from deftpipe.errors import ContractError, StageFailed
from deftpipe.mining.engine import GROW_HINT, KNN_SUMMARY_COLUMNS, NAME, MiningResult
from deftpipe.mining.rejections import REJECTION_REASONS
from deftpipe.workspace.io import write_csv_atomic, write_parquet_atomic, write_text_atomic
from deftpipe.workspace.layout import REQUIRED_COLUMNS

MINING_POOL_CSV = "mining_pool.csv"
KNN_SUMMARY_CSV = "knn_summary.csv"
REJECTIONS_CSV = "rejections.csv"
SOURCE_EMBEDDINGS = "source_embeddings.parquet"
TARGET_EMBEDDINGS = "target_embeddings.parquet"
SUMMARY_TXT = "mining_summary.txt"


def check_new_rows(result: MiningResult, sdg_rows: pd.DataFrame | None) -> None:
    """Hard stop when mining ran but the iteration would add nothing: zero novel mined rows and no SDG rows.

    A documented skip (no routed rows) is not a hard stop here: routing already guarantees that
    SDG or mining had rows, and a standalone `deftpipe mine` on empty gaps just reports the skip.
    """
    n_sdg = 0 if sdg_rows is None else len(sdg_rows)
    if result.n_mined == 0 and n_sdg == 0 and not result.skipped:
        why = (f"{len(result.targets)} target(s) found no novel pool row with similarity >= "
               f"{result.config.min_similarity} ({result.n_rejected} pool row(s) rejected)")
        raise StageFailed(NAME, f"zero novel mined rows and no synthetic rows: {why}; retraining on an unchanged "
                                "dataset is pointless.", hint=f"To continue, {GROW_HINT}.")


def _embedding_frame(ids: pd.DataFrame, emb: np.ndarray) -> pd.DataFrame:
    frame = ids.reset_index(drop=True).copy()
    if len(frame) != len(emb):
        raise ContractError(f"{NAME}: {len(emb)} embeddings for {len(frame)} rows; they must be row-aligned.")
    frame["embedding"] = list(np.asarray(emb, dtype=np.float32)) if len(emb) else pd.Series([], dtype=object)
    return frame


def _sdg_rows(sdg_rows: pd.DataFrame | None) -> pd.DataFrame:
    if sdg_rows is None or len(sdg_rows) == 0:
        return pd.DataFrame(columns=[*REQUIRED_COLUMNS, "origin"])
    missing = [c for c in REQUIRED_COLUMNS if c not in sdg_rows.columns]
    if missing:
        raise ContractError(f"{NAME}: SDG rows lack column(s) {missing}; re-run the sdg stage.")
    rows = sdg_rows.copy()
    rows["origin"] = "sdg"
    return rows


def summary_text(result: MiningResult, *, n_sdg: int) -> str:
    cfg = result.config
    index = ("approximate (faiss HNSW, inner product)" if result.approximate
             else "exact flat inner product (sgemm + faiss top-k heaps; same neighbours as faiss IndexFlatIP)")
    lines = [
        "DEFT data mining summary",
        "========================",
    ]
    if result.skipped:
        lines += [f"skipped: {result.skip_reason}", f"synthetic rows carried: {n_sdg}"]
    else:
        lines += [
            f"embedder: {result.embedder_key}",
            f"search: {index}, cosine on L2-normalized embeddings, filter_by_label={cfg.filter_by_label}",
            f"top_k_per_target: {cfg.top_k_per_target}   min_similarity: {cfg.min_similarity}",
            f"targets: {len(result.targets)}   pool rows: {result.n_pool_rows}",
            f"novel mined rows: {result.n_mined}   rejected pool rows: {result.n_rejected}   synthetic rows: {n_sdg}",
            f"mining_pool.csv rows: {result.n_mined + n_sdg}",
            "",
            "per label (candidates = pool rows of the label examined):",
            f"  {'label':<20} {'candidates':>10} {'kept':>6} {'rejected':>9}",
        ]
        for row in result.knn_summary.itertuples(index=False):
            lines.append(f"  {row.label!s:<20} {row.candidate_count:>10} {row.kept_count:>6} {row.rejected_count:>9}")
        lines += ["", "rejections (label, reason, rows):"]
        if len(result.rejections):
            for row in result.rejections.itertuples(index=False):
                lines.append(f"  {row.label!s:<20} {row.reason:<16} {row.count}")
        else:
            lines.append("  none")
        lines.append(f"  reasons: {', '.join(REJECTION_REASONS)}")
        if result.n_mined:
            sims = result.mined["similarity"]
            lines += ["", f"similarity of mined rows: min {sims.min():.4f}  median {sims.median():.4f}  "
                          f"max {sims.max():.4f}"]
    lines += ["", "warnings:"]
    lines += [f"  - {w}" for w in result.warnings] or ["  none"]
    return "\n".join(lines) + "\n"


def write_mining_outputs(result: MiningResult, out_dir: Path, *, sdg_rows: pd.DataFrame | None = None,
                         source_emb: np.ndarray | None = None, target_emb: np.ndarray | None = None) -> dict[str, Path]:
    """Write mining_pool.csv, knn_summary.csv, rejections.csv, the two embedding parquets and mining_summary.txt.

    `source_emb` / `target_emb` default to the result's target / mined-row embeddings.

    Raises:
        StageFailed: zero novel rows and no SDG rows (nothing written then).
    """
    check_new_rows(result, sdg_rows)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sdg = _sdg_rows(sdg_rows)
    combined = pd.concat([sdg, result.mined], ignore_index=True, sort=False) if len(result.mined) else sdg
    first = [*REQUIRED_COLUMNS]
    combined = combined[first + [c for c in combined.columns if c not in first]]
    src = result.source_embeddings if source_emb is None else source_emb
    tgt = result.target_embeddings if target_emb is None else target_emb
    t_ids = result.targets[[c for c in ("target_filepath", *REQUIRED_COLUMNS) if c in result.targets.columns]] \
        if len(result.targets) else pd.DataFrame(columns=["target_filepath", *REQUIRED_COLUMNS])
    m_ids = result.mined[[*REQUIRED_COLUMNS, "similarity", "target_filepath"]] if len(result.mined) else \
        pd.DataFrame(columns=[*REQUIRED_COLUMNS, "similarity", "target_filepath"])
    paths = {
        "mining_pool_csv": out_dir / MINING_POOL_CSV,
        "knn_summary_csv": out_dir / KNN_SUMMARY_CSV,
        "rejections_csv": out_dir / REJECTIONS_CSV,
        "source_embeddings": out_dir / SOURCE_EMBEDDINGS,
        "target_embeddings": out_dir / TARGET_EMBEDDINGS,
        "mining_summary": out_dir / SUMMARY_TXT,
    }
    write_csv_atomic(paths["mining_pool_csv"], combined)
    write_csv_atomic(paths["knn_summary_csv"], result.knn_summary[list(KNN_SUMMARY_COLUMNS)])
    write_csv_atomic(paths["rejections_csv"], result.rejections)
    write_parquet_atomic(paths["source_embeddings"], _embedding_frame(t_ids, src if len(t_ids) else np.zeros((0, 0))))
    write_parquet_atomic(paths["target_embeddings"], _embedding_frame(m_ids, tgt if len(m_ids) else np.zeros((0, 0))))
    write_text_atomic(paths["mining_summary"], summary_text(result, n_sdg=len(sdg)))
    return paths
