"""`deftpipe train` and `deftpipe infer`: the native backend on a workspace, outside any run."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import typer

from deftpipe.cli.app import app, echo, guarded


def _train(workspace: Path, spec_file: Path | None, train_csv: Path | None, val_csv: Path | None,
           out: Path | None, epochs: int | None, seed: int | None, overrides: list[str], device: str,
           keep_checkpoints: str, quiet: bool) -> str:
    from deftpipe.backends import TrainRequest, create_backend
    from deftpipe.errors import ConfigError
    from deftpipe.workspace import spec as spec_mod
    from deftpipe.workspace.layout import Workspace

    ws = Workspace.at(workspace)
    if not ws.root.is_dir():
        raise ConfigError(f"workspace '{workspace}' is not a folder; create one with `deftpipe init {workspace}`.")
    extra = list(overrides)
    if epochs is not None:
        extra.append(f"train.num_epochs={epochs}")
    spec = spec_mod.load_spec(spec_file or ws.spec_path, extra)
    if seed is None:
        seed = int(spec_mod.get(spec, "train.seed", 0) or 0)
    images_dir = _images_dir(ws.root, spec)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d_%H%M%S")
    out_dir = (out or ws.results_root / f"train_{stamp}").resolve()
    if out is None:
        k = 1
        while out_dir.exists():
            out_dir, k = ws.results_root.resolve() / f"train_{stamp}_{k}", k + 1
    request = TrainRequest(
        spec=spec, train_csv=(train_csv or ws.training_csv).resolve(), val_csv=(val_csv or ws.validation_csv).resolve(),
        images_dir=images_dir, workspace_root=ws.root, out_dir=out_dir, cache_dir=ws.results_root / "cache",
        seed=seed, device=device,
    )
    from deftpipe.ui.progress import progress_reporter

    with progress_reporter("train", quiet=quiet) as progress:
        result = create_backend("native", keep_checkpoints=keep_checkpoints).train(
            _with_progress(request, progress)
        )
    last = result.history[-1] if result.history else {}
    stop = " (stopped early)" if result.stopped_early else ""
    return (f"Trained {result.epochs_run} epoch(s){stop}: best val loss {result.best_val_loss:.4f} -> "
            f"{result.best_val_ckpt}; latest {result.latest_ckpt} (train loss {last.get('train_loss', float('nan')):.4f}).")


def _with_progress(request: Any, progress: Any) -> Any:
    import dataclasses

    return dataclasses.replace(request, progress=progress)


def _images_dir(root: Path, spec: dict[str, Any]) -> Path:
    from deftpipe.workspace import spec as spec_mod

    value = spec_mod.get(spec, "dataset.classify.images_dir") or "images"
    path = Path(value)
    return (path if path.is_absolute() else root / path).resolve()


@app.command("train")
def train_cmd(
    workspace: Annotated[Path, typer.Option("--workspace", "-w", help="Workspace root.")],
    spec: Annotated[Path | None, typer.Option("--spec", help="Spec YAML (default: WS/specs/baseline_spec.yaml).")] = None,
    train_csv: Annotated[Path | None, typer.Option("--train-csv", help="Training CSV (default: the base one).")] = None,
    val_csv: Annotated[Path | None, typer.Option("--val-csv", help="Validation CSV (default: the base one).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: WS/results/train_<UTC>).")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", min=1, help="Override train.num_epochs.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed (default: train.seed of the spec).")] = None,
    override: Annotated[list[str], typer.Option("-o", "--override", help="Spec override key=value (repeatable).")] = [],  # noqa: B006
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    keep_checkpoints: Annotated[str, typer.Option("--keep-checkpoints", help="best_latest or all.")] = "best_latest",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Train the native siamese classifier; writes checkpoints, status.json and train_log.jsonl."""
    line = guarded(lambda: _train(workspace, spec, train_csv, val_csv, out, epochs, seed, override, device,
                                  keep_checkpoints, quiet))
    echo(line)


def _infer(checkpoint: Path, csv: Path, workspace: Path, images_dir: Path | None, out: Path, device: str,
           quiet: bool) -> str:
    from deftpipe.backends import InferRequest, create_backend
    from deftpipe.ui.progress import progress_reporter
    from deftpipe.workspace.layout import Workspace

    ws = Workspace.at(workspace)
    request = InferRequest(checkpoint=checkpoint.resolve(), csv=csv.resolve(),
                           images_dir=(images_dir.resolve() if images_dir else ws.images_dir),
                           workspace_root=ws.root, out_csv=out.resolve(), cache_dir=ws.results_root / "cache",
                           device=device)
    with progress_reporter("infer", quiet=quiet) as progress:
        result = create_backend("native").infer(_with_progress(request, progress))
    return (f"Scored {result.n_rows} row(s) -> {result.out_csv} (at score > 0: defect {result.pred_counts['defect']}, "
            f"PASS {result.pred_counts['PASS']}).")


@app.command("infer")
def infer_cmd(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="A model_epoch_*_step_*.pth file.")],
    csv: Annotated[Path, typer.Option("--csv", help="Rows to score.")],
    workspace: Annotated[Path, typer.Option("--workspace", "-w", help="Workspace root.")],
    out: Annotated[Path, typer.Option("--out", help="Output CSV: the rows plus siamese_score.")],
    images_dir: Annotated[Path | None, typer.Option("--images-dir", help="Image root of the CSV (default: WS/images; "
                                                    "give the workspace root for loop CSVs).")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Score CSV rows with a checkpoint: siamese_score = logit(defect) − logit(PASS)."""
    echo(guarded(lambda: _infer(checkpoint, csv, workspace, images_dir, out, device, quiet)))
