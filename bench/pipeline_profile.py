"""Where a QUICK-sized `deftpipe run` spends its wall time, and how close training runs to raw model speed.

Runs pre-flight (with its timing run) and the three phases once (QUICK: 1 iteration, 2 AutoML trials,
2 epochs, no noise re-run) under cProfile on a workspace (default: a small demo one), then prints:

1. the share of wall time per stage — pre-flight, AutoML trials and their overhead per phase, each DEFT
   stage (train, evaluate, rca, routing, sdg, data_mining, data_merge, loop_stop), report render, the
   rest — measured by wrapping each stage executor, plus training / inference / embedding as
   cross-cutting totals (backend calls, wherever they happen);
2. the top 15 functions by cumulative time *outside training*: the profiler is paused inside every
   `train` call, and the driver functions that enclose a training call are left out of the list
   (their cumulative time would stop at the first training call);
3. the training-throughput ratio of the DEFT iteration's training, per epoch: end-to-end pairs/s
   (train_log.jsonl) / raw fwd+bwd+step pairs/s on preloaded tensors (bench/train_throughput.py's
   `_RawModel`, same spec) from the raw epochs run just before and just after that training epoch, so
   both sides see the same background load; headline = median over epochs 2+. The raw epochs run on a
   forked torch RNG and their seconds are subtracted from the stage times and the wall.

A regression-gate halt (likely at 2 epochs) is accepted once and the run resumed, as its hint says.

    python bench/pipeline_profile.py [--workspace WS | --scale small] [--epochs 2] [--seed 0]
    python bench/pipeline_profile.py --workspace bench/out/realdata_quick/ws     # DeepPCB (bench/realdata.py)
"""
from __future__ import annotations

import argparse
import cProfile
import dataclasses
import inspect
import json
import pstats
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
DEFT_STAGES = ("train", "evaluate", "rca", "routing", "sdg", "data_mining", "data_merge")
FuncKey = tuple[str, int, str]


class Probe:
    """Wall-time buckets, run events and the profiler pause around training, for one pipeline run."""

    def __init__(self, prof: cProfile.Profile) -> None:
        self.prof = prof
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.events: list[dict[str, Any]] = []
        self.enclosing: set[FuncKey] = set()  # frames open during some training call
        self.raw_s = 0.0  # raw-model epochs injected into the timed training (subtracted everywhere)
        self.raw_times: list[float] = []
        self.raw_pairs = 0
        self.halts: list[str] = []
        self.throughput_log: Path | None = None

    def timed(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            raw_before = self.raw_s
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - start - (self.raw_s - raw_before)
                self.calls[name] += 1
        return wrapper

    def on_event(self, ev: dict[str, Any]) -> None:
        if ev.get("event") in ("phase_end", "trial_end"):
            self.events.append(ev)

    def training(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Pause the profiler inside training; interleave raw epochs into the DEFT iteration's training."""
        def wrapper(backend: Any, request: Any) -> Any:
            self.enclosing.update((f.f_code.co_filename, f.f_code.co_firstlineno, f.f_code.co_name)
                                  for f in (fi.frame for fi in inspect.stack(0)))
            self.prof.disable()  # before the raw model too: its warm-up epoch is not pipeline time
            try:
                if request.out_dir.parent.name.startswith("iter") and self.throughput_log is None:
                    request = self._with_raw_epochs(request)
                    self.throughput_log = request.out_dir / "train_log.jsonl"
                return fn(backend, request)
            finally:
                self.prof.enable()
        return self.timed("training (all backend.train calls)", wrapper)

    def _with_raw_epochs(self, request: Any) -> Any:
        sys.path.insert(0, str(BENCH_DIR))
        import pandas as pd
        import torch
        from train_throughput import _RawModel

        from deftpipe.workspace.spec import ImageSettings

        img = ImageSettings.from_spec(request.spec)
        started = time.perf_counter()
        with torch.random.fork_rng(devices=[]):  # the measurement must not shift the run's random streams
            raw = _RawModel(dict(request.spec), len(img.lights) * (1 if img.grayscale else 3),
                            (img.height, img.width), len(pd.read_csv(request.train_csv)))
            self.raw_times.append(raw.epoch())  # brackets training epoch 1 with the one after it
        self.raw_s += time.perf_counter() - started
        inner = request.on_epoch

        def on_epoch(epoch: int, val_loss: float) -> bool:
            t0 = time.perf_counter()
            with torch.random.fork_rng(devices=[]):
                self.raw_times.append(raw.epoch())
            self.raw_s += time.perf_counter() - t0
            return bool(inner(epoch, val_loss)) if inner is not None else False

        self.raw_pairs = raw.n_pairs
        return dataclasses.replace(request, on_epoch=on_epoch)


def instrument(probe: Probe) -> None:
    """Wrap the stage executors, the report refresh and the native backend's calls (this process only)."""
    from deftpipe.backends.native import NativeBackend
    from deftpipe.deft import loop, steps

    for name in DEFT_STAGES:
        steps.STEPS[name] = probe.timed(name, steps.STEPS[name])
    steps.finalize = probe.timed("loop_stop", steps.finalize)  # type: ignore[method-assign]
    loop.refresh_report = probe.timed("report render", loop.refresh_report)  # type: ignore[attr-defined]
    NativeBackend.train = probe.training(NativeBackend.train)  # type: ignore[method-assign]
    NativeBackend.infer = probe.timed("inference (all backend.infer calls)", NativeBackend.infer)  # type: ignore
    NativeBackend.embed = probe.timed("embedding (all backend.embed calls)", NativeBackend.embed)  # type: ignore


def run_quick(ws: Path, args: argparse.Namespace, probe: Probe) -> Path:
    """Pre-flight + the three phases, as `deftpipe run --yes` does; returns the run directory."""
    from deftpipe.errors import RegressionHalt
    from deftpipe.pipeline import preflight
    from deftpipe.pipeline.run import PipelineSettings, run_phases, save_config
    from deftpipe.state import new_run_dir
    from deftpipe.ui import events
    from deftpipe.workspace.io import write_json_atomic, write_text_atomic
    from deftpipe.workspace.layout import Workspace

    ps = PipelineSettings(workspace=ws, max_iterations=args.max_iterations, recommendations=args.recommendations,
                          kpi_target_pct=args.kpi_target, seed=args.seed, epochs=args.epochs, noise_rerun=False,
                          device=args.device)
    pf = probe.timed("preflight", preflight.build)(ps, sources={}, measure=True)
    w = Workspace.at(ws)
    rd = new_run_dir(w.results_root, workspace_root=w.root)
    write_text_atomic(rd / "preflight.md", pf.to_markdown())
    write_json_atomic(rd / "preflight.json", pf.to_dict())
    save_config(rd, ps)
    emit = lambda line: print("  " + line, flush=True)  # noqa: E731
    with events.listen(probe.on_event):
        try:
            run_phases(rd, ps, emit=emit)
        except RegressionHalt as exc:
            # a 2-epoch iteration can regress; this bench profiles the whole run, so continue as the hint says
            probe.halts.append(exc.message)
            emit(f"[profile] {exc.message} Resuming with --accept-regression.")
            run_phases(rd, ps, emit=emit, accept_regression=True)
    return rd


def stage_table(probe: Probe, wall: float) -> list[str]:
    """Partition of the wall (rows sum to it) then cross-cutting totals (they overlap the partition)."""
    phase_s = {e["phase"]: float(e["duration_sec"]) for e in probe.events if e["event"] == "phase_end"}
    trials = defaultdict(float)
    for e in probe.events:
        if e["event"] == "trial_end":
            trials[e.get("phase", "?")] += float(e.get("duration_s") or 0.0)
    part: list[tuple[str, float]] = [("preflight (incl. its timing run)", probe.seconds["preflight"])]
    for phase, label in (("automl_phase1", "Phase 1"), ("final_automl", "Phase 3")):
        part += [(f"{label} AutoML trials (train + score)", trials[phase]),
                 (f"{label} AutoML overhead (study, zero-shot, selection)", phase_s.get(phase, 0.0) - trials[phase])]
    part += [(f"DEFT {s}", probe.seconds[s]) for s in (*DEFT_STAGES, "loop_stop")]
    part.append(("report render", probe.seconds["report render"]))
    part.append(("other (handoff, final selection + holdout, glue)", wall - sum(v for _, v in part)))
    lines = [f"{'stage':<58}{'s':>9}{'share':>8}"]
    lines += [f"{name:<58}{sec:>9.1f}{sec / wall:>8.1%}" for name, sec in part]
    lines.append(f"{'total wall (pre-flight + run)':<58}{wall:>9.1f}{1:>8.0%}")
    lines.append("cross-cutting (overlaps the rows above):")
    for name in ("training (all backend.train calls)", "inference (all backend.infer calls)",
                 "embedding (all backend.embed calls)"):
        lines.append(f"  {name:<56}{probe.seconds[name]:>9.1f}{probe.seconds[name] / wall:>8.1%}"
                     f"  ({probe.calls[name]} calls)")
    return lines


def top_functions(prof: cProfile.Profile, probe: Probe, *, only: str = "", n: int = 15) -> list[str]:
    """Top `n` by cumulative time, optionally only functions whose file path contains `only`."""
    stats = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    rows = sorted(((ct, nc, tt, key) for key, (_, nc, tt, ct, _) in stats.items()
                   if key not in probe.enclosing and key[0] != __file__ and only in key[0]), reverse=True)[:n]
    lines = [f"{'cum s':>8}{'own s':>8}{'calls':>9}  function"]
    for ct, nc, tt, (path, line, func) in rows:
        short = path.split("/src/", 1)[-1].split("site-packages/", 1)[-1]
        lines.append(f"{ct:>8.2f}{tt:>8.2f}{nc:>9}  {func} ({short}:{line})")
    return lines


def throughput(probe: Probe) -> str:
    """Per training epoch: end-to-end pairs/s over raw pairs/s from the raw epochs just before and after it."""
    if probe.throughput_log is None or not probe.throughput_log.exists() or len(probe.raw_times) < 2:
        return "training throughput: not measured (the run trained no DEFT iteration)"
    log = [json.loads(line) for line in probe.throughput_log.read_text().splitlines() if line.strip()]
    ratios, parts = [], []
    for i, rec in enumerate(log[: len(probe.raw_times) - 1]):
        e2e = rec["n_pairs"] / rec["train_seconds"]
        raw = probe.raw_pairs / statistics.mean(probe.raw_times[i:i + 2])
        ratios.append(e2e / raw)
        parts.append(f"epoch {rec['epoch']}: {e2e:.1f} / {raw:.1f} pairs/s = {e2e / raw:.2f}")
    later = ratios[1:] or ratios
    return (f"training throughput ({probe.throughput_log.parent.parent.name}), end-to-end / raw fwd+bwd+step on "
            f"preloaded tensors: {'; '.join(parts)}; median over epochs {'2+' if len(ratios) > 1 else '1'} "
            f"= ratio {statistics.median(later):.3f} (target >= 0.8)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, default=None, help="existing workspace (default: a demo one)")
    ap.add_argument("--scale", default="small", help="demo scale when no --workspace")
    ap.add_argument("--out", type=Path, default=BENCH_DIR / "out" / "pipeline_profile")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--recommendations", type=int, default=2)
    ap.add_argument("--max-iterations", type=int, default=1)
    ap.add_argument("--kpi-target", type=float, default=0.0, help="FAR target %% (default 0: the iteration runs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    ws = args.workspace.resolve() if args.workspace else _demo(out / f"ws_{args.scale}", args.scale)
    prof = cProfile.Profile()
    probe = Probe(prof)
    instrument(probe)
    started = time.perf_counter()
    prof.enable()
    rd = run_quick(ws, args, probe)
    prof.disable()
    wall = time.perf_counter() - started - probe.raw_s
    prof.dump_stats(str(out / "pipeline.prof"))
    print(f"\nworkspace {ws}\nrun directory {rd}\nprofile {out / 'pipeline.prof'} (cProfile; snakeviz/pstats)\n")
    print("\n".join(stage_table(probe, wall)))
    print("\ntop 15 by cumulative time outside training (drivers enclosing a training call left out):")
    print("\n".join(top_functions(prof, probe)))
    print("\nthe same, deftpipe's own functions only:")
    print("\n".join(top_functions(prof, probe, only="/deftpipe/")))
    print("\n" + throughput(probe))
    print(f"(raw-model epochs took {probe.raw_s:.1f} s, excluded from every figure above)")
    for halt in probe.halts:
        print(f"accepted once and resumed (times include the resume) — {halt}")
    return 0


def _demo(path: Path, scale: str) -> Path:
    """The ablation bench's cached demo workspace (one definition for both benches)."""
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    from ablation import _demo as demo_workspace

    return demo_workspace(path, scale)


if __name__ == "__main__":
    sys.exit(main())
