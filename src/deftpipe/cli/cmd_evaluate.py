"""`deftpipe evaluate`: score an inference CSV against the metric contract, or run the zero-shot baseline."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
import yaml

from deftpipe.cli.app import app, echo, guarded
from deftpipe.errors import ConfigError
from deftpipe.metrics.contract import MetricContract, MetricResult, default_far_contract
from deftpipe.metrics.evaluators import evaluate_inference_csv, read_inference_csv
from deftpipe.metrics.far import auroc, far_at_recall


def load_contract(path: Path) -> MetricContract:
    """A contract from YAML/JSON: either the contract itself or a mapping with a `metric_contract` key."""
    if not path.is_file():
        raise ConfigError(f"{path}: contract file not found; pass a YAML or JSON metric contract (SPEC §3).")
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))  # YAML is a superset of JSON
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise ConfigError(f"{path}: not valid YAML/JSON ({where}{problem}); fix the file.") from exc
    if isinstance(data, dict) and isinstance(data.get("metric_contract"), dict):
        data = data["metric_contract"]
    return MetricContract.from_dict(data, source=str(path))


def summary_line(inference_csv: Path, result: MetricResult, contract: MetricContract) -> str:
    """`FAR@100 … | FAR@99 … | AUROC … | threshold …` plus the contract's verdict."""
    d = result.diagnostics
    if {"far_at_100_pct", "far_at_99_pct", "auroc", "threshold_at_100"} <= d.keys():
        far100, far99, area, thr = d["far_at_100_pct"], d["far_at_99_pct"], d["auroc"], d["threshold_at_100"]
    else:  # external evaluators may not report these; compute them from the CSV
        _, scores, is_defect = read_inference_csv(inference_csv)
        r100 = far_at_recall(scores, is_defect)
        far100, far99, area, thr = (r100.far_pct, far_at_recall(scores, is_defect, recall_pct=99.0).far_pct,
                                    auroc(scores, is_defect), r100.threshold)
    verdict = "PASS" if result.passed else "FAIL"
    return (f"FAR@100 {far100:.2f}% | FAR@99 {far99:.2f}% | AUROC {area:.4f} | threshold {thr:.6g} | "
            f"{contract.name}={result.value:.6g}{contract.unit} -> {verdict} ({contract.kpi_target()})")


@app.command("evaluate")
def evaluate(
    inference_csv: Path = typer.Option(None, "--inference-csv", help="Input rows + siamese_score (higher = defect)."),
    contract_file: Path = typer.Option(None, "--contract", help="Metric contract YAML/JSON (default: FAR<5% at recall 100%)."),
    out: Path = typer.Option(None, "--out", help="metric_result.json path; with --zero-shot, an output folder."),
    zero_shot: bool = typer.Option(False, "--zero-shot", help="Score --csv with the shipped zero-shot baseline first."),
    workspace: Path = typer.Option(None, "--workspace", help="Workspace root (with --zero-shot)."),
    csv: Path = typer.Option(None, "--csv", help="Sample CSV to score (default: <workspace>/kpi/testing_set.csv)."),
) -> None:
    """Print FAR@100 / FAR@99 / AUROC / threshold for an inference CSV, or for the zero-shot baseline."""
    guarded(lambda: _evaluate(inference_csv, contract_file, out, zero_shot, workspace, csv))


def _evaluate(inference_csv: Path | None, contract_file: Path | None, out: Path | None, zero_shot: bool,
              workspace: Path | None, csv: Path | None) -> None:
    contract = load_contract(contract_file) if contract_file else default_far_contract()
    if zero_shot:
        if inference_csv is not None:
            raise ConfigError("--zero-shot writes its own inference CSV; drop --inference-csv (or drop --zero-shot).")
        if workspace is None:
            raise ConfigError("--zero-shot needs --workspace WS (images, specs/baseline_spec.yaml and the CSV live there).")
        inference_csv, out_json = _zero_shot(workspace, csv, out)
    else:
        if inference_csv is None:
            raise ConfigError("pass --inference-csv CSV, or --zero-shot --workspace WS to score the zero-shot baseline.")
        if workspace is not None or csv is not None:
            raise ConfigError("--workspace / --csv only apply with --zero-shot.")
        out_json = out
    result = evaluate_inference_csv(inference_csv, contract, out_json=out_json)
    echo(summary_line(inference_csv, result, contract))
    if out_json is not None:
        echo(f"metric result: {out_json}")


def _zero_shot(workspace: Path, csv: Path | None, out: Path | None) -> tuple[Path, Path]:
    from deftpipe.metrics.zeroshot import score_csv_zero_shot
    from deftpipe.workspace.layout import Workspace
    from deftpipe.workspace.spec import get, load_spec

    ws = Workspace.at(workspace)
    if not ws.root.is_dir():
        raise ConfigError(f"--workspace {workspace}: folder not found.")
    source = Path(csv) if csv is not None else ws.kpi_csv
    if not source.is_absolute() and not source.exists():
        source = ws.root / source
    out_dir = Path(out) if out is not None else ws.results_root / "zero_shot"
    spec = load_spec(ws.spec_path)
    images_dir = Path(str(get(spec, "dataset.classify.images_dir") or ws.images_dir))
    images_dir = images_dir if images_dir.is_absolute() else ws.root / images_dir
    scored = score_csv_zero_shot(source, images_dir=images_dir, workspace_root=ws.root, spec=spec,
                                 out_csv=out_dir / f"{source.stem}_zero_shot_inference.csv")
    return scored, out_dir / "metric_result.json"
