"""`deftpipe sdg`: run the synthetic-defect engine standalone on a routed gaps parquet (no torch import)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

from deftpipe.cli.app import app, echo, guarded


def run_sdg_command(workspace: Path, gaps: Path, iter_dir: Path, *, train_csv: Path | None = None,
                    train_images_dir: Path | None = None, num_sdg: int = 20, sdg_base: str = "test", seed: int = 0,
                    generic_fallback: bool = True, progress: Any = None) -> Any:
    """Resolve the CLI arguments against the workspace, run the engine, return its SdgResult."""
    import pandas as pd

    from deftpipe.errors import ConfigError, ContractError
    from deftpipe.sdg import SdgConfig, run_sdg
    from deftpipe.workspace.layout import Workspace
    from deftpipe.workspace.spec import ImageSettings, load_spec
    from deftpipe.workspace.tables import read_samples_csv

    ws = Workspace.at(workspace)
    if not ws.root.is_dir():
        raise ConfigError(f"--workspace '{workspace}' is not a folder; pass the workspace root.")
    settings = ImageSettings.from_spec(load_spec(ws.spec_path))
    iter_path = Path(iter_dir).expanduser().resolve()
    m = re.fullmatch(r"iter(\d+)", iter_path.name)
    if not m or int(m.group(1)) < 1:
        raise ConfigError(f"--iter-dir '{iter_dir}' must be an iteration folder named iter<N> (N >= 1), "
                          "e.g. results/run_20250101_000000/iter1.")
    try:
        run_rel = iter_path.parent.relative_to(ws.root).as_posix()
    except ValueError:
        raise ConfigError(f"--iter-dir '{iter_dir}' is outside the workspace '{ws.root}'; "
                          "SDG rows must point inside the workspace.") from None
    gaps_path = Path(gaps)
    if not gaps_path.is_file():
        raise ContractError(f"--gaps '{gaps}' not found; pass the routing stage's sdg_gaps.parquet "
                            "(or RCA's kpi_gaps.parquet).")
    try:
        gaps_df = pd.read_parquet(gaps_path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise ContractError(f"--gaps '{gaps}' is not a readable parquet file ({type(exc).__name__}: {exc}).") from exc
    csv_path = Path(train_csv).expanduser().resolve() if train_csv else ws.training_csv
    if train_images_dir is None:
        # Loop CSVs (under results/) are workspace-root relative, base CSVs images/-relative (SPEC §4).
        inside_results = csv_path.is_relative_to(ws.results_root)
        images_dir = ws.root if inside_results else ws.images_dir
    else:
        images_dir = Path(train_images_dir).expanduser().resolve()
    train_rows = read_samples_csv(csv_path)
    cfg = SdgConfig(num_sdg=num_sdg, base=sdg_base, seed=seed, iteration=int(m.group(1)),
                    generic_fallback=generic_fallback)
    return run_sdg(gaps_df, train_rows, workspace_root=ws.root, train_images_dir=images_dir,
                   lights=settings.lights, image_ext=settings.image_ext, iter_dir=iter_path, run_rel=run_rel, cfg=cfg,
                   progress=progress)


def summary_line(result: Any, iter_dir: Path) -> str:
    if result.skipped:
        return f"SDG skipped: {result.skip_reason}."
    counts = result.rows["label"].value_counts()
    per_label = ", ".join(f"{label}={int(n)}" for label, n in sorted(counts.items()))
    n_generic = int(result.records["generic"].sum()) if len(result.records) else 0
    generic = f", {n_generic} generic cutpaste" if n_generic else ""
    return f"SDG wrote {len(result.rows)} rows ({per_label}{generic}) -> {Path(iter_dir) / 'sdg'}"


@app.command("sdg")
def sdg_cmd(
    workspace: Annotated[Path, typer.Option("--workspace", help="Workspace root.")],
    gaps: Annotated[Path, typer.Option("--gaps", help="Routed gaps parquet (sdg_gaps.parquet or kpi_gaps.parquet).")],
    iter_dir: Annotated[Path, typer.Option("--iter-dir", help="Iteration folder RESULTS_DIR/iter<N> to write into.")],
    train_csv: Annotated[Path | None, typer.Option("--train-csv", help="Training CSV with the PASS base pairs "
                                                   "(default: the workspace base training CSV).")] = None,
    train_images_dir: Annotated[Path | None, typer.Option("--train-images-dir", help="Image root of --train-csv "
                                                          "(default: WS/images, or WS for CSVs under results/).")] = None,
    num_sdg: Annotated[int, typer.Option("--num-sdg", min=0, help="Samples to generate in all.")] = 20,
    sdg_base: Annotated[str, typer.Option("--sdg-base", help="test (paint on the PASS test image) or golden "
                                          "(paint on a golden copy, TAO's mode).")] = "test",
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    generic_fallback: Annotated[bool, typer.Option("--generic-fallback/--no-generic-fallback",
                                                   help="Allow CutPaste for labels without a specific generator.")] = True,
) -> None:
    """Generate synthetic defects for routed RCA gaps and stage them under ITER_DIR."""
    from deftpipe.ui.progress import progress_reporter

    def body() -> Any:
        with progress_reporter("sdg") as progress:
            return run_sdg_command(workspace, gaps, iter_dir, train_csv=train_csv, train_images_dir=train_images_dir,
                                   num_sdg=num_sdg, sdg_base=sdg_base, seed=seed, generic_fallback=generic_fallback,
                                   progress=progress)

    echo(summary_line(guarded(body), iter_dir))
