"""The mining stage engine: RCA targets + labelled pool -> novel similar real rows, every rejection counted.

Pure over tables apart from reading image bytes (existence, content hashes) and
the embedder; it writes nothing. Mined rows come back in workspace-root
coordinates with their pool label, `origin="mined"`, `similarity` and the target.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from deftpipe.errors import ConfigError, ContractError, StageFailed
from deftpipe.mining.embedders import Embedder, l2_normalize
from deftpipe.mining.history import MiningHistory
from deftpipe.mining.knn import MAX_EXACT_ROWS, search_by_label
from deftpipe.mining.layout import MiningLayout, filepath_keys, norm_path
from deftpipe.mining.protected import ProtectedSets, missing_files
from deftpipe.mining.rejections import REJECTION_REASONS, classify_pool
from deftpipe.workspace.labels import normalize_labels
from deftpipe.workspace.layout import REQUIRED_COLUMNS
from deftpipe.workspace.tables import read_samples_csv

NAME = "data_mining"
KNN_SUMMARY_COLUMNS: tuple[str, ...] = (
    "label", "candidate_count", "kept_count", "rejected_count", "similarity_threshold",
)
MINED_EXTRA_COLUMNS: tuple[str, ...] = ("origin", "similarity", "target_filepath", "target_label")
GROW_HINT = "raise --top-k / mining_filter.top_k_per_target, lower min_similarity, or grow the mining pool"


@dataclass(frozen=True)
class MiningConfig:
    """Mining knobs (SPEC §4 `mining_filter`) plus where the images are (`layout`, required)."""

    top_k_per_target: int = 5
    min_similarity: float = 0.9
    filter_by_label: bool = True
    approximate: bool = False
    batch_size: int = 4096
    layout: MiningLayout | None = None

    def __post_init__(self) -> None:
        if self.top_k_per_target < 1:
            raise ConfigError(f"mining_filter.top_k_per_target must be at least 1, got {self.top_k_per_target}.")
        if not -1.0 <= self.min_similarity <= 1.0:
            raise ConfigError(f"mining_filter.min_similarity is a cosine in [-1, 1], got {self.min_similarity}.")
        if self.batch_size < 1:
            raise ConfigError(f"mining batch_size must be at least 1, got {self.batch_size}.")


@dataclass(frozen=True)
class MiningResult:
    mined: pd.DataFrame          # novel pool rows, workspace-root coordinates, + MINED_EXTRA_COLUMNS
    knn_summary: pd.DataFrame    # KNN_SUMMARY_COLUMNS, one row per target label
    rejections: pd.DataFrame     # label, reason, count (non-zero only)
    warnings: list[str]
    skipped: bool
    skip_reason: str
    approximate: bool
    targets: pd.DataFrame = field(default_factory=pd.DataFrame)  # target rows searched (+ target_filepath)
    source_embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # targets
    target_embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # mined rows
    n_pool_rows: int = 0
    embedder_key: str = ""
    config: MiningConfig = field(default_factory=MiningConfig)

    @property
    def n_mined(self) -> int:
        return len(self.mined)

    @property
    def n_rejected(self) -> int:
        return int(self.rejections["count"].sum()) if len(self.rejections) else 0


def load_pool(path: Path | None, *, n_targets: int) -> pd.DataFrame:
    """Read the mining pool CSV; missing or row-less with routed targets is a hard stop (SPEC §5)."""
    if path is None or not Path(path).exists():
        raise StageFailed(
            NAME, f"mining pool CSV '{path}' does not exist but {n_targets} gap row(s) were routed to mining.",
            hint="Create augmentation/mining_pool/mining_pool.csv (columns input_path, golden_path, label, "
                 "object_name) or route these labels to synthetic defects only.",
        )
    pool = read_samples_csv(path, name=str(path), allow_empty=True)
    if len(pool) == 0:
        raise StageFailed(NAME, f"mining pool CSV '{path}' has no rows but {n_targets} gap row(s) were routed "
                                "to mining.", hint="Add labelled rows to the pool or drop it from the workspace.")
    return pool


def _empty_result(cfg: MiningConfig, reason: str, *, warnings: list[str] | None = None) -> MiningResult:
    return MiningResult(
        mined=pd.DataFrame(columns=[*REQUIRED_COLUMNS, *MINED_EXTRA_COLUMNS]),
        knn_summary=pd.DataFrame(columns=list(KNN_SUMMARY_COLUMNS)),
        rejections=pd.DataFrame(columns=["label", "reason", "count"]),
        warnings=list(warnings or []), skipped=True, skip_reason=reason, approximate=cfg.approximate, config=cfg,
    )


def _check_columns(frame: pd.DataFrame, what: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ContractError(f"{NAME}: {what} lacks column(s) {missing} (has {sorted(map(str, frame.columns))}); "
                            "re-run the stage that writes it.")


def run_mining(gaps: pd.DataFrame, pool: pd.DataFrame | None, *, embedder: Embedder, cfg: MiningConfig,
               history: MiningHistory, protected: ProtectedSets,
               previous_summary: pd.DataFrame | None = None,
               progress: Callable[[int, int, str], None] | None = None) -> MiningResult:
    """Mine pool rows similar to each gap row, never a protected, missing or already-used one.

    Args:
        gaps: routed mining subset of RCA's gaps (KPI rows, paths relative to the targets' image root).
        pool: the labelled pool (paths relative to `cfg.layout.pool_images_dir`); None = no pool CSV.
        previous_summary: the previous iteration's knn_summary, for the yield-drop warning.
        progress: `(done, total, message)` for the k-NN search (the embedder reports its own).

    Raises:
        StageFailed: routed rows but no pool (or an empty one).
    """
    layout = cfg.layout
    if layout is None:
        raise ConfigError("MiningConfig.layout is not set; build it with MiningLayout.from_spec(workspace_root, "
                          "spec, mining_images_root=...).")
    if len(gaps) == 0:
        return _empty_result(cfg, "no gap rows were routed to mining (routing sent none of the weak labels to the pool)")
    _check_columns(gaps, "the routed mining gaps table")
    if pool is None or len(pool) == 0:
        raise StageFailed(NAME, f"the mining pool is {'missing' if pool is None else 'empty'} but {len(gaps)} gap "
                                "row(s) were routed to mining.", hint="Provide a labelled mining pool CSV.")
    _check_columns(pool, "the mining pool")

    targets = gaps.reset_index(drop=True).copy()
    targets["label"] = normalize_labels(targets["label"])
    if "filepath" in targets.columns:
        targets["target_filepath"] = norm_path(targets["filepath"])
    else:
        targets["target_filepath"] = filepath_keys(targets, first_light=layout.lights[0],
                                                   image_ext=layout.image_ext, prefix=layout.targets_prefix)
    warnings: list[str] = []
    t_missing = missing_files(targets, layout.locator(layout.targets_dir))
    if t_missing.any():
        warnings.append(f"{int(t_missing.sum())} gap row(s) have missing image files and were not searched "
                        f"(first: {targets.loc[t_missing.idxmax(), 'target_filepath']}).")
        targets = targets[~t_missing].reset_index(drop=True)

    pool = pool.reset_index(drop=True).copy()
    pool["label"] = normalize_labels(pool["label"])
    target_labels = list(pd.unique(targets["label"]))
    reason = classify_pool(pool, layout=layout, history=history, protected=protected,
                           labels=set(target_labels) if cfg.filter_by_label else None)

    # One embedding pass over every present pool row (all labels, open or not): one model load and
    # one decode pass per iteration instead of one per label, and a set that is stable across
    # iterations, so a frozen embedder's cache keeps hitting while the history and the targets change.
    emb_groups: dict[str | None, tuple[np.ndarray, np.ndarray]] = {}  # label -> (pool positions, embeddings)
    group_labels: list[str | None] = list(target_labels) if cfg.filter_by_label else [None]
    open_rows = reason == ""
    if open_rows.any():
        present = pool[reason != "missing_file"]
        pool_emb = _embed(embedder, present, layout.pool_dir, what="pool rows")
        positions = present.index.to_numpy()
        present_open = open_rows[positions].to_numpy()
        present_labels = present["label"].to_numpy()
        for label in group_labels:
            keep = present_open if label is None else present_open & (present_labels == label)
            if keep.any():
                emb_groups[label] = (positions[keep], pool_emb[keep])
    source_emb = (_embed(embedder, targets, layout.targets_dir, what="gap rows") if len(targets)
                  else np.zeros((0, 0), np.float32))
    dims = {g[1].shape[1] for g in emb_groups.values()} | ({source_emb.shape[1]} if len(targets) else set())
    if len(dims) > 1:
        raise StageFailed(NAME, f"embedder '{embedder.cache_key}' returned vectors of different sizes {sorted(dims)} "
                                "for pool and gap rows; both must come from the same embedder.")

    # Search space = eligible rows, grouped by label; hit positions map back into `pool` per group.
    hits, pool_pos, mined_emb = _search(targets, source_emb, emb_groups, cfg, warnings, progress)

    mined = pool.loc[pool_pos].reset_index(drop=True)
    prefix = layout.pool_prefix
    mined["input_path"] = norm_path(mined["input_path"], prefix)
    mined["golden_path"] = norm_path(mined["golden_path"], prefix)
    mined["origin"] = "mined"
    mined["similarity"] = hits["similarity"].to_numpy(dtype=np.float64)
    t_rows = hits["target_row"].to_numpy(dtype=np.int64)
    mined["target_filepath"] = targets["target_filepath"].to_numpy()[t_rows]
    mined["target_label"] = targets["label"].to_numpy()[t_rows]

    summary, rejections = _tables(targets, pool, reason, mined, cfg)
    warnings.extend(_label_warnings(summary, pool, previous_summary))
    return MiningResult(
        mined=mined, knn_summary=summary, rejections=rejections, warnings=warnings, skipped=False, skip_reason="",
        approximate=cfg.approximate, targets=targets, source_embeddings=np.asarray(source_emb, np.float32),
        target_embeddings=np.asarray(mined_emb, np.float32), n_pool_rows=len(pool),
        embedder_key=embedder.cache_key, config=cfg,
    )


def _embed(embedder: Embedder, rows: pd.DataFrame, images_dir: Path, *, what: str) -> np.ndarray:
    """Embeddings of `rows`, checked and L2-normalized."""
    emb = np.asarray(embedder.embed(rows, images_dir))
    if emb.ndim != 2 or emb.shape[0] != len(rows):
        raise StageFailed(NAME, f"embedder '{embedder.cache_key}' returned shape {emb.shape} for {len(rows)} {what}; "
                                "expected one vector per row.")
    emb = np.array(emb, dtype=np.float32)  # a private, writable copy
    if not np.isfinite(emb).all():
        raise StageFailed(NAME, f"embedder '{embedder.cache_key}' returned non-finite values for {what}.")
    return l2_normalize(emb)


def _search(targets: pd.DataFrame, source_emb: np.ndarray,
            emb_groups: dict[str | None, tuple[np.ndarray, np.ndarray]], cfg: MiningConfig,
            warnings: list[str], progress: Callable[[int, int, str], None] | None = None,
            ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Hits (pool_row, target_row, similarity, rank), their `pool` positions and embeddings."""
    dim = source_emb.shape[1] if source_emb.ndim == 2 else 0
    if not emb_groups or len(targets) == 0:
        empty = pd.DataFrame({"pool_row": pd.Series(dtype=np.int64), "target_row": pd.Series(dtype=np.int64),
                              "similarity": pd.Series(dtype=np.float64)})
        return empty, np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
    keys = list(emb_groups)
    sizes = [len(emb_groups[k][0]) for k in keys]
    starts = np.cumsum([0, *sizes[:-1]])
    biggest = max(sizes)
    if biggest > MAX_EXACT_ROWS and not cfg.approximate:
        warnings.append(f"{biggest} pool rows in one search exceed the {MAX_EXACT_ROWS} rows exact search is "
                        "sized for; it stays exact but slow — pass --ann for an approximate index.")
    if cfg.filter_by_label:
        target_labels = targets["label"].to_numpy(dtype=object)
        pool_labels = np.concatenate([np.full(n, k, dtype=object) for k, n in zip(keys, sizes)])
    else:
        target_labels = np.full(len(targets), "", dtype=object)
        pool_labels = np.full(sum(sizes), "", dtype=object)
    hits = search_by_label(
        source_emb, target_labels, lambda label: emb_groups[label if cfg.filter_by_label else None][1],
        pool_labels, top_k=cfg.top_k_per_target, min_similarity=cfg.min_similarity,
        filter_by_label=cfg.filter_by_label, approximate=cfg.approximate, batch_size=cfg.batch_size,
        progress=progress,
    )
    rows = hits["pool_row"].to_numpy(dtype=np.int64)
    group = np.searchsorted(starts, rows, side="right") - 1
    pool_pos = np.zeros(len(rows), np.int64)
    mined_emb = np.zeros((len(rows), dim), np.float32)
    for g, key in enumerate(keys):
        sel = group == g
        local = rows[sel] - starts[g]
        pool_pos[sel] = emb_groups[key][0][local]
        mined_emb[sel] = emb_groups[key][1][local]
    return hits, pool_pos, mined_emb


def _tables(targets: pd.DataFrame, pool: pd.DataFrame, reason: pd.Series, mined: pd.DataFrame,
            cfg: MiningConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """knn_summary per label: candidates = its pool rows examined, rejected = those failing a check, kept = mined."""
    labels = list(pd.unique(targets["label"])) if len(targets) else []
    if not cfg.filter_by_label:
        labels += [lab for lab in pd.unique(mined["label"]) if lab not in labels]
    examined = reason != "unsearched"
    rows = []
    for label in labels:
        of_label = (pool["label"] == label) & examined
        rows.append({
            "label": label,
            "candidate_count": int(of_label.sum()),
            "kept_count": int((mined["label"] == label).sum()),
            "rejected_count": int((of_label & (reason != "")).sum()),
            "similarity_threshold": float(cfg.min_similarity),
        })
    summary = pd.DataFrame(rows, columns=list(KNN_SUMMARY_COLUMNS))
    rej = pd.DataFrame({"label": pool["label"], "reason": reason})
    rej = rej[rej["reason"].isin(REJECTION_REASONS)]
    counts = rej.groupby(["label", "reason"], sort=False).size().rename("count").reset_index()
    order = {r: i for i, r in enumerate(REJECTION_REASONS)}
    counts = counts.assign(_o=counts["reason"].map(order)).sort_values(["label", "_o"]).drop(columns="_o")
    return summary, counts.reset_index(drop=True)


def _label_warnings(summary: pd.DataFrame, pool: pd.DataFrame, previous: pd.DataFrame | None) -> list[str]:
    out: list[str] = []
    for row in summary.itertuples(index=False):
        if int((pool["label"] == row.label).sum()) == 0:
            out.append(f"label '{row.label}': the mining pool has no rows of this label; add some or route it to "
                       "synthetic defects.")
        elif row.kept_count == 0:
            out.append(f"label '{row.label}': no novel pool row passed (candidates {row.candidate_count}, rejected "
                       f"{row.rejected_count}); {GROW_HINT}.")
    if previous is not None and len(previous) and {"label", "kept_count"} <= set(previous.columns):
        prev = previous.assign(label=normalize_labels(previous["label"])).set_index("label")["kept_count"]
        for row in summary.itertuples(index=False):
            before = int(prev.get(row.label, 0) or 0)
            if before > 0 and row.kept_count * 2 < before:
                out.append(f"label '{row.label}': yield fell by more than half ({before} -> {row.kept_count} mined "
                           "rows vs the previous iteration); the pool may be running dry for it.")
    return out
