"""Phase 3's learning-rate range, replayed: the same warm-started search at several LR scales.

Takes finished `deftpipe run` directories (e.g. the `all3` cells of bench/ablation.py) and, for each,
reruns Phase 3 exactly as the pipeline does — AutoML on the loop's last augmented CSV, scored on the
run's validation copy, every trial warm-started from the loop's best iteration, the run's seed,
trials, epochs and algorithm — once per `--scales` value, with the default space's learning-rate
range multiplied by that scale (1.0 = the unscaled default). Each winner is scored by this script on
the workspace's KPI and holdout sets beside the loop's best, so the question "does Phase 3 keep or
lose what the loop gained?" is answered per scale, per run, in one table. Resumable per (run, scale):
a finished cell is OUT/cells/<run>_x<scale>.json. Not a CI test.

    python bench/phase3_lr.py RUN_DIR [RUN_DIR ...] [--scales 1,0.3,0.1] [--out bench/out/phase3_lr]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def _far(backend: Any, ckpt: Path, csv: Path, ws: Any, out_csv: Path) -> float:
    from deftpipe.backends.base import InferRequest
    from deftpipe.metrics.evaluators import read_inference_csv
    from deftpipe.metrics.far import far_at_recall

    backend.infer(InferRequest(checkpoint=ckpt, csv=csv, images_dir=ws.images_dir, workspace_root=ws.root,
                               out_csv=out_csv, device="auto"))
    _, scores, is_defect = read_inference_csv(out_csv)
    return far_at_recall(scores, is_defect).far_pct


def run_cell(rd: Path, scale: float, out: Path) -> dict[str, Any]:
    """Phase 3 of run `rd` at LR scale `scale`; KPI / holdout FAR@100 of its winner and of the loop's best."""
    from deftpipe.automl import run_automl
    from deftpipe.automl.space import SearchSpace
    from deftpipe.backends.registry import create_backend
    from deftpipe.pipeline import handoff
    from deftpipe.pipeline.run import load_config
    from deftpipe.workspace.layout import Workspace

    settings = load_config(rd)
    ws = Workspace.at(settings.workspace)
    doc = json.loads((rd / "deft_state.json").read_text())
    train_csv, warm, best_label = handoff.phase3_inputs(doc, rd)
    study = out / "work" / f"{rd.name}_x{scale:g}"
    started = time.monotonic()
    res = run_automl(ws.root, train_csv=train_csv, val_csv=rd / "inputs" / "validation.csv",
                     algorithm=settings.algorithm, n_trials=settings.recommendations, warm_start=warm,
                     seed=settings.seed, out_dir=study, noise_rerun=settings.noise_rerun, backend=settings.backend,
                     overrides=(*settings.overrides, f"dataset.classify.images_dir={ws.root}"),
                     epochs=settings.epochs, progress=False, resume=(study / "study.db").exists(),
                     space=SearchSpace.default().with_lr_scale(scale))
    wall = time.monotonic() - started
    backend = create_backend(settings.backend)
    row: dict[str, Any] = {"run": rd.name, "scale": scale, "loop_best": best_label, "wall_s": round(wall, 1),
                           "validation_far100": res.score}
    for split, csv in (("kpi", ws.kpi_csv), ("holdout", ws.holdout_csv)):
        if not csv.exists():
            continue
        row[f"{split}_phase3"] = _far(backend, Path(res.checkpoint), csv, ws, study / f"{split}_phase3.csv")
        row[f"{split}_loop"] = _far(backend, warm, csv, ws, study / f"{split}_loop.csv")
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="finished `deftpipe run` directories")
    ap.add_argument("--scales", default="1,0.3,0.1", help="comma-separated LR-range scales")
    ap.add_argument("--out", type=Path, default=Path("bench/out/phase3_lr"))
    args = ap.parse_args(argv)
    scales = [float(x) for x in args.scales.split(",")]
    cells = args.out / "cells"
    cells.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for rd in args.runs:
        rd = rd.resolve()
        if not (rd / "pipeline_config.json").exists() or not (rd / "deft_state.json").exists():
            print(f"{rd}: not a finished `deftpipe run` directory (pipeline_config.json / deft_state.json missing)",
                  file=sys.stderr)
            return 2
        for scale in scales:
            done = cells / f"{rd.name}_x{scale:g}.json"
            if done.exists():
                row = json.loads(done.read_text())
            else:
                row = run_cell(rd, scale, args.out)
                tmp = done.with_suffix(".tmp")
                tmp.write_text(json.dumps(row, indent=2))
                tmp.replace(done)
            rows.append(row)
            print(f"[phase3_lr] {row['run']} x{scale:g}: KPI {row.get('kpi_phase3', float('nan')):.3g} % "
                  f"(loop's best {row.get('kpi_loop', float('nan')):.3g} %), holdout "
                  f"{row.get('holdout_phase3', float('nan')):.3g} % ({row.get('holdout_loop', float('nan')):.3g} %)",
                  file=sys.stderr, flush=True)
    lines = ["| LR scale | KPI FAR@100 Phase 3 (median) | per run | Phase 3 beat the loop on KPI | "
             "holdout Phase 3 (median) | per run |", "|---|---|---|---|---|---|"]
    for scale in scales:
        rs = [r for r in rows if r["scale"] == scale]
        kpi = [r["kpi_phase3"] for r in rs if "kpi_phase3" in r]
        hold = [r["holdout_phase3"] for r in rs if "holdout_phase3" in r]
        wins = sum(r["kpi_phase3"] < r["kpi_loop"] for r in rs if "kpi_phase3" in r)
        lines.append(f"| {scale:g} | {statistics.median(kpi):.3g} % | {', '.join(f'{v:.3g}' for v in kpi)} | "
                     f"{wins} of {len(kpi)} | {statistics.median(hold):.3g} % | {', '.join(f'{v:.3g}' for v in hold)} |"
                     if kpi and hold else f"| {scale:g} | — | — | — | — | — |")
    loop_kpi = [r["kpi_loop"] for r in rows if r["scale"] == scales[0] and "kpi_loop" in r]
    loop_hold = [r["holdout_loop"] for r in rows if r["scale"] == scales[0] and "holdout_loop" in r]
    if loop_kpi:
        lines.append(f"| loop's best (reference) | {statistics.median(loop_kpi):.3g} % | "
                     f"{', '.join(f'{v:.3g}' for v in loop_kpi)} | — | "
                     f"{statistics.median(loop_hold):.3g} % | {', '.join(f'{v:.3g}' for v in loop_hold)} |")
    md = "\n".join(lines) + "\n"
    print("\n" + md)
    (args.out / "phase3_lr.md").write_text(md)
    (args.out / "phase3_lr.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
