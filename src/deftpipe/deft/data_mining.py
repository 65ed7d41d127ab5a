"""Data-mining stage wiring: k-NN mining of real pool rows for the routed gaps (SPEC §5 Mining).

The history of what was mined or trained on is rebuilt from committed artifacts
every time (never from a file a crash could have left ahead of the state), then
saved beside the state for people to read.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from deftpipe.deft.context import RunContext
from deftpipe.state import StateStore
from deftpipe.state.stages import iteration_label, iteration_number

NAME = "data_mining"


def _history(ctx: RunContext, store: StateStore, label: str, train_rows: pd.DataFrame) -> Any:
    from deftpipe.mining import MiningHistory

    s = ctx.image_settings
    history = MiningHistory(Path(ctx.config["mining_filter"]["history_aware"]["history_file"]))
    history.add_rows(train_rows, kind="training", iter_label=label, first_light=s.lights[0], image_ext=s.image_ext)
    n = iteration_number(label) or 1
    for k in range(1, n):
        prev = store.document["iterations"].get(iteration_label(k), {})
        path = prev.get("mining_pool_csv")
        if path and Path(path).exists():
            rows = pd.read_csv(path, dtype=str, keep_default_na=False)
            if "origin" in rows.columns:
                rows = rows[rows["origin"] == "mined"]
            history.add_rows(rows, kind="mined", iter_label=iteration_label(k), first_light=s.lights[0],
                             image_ext=s.image_ext)
    return history


def _embedder(ctx: RunContext, store: StateStore, cache_dir: Path, progress: Any = None) -> Any:
    from deftpipe.deft.steps import _backend, best_so_far
    from deftpipe.mining import CheckpointEmbedder, FrozenEmbedder

    s = ctx.image_settings
    if str(ctx.config.get("embedder", "checkpoint")) == "frozen":
        return FrozenEmbedder(workspace_root=ctx.workspace_root, lights=s.lights, image_ext=s.image_ext,
                              cache_dir=cache_dir, seed=ctx.seed, progress=progress)
    best = best_so_far(ctx, store.document)
    ckpt = Path(store.document["iterations"][best]["best_ckpt_path"])
    return CheckpointEmbedder(_backend(ctx), ckpt, ctx.workspace_root, cache_dir, device=ctx.device,
                              progress=progress)


def run_data_mining(ctx: RunContext, store: StateStore, label: str, progress: Any) -> Any:
    from deftpipe.deft.steps import StepResult, _fresh, _iter_record, _pool_rows, current_training_csv
    from deftpipe.mining import MiningConfig, MiningLayout, ProtectedSets, run_mining, write_mining_outputs
    from deftpipe.workspace.tables import read_samples_csv

    rec = _iter_record(store, label)
    iter_dir = ctx.iter_dir(label)
    out_dir = _fresh(iter_dir / "mining_filter")
    gaps = pd.read_parquet(rec["routing_mining_parquet"])
    sdg_path = iter_dir / "sdg" / "sdg_rows.csv"
    sdg_rows = pd.read_csv(sdg_path, dtype=str, keep_default_na=False) if not rec.get("sdg_skipped") and \
        sdg_path.exists() else None
    s = ctx.image_settings
    images_dir = Path(ctx.config["images_dir"])
    pool_root = Path(ctx.config.get("mining_images_root") or images_dir)
    layout = MiningLayout(workspace_root=ctx.workspace_root, lights=s.lights, image_ext=s.image_ext,
                          pool_images_dir=pool_root, targets_images_dir=ctx.workspace_root,
                          cache_dir=ctx.cache_dir / "embeddings")
    mf = ctx.config["mining_filter"]
    cfg = MiningConfig(top_k_per_target=int(mf["top_k_per_target"]), min_similarity=float(mf["min_similarity"]),
                       filter_by_label=bool(mf.get("filter_by_label", True)), layout=layout)
    train_rows = read_samples_csv(current_training_csv(ctx, store, label))
    history = _history(ctx, store, label, train_rows)
    protected = ProtectedSets.from_csvs(
        validation=Path(ctx.config["validation_csv"]), kpi=Path(ctx.config["kpi_test_csv"]),
        holdout=Path(ctx.config["holdout_csv"]) if ctx.config.get("holdout_csv") else None,
        images_dir=images_dir, lights=s.lights, image_ext=s.image_ext, workspace_root=ctx.workspace_root)
    pool = _pool_rows(ctx)
    n = iteration_number(label) or 1
    previous_summary = None
    if n > 1:
        prev_summary = iter_dir.parent / iteration_label(n - 1) / "mining_filter" / "knn_summary.csv"
        if prev_summary.exists():
            previous_summary = pd.read_csv(prev_summary)
    embedder = _embedder(ctx, store, ctx.cache_dir / "embeddings", progress) if len(gaps) else None
    result = run_mining(gaps, pool, embedder=embedder, cfg=cfg, history=history, protected=protected,
                        previous_summary=previous_summary, progress=progress)
    if result.skipped and (sdg_rows is None or sdg_rows.empty):
        # The engine leaves a skip alone (routing usually guarantees SDG rows), but SDG can skip too
        # (num_sdg = 0, no PASS pair to paint on): then the merge would retrain on an unchanged dataset.
        from deftpipe.errors import StageFailed

        raise StageFailed(NAME, f"no new training rows for {label}: mining skipped ({result.skip_reason}) and "
                                "synthetic defects were skipped too; retraining on an unchanged dataset is pointless.",
                          hint="Raise --num-sdg, raise --mining-top-k or lower --min-similarity, or grow the mining "
                               "pool with rows of the RCA target labels; then start a new run.")
    paths = write_mining_outputs(result, out_dir, sdg_rows=sdg_rows)
    history.add_rows(result.mined, kind="mined", iter_label=label, first_light=s.lights[0], image_ext=s.image_ext)
    history.save()
    n_sdg = 0 if sdg_rows is None else len(sdg_rows)
    if result.skipped:
        summary = f"skipped: {result.skip_reason}; {n_sdg} SDG row(s) carried to the merge"
    else:
        kind = "approximate" if result.approximate else "exact"
        summary = (f"{result.n_mined} novel row(s) mined ({kind} k-NN), {result.n_rejected} rejected; "
                   f"{n_sdg} SDG row(s) carried")
    return StepResult(summary=summary,
                      artifacts={"mining_pool_csv": paths["mining_pool_csv"], "mining_summary": paths["mining_summary"]},
                      fields={"mining_mined_count": int(result.n_mined), "data_mining_skipped": bool(result.skipped)})
