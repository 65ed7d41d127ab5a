"""`deftpipe export` and `deftpipe predict`: the deliverable of a finished run, in use (SPEC §10)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from deftpipe.cli.app import app, echo, err_console, guarded


def _export(results_dir: Path, onnx: Path, opset: int) -> str:
    from deftpipe.deploy.export import export_onnx

    res = export_onnx(results_dir, onnx, opset=opset)
    for note in res.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(note)}", soft_wrap=True)
    meta = res.metadata
    return (f"Exported {meta['iteration']} deliverable -> {res.onnx_path} (opset {meta['opset']}, threshold "
            f"{meta['threshold']!r}, lights {meta['lights']}, {meta['image']['width']}x{meta['image']['height']}; "
            f"onnxruntime vs PyTorch max |Δscore| {res.max_abs_diff:.2g}).")


@app.command("export")
def export_cmd(
    results_dir: Annotated[Path, typer.Argument(help="Finished run directory (holds best_model.json).")],
    onnx: Annotated[Path, typer.Option("--onnx", help="Output .onnx file (written atomically).")],
    opset: Annotated[int, typer.Option("--opset", min=17, help="ONNX opset (17 or newer).")] = 17,
) -> None:
    """Export the run's deliverable to ONNX with its threshold, metric contract, inputs and provenance."""
    echo(guarded(lambda: _export(results_dir, onnx, opset)))


def _predict(model: Path, csv: Path | None, images_dir: Path | None, pairs: Path | None, out: Path, device: str,
             quiet: bool) -> str:
    from deftpipe.deploy.predict import predict
    from deftpipe.ui.progress import progress_reporter

    with progress_reporter("predict", quiet=quiet) as progress:
        res = predict(model, out_csv=out, csv=csv, images_dir=images_dir, pairs_dir=pairs, device=device,
                      progress=progress)
    counts = ", ".join(f"{k} {v}" for k, v in res.counts.items())
    return (f"Scored {res.n_rows} pair(s) with the {res.model_kind} model at threshold {res.threshold!r}: {counts} "
            f"-> {res.out_csv} (summary {res.summary_path}).")


@app.command("predict")
def predict_cmd(
    model: Annotated[Path, typer.Option("--model", help="RESULTS_DIR (PyTorch checkpoint) or an exported .onnx.")],
    out: Annotated[Path, typer.Option("--out", help="Output CSV: rows + siamese_score + decision.")],
    csv: Annotated[Path | None, typer.Option("--csv", help="Pairs to score (input_path, golden_path, object_name; "
                                              "label optional).")] = None,
    images_dir: Annotated[Path | None, typer.Option("--images-dir", help="Image root of --csv (default: the CSV's "
                                                     "folder).")] = None,
    pairs: Annotated[Path | None, typer.Option("--pairs", help="Folder of <name>_test_<light>.<ext> / "
                                                "<name>_golden_<light>.<ext> files.")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Score new pairs and decide defect / PASS at the deliverable's stored threshold.

    A pair is a defect when score > threshold + tie_margin (both stored with the model).
    """
    echo(guarded(lambda: _predict(model, csv, images_dir, pairs, out, device, quiet)))
