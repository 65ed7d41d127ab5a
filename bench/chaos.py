"""Chaos: kill the QUICK pipeline N times, resume after each kill, and compare with an uninterrupted run.

Builds the QUICK demo workspace twice (same seed), runs `deftpipe run` once uninterrupted as
the reference, then runs it again killing it N times — every named fault point of
`deftpipe.faults` twice (`DEFTPIPE_FAULT=<site>:<n>`: SIGKILL at the worst instant of a state
commit, a checkpoint save, the training-CSV merge, a report render, an AutoML trial's end), the
rest random SIGKILLs of the process group at random delays — resuming with `deftpipe run
--resume` after each. The finished run must equal the reference after normalizing timestamps,
run-dir names and `<TS>` folders: same committed (iter, stage, status) sequence without gaps or
duplicates, same training CSVs, same metrics (exactly: same machine, threads and seed), every
JSON valid, no orphan temp file or lock, a deliverable. A QUICK run is short: when it finishes
before every planned kill has landed, the rest go to a fresh run on a fresh workspace (a new
round), each finished run compared with the reference. Prints `kills survived: S/N`.

    python bench/chaos.py --kills 20 [--seed 0] [--workdir DIR] [--scale small] [--reference RUN_DIR]

Runtime ≈ (1 + rounds) × the QUICK demo plus one process start per kill (≈ 70 s per run + 10 s × N
on an idle machine).
"""
from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, required=True, help="kills in all (10 = every fault site twice)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill plan (the pipeline always uses --seed 0)")
    ap.add_argument("--workdir", type=Path, default=None, help="keep workspaces and logs here (default: a temp dir)")
    ap.add_argument("--scale", default="small", choices=("tiny", "small"), help="demo scale (QUICK = small)")
    ap.add_argument("--max-delay", type=float, default=25.0, help="longest random-kill delay, seconds")
    ap.add_argument("--reference", type=Path, default=None,
                    help="reuse this finished uninterrupted run (same scale, QUICK arguments, seed 0) as the reference")
    args = ap.parse_args(argv)

    from deftpipe.chaos import plan_kills, quick_run_argv, run_chaos, run_reference
    from deftpipe.chaos.driver import make_demo_data

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="deftpipe_chaos_"))
    workdir = workdir.resolve()
    logs = workdir / "logs"
    plan = plan_kills(args.kills, rng=random.Random(args.seed), max_delay_s=args.max_delay)
    print(f"chaos: {len(plan)} kill(s): " + ", ".join(str(k) for k in plan))
    started = time.monotonic()
    ref_ws = workdir / "reference_ws"
    if not args.reference:
        shutil.rmtree(ref_ws, ignore_errors=True)
        make_demo_data(ref_ws, scale=args.scale, seed=0, log_dir=logs)
    t0 = time.monotonic()
    reference = args.reference.resolve() if args.reference else run_reference(ref_ws, quick_run_argv(ref_ws),
                                                                              log_dir=logs)
    print(f"reference run: {reference} ({time.monotonic() - t0:.0f}s)")
    # A QUICK run is short: once it has finished, the kills not yet delivered go to a fresh run (a new
    # round) on a fresh copy of the workspace, until every planned kill has landed.
    remaining, reports = list(plan), []
    while remaining:
        chaos_ws = workdir / f"chaos_ws_round{len(reports) + 1}"
        shutil.rmtree(chaos_ws, ignore_errors=True)
        make_demo_data(chaos_ws, scale=args.scale, seed=0, log_dir=logs)
        t0 = time.monotonic()
        print(f"round {len(reports) + 1}: {len(remaining)} kill(s) to deliver")
        report = run_chaos(chaos_ws, quick_run_argv(chaos_ws), remaining, reference=reference,
                           log_dir=logs / f"round{len(reports) + 1}")
        reports.append(report)
        print(f"interrupted run: {report.results_dir} ({time.monotonic() - t0:.0f}s); {report.summary()}")
        if report.failure:
            print(f"FAILED: {report.failure}")
        for line in report.differences:
            print(f"DIFFERENCE: {line}")
        if report.failure or report.differences or report.delivered == 0:
            break
        remaining = remaining[report.delivered:]
    survived = sum(r.survived for r in reports)
    ok = all(r.failure is None and not r.differences for r in reports) and survived == len(plan)
    print(f"logs: {logs}; total {time.monotonic() - started:.0f}s")
    print(f"kills survived: {survived}/{len(plan)} ({sum(r.delivered for r in reports)} delivered over "
          f"{len(reports)} run(s), {sum(len(r.attempts) for r in reports)} process starts; every finished run "
          f"{'identical to the reference' if ok else 'NOT OK'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
