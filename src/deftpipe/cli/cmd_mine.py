"""`deftpipe mine`: run the k-NN mining engine standalone on a gaps parquet (no run state touched)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from deftpipe.cli.app import app, echo, guarded


def mine_standalone(*, workspace: Path, gaps: Path, out: Path, pool: Path | None, checkpoint: Path | None,
                    frozen: bool, top_k: int, min_similarity: float, ann: bool, history: Path | None,
                    update_history: bool, sdg: Path | None, mining_images_root: Path | None,
                    cache_dir: Path | None, all_labels: bool, progress: Any = None) -> str:
    """Build layout, protected sets, history and embedder from the workspace, mine, write, return one line."""
    import pandas as pd

    from deftpipe.errors import ConfigError, ContractError
    from deftpipe.mining import (
        CheckpointEmbedder,
        FrozenEmbedder,
        MiningConfig,
        MiningHistory,
        MiningLayout,
        ProtectedSets,
        load_pool,
        run_mining,
        write_mining_outputs,
    )
    from deftpipe.mining.embedders import Embedder
    from deftpipe.workspace.layout import Workspace
    from deftpipe.workspace.spec import load_spec
    from deftpipe.workspace.tables import read_samples_csv

    if checkpoint is not None and frozen:
        raise ConfigError("pass either --checkpoint CKPT or --frozen, not both.")
    if checkpoint is None and not frozen:
        raise ConfigError("mining needs an embedder: pass --checkpoint CKPT (the model's embeddings) or --frozen "
                          "(the fixed, download-free embedder for large pools).")
    ws = Workspace.at(workspace)
    if not ws.root.is_dir():
        raise ConfigError(f"{ws.root}: workspace folder not found; create one with `deftpipe init {workspace}`.")
    spec = load_spec(ws.spec_path)
    cache = cache_dir or ws.results_root / "cache" / "mining"
    layout = MiningLayout.from_spec(ws.root, spec, mining_images_root=mining_images_root, cache_dir=cache)
    if not gaps.exists():
        raise ContractError(f"{gaps}: gaps parquet not found; pass routing's mining_gaps.parquet or RCA's "
                            "kpi_gaps.parquet.")
    try:
        gap_rows = pd.read_parquet(gaps)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise ContractError(f"{gaps}: not a readable parquet file ({exc}); re-run RCA / routing.") from exc
    pool_rows = load_pool(pool or ws.mining_pool_csv, n_targets=len(gap_rows)) if len(gap_rows) else None
    protected = ProtectedSets.from_csvs(
        validation=ws.validation_csv, kpi=ws.kpi_csv, holdout=ws.holdout_csv, images_dir=layout.targets_dir,
        lights=layout.lights, image_ext=layout.image_ext, workspace_root=ws.root,
    )
    hist = MiningHistory.load(history)
    if ws.training_csv.exists():
        train = read_samples_csv(ws.training_csv, allow_empty=True)
        hist.add_rows(train, kind="training", iter_label="base", first_light=layout.lights[0],
                      image_ext=layout.image_ext, prefix=layout.targets_prefix)
    embedder: Embedder
    if frozen:
        embedder = FrozenEmbedder(workspace_root=ws.root, lights=layout.lights, image_ext=layout.image_ext,
                                  cache_dir=cache, progress=progress)
    elif checkpoint is not None:
        from deftpipe.backends import create_backend

        embedder = CheckpointEmbedder(create_backend("native"), checkpoint, ws.root, cache, progress=progress)
    cfg = MiningConfig(top_k_per_target=top_k, min_similarity=min_similarity, filter_by_label=not all_labels,
                       approximate=ann, layout=layout)
    result = run_mining(gap_rows, pool_rows, embedder=embedder, cfg=cfg, history=hist, protected=protected,
                        progress=progress)
    sdg_rows = read_samples_csv(sdg, allow_empty=True) if sdg is not None else None
    write_mining_outputs(result, out, sdg_rows=sdg_rows)
    if update_history and history is not None and result.n_mined:
        hist.add_rows(result.mined, kind="mined", iter_label="standalone", first_light=layout.lights[0],
                      image_ext=layout.image_ext)  # mined rows are already in workspace-root coordinates
        hist.save(history)
    if result.skipped:
        return f"mining skipped: {result.skip_reason}; outputs in {out}"
    search_kind = "approximate" if result.approximate else "exact"
    warn = f"; {len(result.warnings)} warning(s) in mining_summary.txt" if result.warnings else ""
    return (f"mined {result.n_mined} novel row(s) for {len(result.knn_summary)} label(s) from {result.n_pool_rows} "
            f"pool row(s) ({search_kind} k-NN, top-k {top_k}, min similarity {min_similarity}); "
            f"{result.n_rejected} rejected{warn}; outputs in {out}")


@app.command("mine")
def mine_cmd(
    workspace: Annotated[Path, typer.Option("--workspace", help="Workspace root.")],
    gaps: Annotated[Path, typer.Option("--gaps", help="Gaps parquet (routing's mining subset or RCA's kpi_gaps).")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (mining_filter/ artifacts).")],
    pool: Annotated[Path | None, typer.Option("--pool", help="Pool CSV; default the workspace's mining pool.")] = None,
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", help="Embed with this checkpoint.")] = None,
    frozen: Annotated[bool, typer.Option("--frozen", help="Embed with the fixed frozen embedder.")] = False,
    top_k: Annotated[int, typer.Option("--top-k", help="Neighbours kept per target.")] = 5,
    min_similarity: Annotated[float, typer.Option("--min-similarity", help="Cosine cutoff.")] = 0.9,
    ann: Annotated[bool, typer.Option("--ann", help="Approximate (HNSW) index instead of exact search.")] = False,
    history: Annotated[Path | None, typer.Option("--history", help="Mining history JSON to honour.")] = None,
    update_history: Annotated[bool, typer.Option("--update-history", help="Record mined rows in --history.")] = False,
    sdg: Annotated[Path | None, typer.Option("--sdg", help="SDG rows CSV to carry into mining_pool.csv.")] = None,
    mining_images_root: Annotated[Path | None, typer.Option("--mining-images-root",
                                                            help="Image root of the pool CSV.")] = None,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Embedding cache folder.")] = None,
    all_labels: Annotated[bool, typer.Option("--all-labels", help="Search every label (filter_by_label off).")] = False,
) -> None:
    """Mine real pool rows similar to weak KPI samples; writes mining_pool.csv, knn_summary.csv, embeddings."""
    from deftpipe.ui.progress import progress_reporter

    def body() -> str:
        with progress_reporter("mine") as progress:  # embedding + k-NN: a bar on a terminal, lines otherwise
            return mine_standalone(
                workspace=workspace, gaps=gaps, out=out, pool=pool, checkpoint=checkpoint, frozen=frozen,
                top_k=top_k, min_similarity=min_similarity, ann=ann, history=history, update_history=update_history,
                sdg=sdg, mining_images_root=mining_images_root, cache_dir=cache_dir, all_labels=all_labels,
                progress=progress)

    echo(guarded(body))
