"""DEFT loop overhead: how much of a native-backend run is *not* training, in one run.

Builds a demo workspace, runs a DEFT loop (native backend, 2 iterations by default)
and prints, per stage, the committed `duration_sec` from `loop_log.jsonl` (integer
seconds, as the contract records them) beside the precise wall time measured around
each stage executor (plus finalize and the report refresh), then the non-training
share = everything except `train` over the whole loop (target ≤ 25 % at --scale medium), and the
same share per DEFT iteration (iter1, iter2, …: routing → sdg → mining → merge → train → evaluate →
rca, plus the report refreshes after each of them; the baseline's training is not an iteration).
Target for an iteration: ≤ 15 % on a real-data workspace (issue #8), printed with `--target`.

    python bench/loop_overhead.py [--scale medium|small|tiny] [--epochs N] [--max-iterations 2]
                                  [--workspace WS] [--seed 0] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ORDER = ("train", "evaluate", "rca", "routing", "sdg", "data_mining", "data_merge", "loop_stop")


_current_label = ["baseline"]  # the iteration whose stage ran last (report refreshes are charged to it)
per_label: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))


def _timed(fn: Callable[..., Any], bucket: list[float], stage: str) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if len(args) >= 3 and isinstance(args[2], str):  # step(ctx, store, label, progress)
            _current_label[0] = args[2]
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            took = time.perf_counter() - start
            bucket.append(took)
            per_label[_current_label[0]][stage] += took
    return wrapper


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="medium", choices=("tiny", "small", "medium", "large"))
    ap.add_argument("--epochs", type=int, default=None, help="epochs per training (default: the demo spec's)")
    ap.add_argument("--max-iterations", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workspace", type=Path, default=None, help="reuse/create the demo here (default: a temp dir)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--kpi-target", type=float, default=0.0,
                    help="FAR target %% (default 0: never met, so every iteration runs)")
    ap.add_argument("--target", type=float, default=None,
                    help="non-training share target per iteration in %% (default: 25 on demo data, 15 with --workspace)")
    args = ap.parse_args(argv)

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from deftpipe.deft import loop, steps
    from deftpipe.deft.context import DeftSettings
    from deftpipe.deft.run import create_run
    from deftpipe.demo import make_demo_workspace

    tmp = None
    if args.workspace is None:
        tmp = tempfile.TemporaryDirectory(prefix="deft_overhead_")
        ws = Path(tmp.name) / "ws"
    else:
        ws = args.workspace.resolve()
    started = time.perf_counter()
    if not (ws / "train" / "base" / "training_set.csv").exists():
        make_demo_workspace(ws, scale=args.scale, seed=args.seed)
    demo_s = time.perf_counter() - started

    measured: dict[str, list[float]] = defaultdict(list)
    for name, fn in list(steps.STEPS.items()):
        steps.STEPS[name] = _timed(fn, measured[name], name)
    steps.finalize = _timed(steps.finalize, measured["loop_stop"], "loop_stop")  # type: ignore[method-assign]
    loop.refresh_report = _timed(loop.refresh_report, measured["report refresh"],  # type: ignore[attr-defined]
                                 "report refresh")

    rd = create_run(DeftSettings(workspace=ws, max_iterations=args.max_iterations, epochs=args.epochs,
                                 seed=args.seed, kpi_target_pct=args.kpi_target))
    started = time.perf_counter()
    outcome = loop.run_loop(rd, on_event=lambda line: print("  " + line, flush=True))
    loop_s = time.perf_counter() - started

    logged: dict[str, int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)
    for line in (rd / "loop_log.jsonl").read_text().splitlines():
        if line.strip():
            ev = json.loads(line)
            logged[ev["stage"]] += int(ev["duration_sec"])
            counts[ev["stage"]] += 1
    total_logged = sum(logged.values())
    total_measured = sum(sum(v) for v in measured.values())
    print(f"\nscale={args.scale} epochs={args.epochs or 'spec'} iterations={args.max_iterations} "
          f"status={outcome.status} stop={outcome.stop_reason} (demo generation {demo_s:.1f}s, not counted)")
    print(f"{'stage':<16}{'runs':>5}{'log s':>8}{'measured s':>12}{'share':>8}")
    for stage in (*ORDER, "report refresh"):
        m = sum(measured.get(stage, []))
        if not counts.get(stage) and not m:
            continue
        share = m / total_measured if total_measured else 0.0
        print(f"{stage:<16}{counts.get(stage, len(measured.get(stage, []))):>5}{logged.get(stage, 0):>8}"
              f"{m:>12.2f}{share:>8.1%}")
    non_train_log = 1 - logged["train"] / total_logged if total_logged else 0.0
    non_train_measured = 1 - sum(measured["train"]) / total_measured if total_measured else 0.0
    print(f"{'total':<16}{'':>5}{total_logged:>8}{total_measured:>12.2f}   (loop wall {loop_s:.2f}s)")
    print(f"non-training share: {non_train_log:.1%} from loop_log.jsonl durations, "
          f"{non_train_measured:.1%} measured (target <= 25% at --scale medium)")
    target = args.target if args.target is not None else (15.0 if args.workspace is not None else 25.0)
    print(f"\nper DEFT iteration (target: non-training share <= {target:g}%):")
    print(f"{'iteration':<12}{'train s':>9}{'other s':>9}{'share':>8}  largest other stages")
    for label, stages in per_label.items():
        if label == "baseline":
            continue
        train_s = stages.get("train", 0.0)
        other = {k: v for k, v in stages.items() if k != "train"}
        other_s = sum(other.values())
        share = other_s / (train_s + other_s) if train_s + other_s else 0.0
        top = ", ".join(f"{k} {v:.1f}s" for k, v in sorted(other.items(), key=lambda kv: -kv[1])[:3])
        verdict = "meets" if share * 100 <= target else "over"
        print(f"{label:<12}{train_s:>9.1f}{other_s:>9.1f}{share:>8.1%}  {top}  [{verdict}]")
    if tmp is not None:
        tmp.cleanup()
        print("run directory: deleted (pass --workspace WS to keep it)")
    else:
        print(f"run directory: {rd}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
