"""AutoML search efficiency at equal budget: random vs bayesian (TPE) vs hyperband, native backend.

For each algorithm and seed a study runs until the budget is spent; the best validation FAR@100
seen so far is recorded after every finished trial. The budget is counted in trained epochs by
default (`--budget-epochs`: the compute a study spent, independent of how loaded a shared machine
is) or in wall-clock seconds (`--budget-s`). Prints, per algorithm, the median best FAR@100 at the
budget and the median cost (epochs and seconds) to reach random search's final best of the same
seed, with the ratio to random. Resumable: each (algorithm, seed) cell is saved under
`--workdir/cells/` and skipped when present. Writes `automl_efficiency.json` and `.md`. Not a CI test.

    python bench/automl_efficiency.py [--workspace WS | --scale small] [--epochs 9] [--seeds 5]
                                      [--budget-epochs 54 | --budget-s 600] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ALGORITHMS = ("random", "bayesian", "hyperband")


class _BudgetSpent(Exception):
    pass


def _run_cell(ws: Path, out: Path, algorithm: str, seed: int, epochs: int, budget_epochs: int | None,
              budget_s: float | None) -> list[dict[str, float]]:
    """One study; [{'s': elapsed, 'epochs': cumulative epochs, 'best': best FAR so far}] after every trial."""
    from deftpipe.automl import run_automl

    start = time.monotonic()
    best, spent = math.inf, 0
    curve: list[dict[str, float]] = []

    def on_trial(row: dict[str, Any]) -> None:
        nonlocal best, spent
        spent += int(row["budget_epochs"] or 0)
        if row["state"] == "complete" and row["score"] is not None:
            best = min(best, float(row["score"]))
        curve.append({"s": time.monotonic() - start, "epochs": spent, "best": best})
        if (budget_epochs is not None and spent >= budget_epochs) or (budget_s is not None and
                                                                       curve[-1]["s"] >= budget_s):
            raise _BudgetSpent

    if out.exists():
        shutil.rmtree(out)  # a cell interrupted mid-study restarts clean (cells are the unit of resume)
    try:
        run_automl(ws, algorithm=algorithm, n_trials=300, epochs=epochs, seed=seed, out_dir=out,
                   noise_rerun=False, progress=on_trial, backend="native")
    except _BudgetSpent:
        pass
    shutil.rmtree(out, ignore_errors=True)  # checkpoints are not needed once the curve is saved
    return curve


def _cost_to_reach(curve: list[dict[str, float]], target: float, key: str) -> float:
    return next((p[key] for p in curve if p["best"] <= target), math.inf)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def summarize(curves: dict[str, list[list[dict[str, float]]]]) -> list[dict[str, Any]]:
    """Per algorithm: median final best, median epochs/seconds to reach random's final best, ratios to random."""
    seeds = range(min(len(c) for c in curves.values()))
    random_final = [curves["random"][s][-1]["best"] if curves["random"][s] else math.inf for s in seeds]
    rows: list[dict[str, Any]] = []
    ref: dict[str, float] = {}
    for algo in ALGORITHMS:
        finals = [curves[algo][s][-1]["best"] if curves[algo][s] else math.inf for s in seeds]
        row: dict[str, Any] = {"algorithm": algo, "median_best_far100": _median(finals),
                               "trials_median": _median([len(curves[algo][s]) for s in seeds])}
        for key in ("epochs", "s"):
            cost = [_cost_to_reach(curves[algo][s], random_final[s], key) for s in seeds]
            row[f"median_{key}_to_random_best"] = _median(cost)
            row[f"reached_{key}"] = sum(math.isfinite(c) for c in cost)
            if algo == "random":
                ref[key] = row[f"median_{key}_to_random_best"]
            row[f"ratio_{key}"] = row[f"median_{key}_to_random_best"] / ref[key] if ref.get(key) else math.nan
        rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]], *, header: str) -> str:
    lines = [header, "",
             "| algorithm | median best val FAR@100 | median trials | epochs to reach random's best (ratio) "
             "| seconds to reach random's best (ratio) |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['algorithm']} | {r['median_best_far100']:.3g} % | {r['trials_median']:g} | "
                     f"{r['median_epochs_to_random_best']:g} ({r['ratio_epochs']:.2f}) | "
                     f"{r['median_s_to_random_best']:.0f} ({r['ratio_s']:.2f}) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, default=None, help="existing workspace (default: a demo one)")
    ap.add_argument("--scale", default="small", help="demo scale when --workspace is not given")
    ap.add_argument("--epochs", type=int, default=9, help="max epochs per trial (9-12 recommended)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget-epochs", type=int, default=None, help="budget per study in trained epochs "
                    "(default: 6 full trials)")
    ap.add_argument("--budget-s", type=float, default=None, help="budget per study in wall-clock seconds instead")
    ap.add_argument("--workdir", type=Path, default=Path("bench/out/automl_efficiency"))
    args = ap.parse_args(argv)
    budget_epochs = args.budget_epochs if args.budget_epochs or args.budget_s else 6 * args.epochs

    work = args.workdir.resolve()
    (work / "cells").mkdir(parents=True, exist_ok=True)
    ws = args.workspace
    if ws is None:
        from deftpipe.demo.workspace import make_demo_workspace

        ws = work / f"ws_{args.scale}"
        if not (ws / "train" / "base" / "training_set.csv").is_file():
            make_demo_workspace(ws, scale=args.scale, seed=0, force=True)
    import torch

    curves: dict[str, list[list[dict[str, float]]]] = {a: [] for a in ALGORITHMS}
    for seed in range(args.seeds):
        for algo in ALGORITHMS:
            cell = work / "cells" / f"{algo}_{seed}.json"
            if cell.exists():
                curve = json.loads(cell.read_text())["curve"]
            else:
                curve = _run_cell(ws, work / "studies" / f"{algo}_{seed}", algo, seed, args.epochs,
                                  budget_epochs, args.budget_s)
                tmp = cell.with_suffix(".tmp")
                tmp.write_text(json.dumps({"algorithm": algo, "seed": seed, "curve": curve}))
                tmp.replace(cell)
            curves[algo].append(curve)
            final = curve[-1]["best"] if curve else math.inf
            print(f"seed {seed} {algo:9s}: {len(curve)} trials, {curve[-1]['epochs'] if curve else 0} epochs, "
                  f"{curve[-1]['s'] if curve else 0:.0f} s, best val FAR@100 {final:.3g} %", flush=True)

    rows = summarize(curves)
    budget = f"{budget_epochs} trained epochs" if budget_epochs else f"{args.budget_s:.0f} s"
    header = (f"AutoML efficiency on {ws} ({args.scale if args.workspace is None else 'user'} workspace): "
              f"budget {budget} per study, ≤ {args.epochs} epochs per trial, {args.seeds} seeds, "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    md = markdown(rows, header=header)
    print("\n" + md)
    (work / "automl_efficiency.json").write_text(json.dumps({"header": header, "rows": rows}, indent=2))
    (work / "automl_efficiency.md").write_text(md)
    print(f"written: {work / 'automl_efficiency.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
