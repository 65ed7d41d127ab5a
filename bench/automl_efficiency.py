"""AutoML search efficiency at equal wall-clock budget: random vs bayesian (TPE) vs hyperband, native backend.

For each algorithm and seed, trials run until the wall-clock budget is spent; the best
validation FAR@100 seen so far is recorded after every trial. Prints, per algorithm, the
median best FAR@100 at the budget and the median time needed to reach random search's
final best (ratios to random measured in the same run). Not a CI test.

    python bench/automl_efficiency.py [--workspace WS] [--scale small] [--epochs 10] [--seeds 5] [--budget-s 600]
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ALGORITHMS = ("random", "bayesian", "hyperband")


class _BudgetSpent(Exception):
    pass


def _run_one(ws: Path, out: Path, algorithm: str, seed: int, epochs: int, budget_s: float) -> list[tuple[float, float]]:
    """[(elapsed seconds, best FAR so far)] after every finished trial."""
    from deftpipe.automl import run_automl

    start = time.monotonic()
    best = math.inf
    curve: list[tuple[float, float]] = []

    def on_trial(row: dict[str, Any]) -> None:
        nonlocal best
        if row["state"] == "complete" and row["score"] is not None:
            best = min(best, float(row["score"]))
        elapsed = time.monotonic() - start
        curve.append((elapsed, best))
        if elapsed >= budget_s:
            raise _BudgetSpent

    try:
        run_automl(ws, algorithm=algorithm, n_trials=10_000, epochs=epochs, seed=seed, out_dir=out,
                   noise_rerun=False, progress=on_trial)
    except _BudgetSpent:
        pass
    return curve


def _time_to_reach(curve: list[tuple[float, float]], target: float) -> float:
    return next((t for t, b in curve if b <= target), math.inf)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, default=None, help="existing workspace (default: a demo one)")
    ap.add_argument("--scale", default="small")
    ap.add_argument("--epochs", type=int, default=10, help="budget per trial, 9-12 recommended")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget-s", type=float, default=600.0, help="wall-clock budget per (algorithm, seed)")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="automl-bench-"))
    ws = args.workspace
    if ws is None:
        from deftpipe.demo.workspace import make_demo_workspace

        ws = tmp / "ws"
        make_demo_workspace(ws, scale=args.scale, seed=0)
    curves: dict[str, list[list[tuple[float, float]]]] = {a: [] for a in ALGORITHMS}
    for seed in range(args.seeds):
        for algo in ALGORITHMS:
            curve = _run_one(ws, tmp / f"{algo}_{seed}", algo, seed, args.epochs, args.budget_s)
            curves[algo].append(curve)
            final = curve[-1][1] if curve else math.inf
            print(f"seed {seed} {algo:9s}: {len(curve)} trials, best FAR@100 {final:.3g} %", flush=True)

    finals = {a: [c[-1][1] if c else math.inf for c in cs] for a, cs in curves.items()}
    print(f"\nbudget {args.budget_s:.0f} s per run, {args.epochs} epochs per trial, {args.seeds} seeds")
    print(f"{'algorithm':10s} {'median best FAR@100':>20s} {'median time to random best':>27s} {'ratio':>7s}")
    ref_times = []
    for algo in ALGORITHMS:
        times = [_time_to_reach(curves[algo][s], finals["random"][s]) for s in range(args.seeds)]
        med_t = statistics.median(times)
        if algo == "random":
            ref_times = times
        ratio = med_t / statistics.median(ref_times) if ref_times and statistics.median(ref_times) > 0 else math.nan
        print(f"{algo:10s} {statistics.median(finals[algo]):20.3g} {med_t:27.1f} {ratio:7.2f}")
    print(f"\noutputs under {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
