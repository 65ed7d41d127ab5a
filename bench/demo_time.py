"""Wall time of `make demo QUICK=1` and `make demo` from a fresh workspace, per phase, against SPEC §7's targets.

Runs each demo exactly as a user would (`make demo [QUICK=1] DEMO_WS=<fresh folder>`), time-stamps
every output line as it arrives, and splits the wall time at the lines each step prints:

    make-demo-data ─► pre-flight ─► [phase 1] ─► handoff ─► [phase 2] ─► [phase 3] ─► Run directory:

Then reads the run folder: Phase 1's winner on validation and on the KPI set (the pre-seeded
baseline), the deliverable's KPI FAR@100 and its holdout figure. Not a test: timings depend on
the machine and its load, which is printed with them (load average before and after).

    python bench/demo_time.py [--which quick|default|both] [--workdir DIR] [--keep]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = {"quick": 90.0, "default": 480.0}
# (step name, first output line that starts it); each step ends where the next one starts.
MARKS: tuple[tuple[str, str], ...] = (
    ("setup (venv check)", ""),
    ("make-demo-data", "deftpipe make-demo-data"),
    ("pre-flight (incl. timing run)", "deftpipe run --workspace"),
    ("phase 1 (AutoML, zero-shot check)", "[phase 1]"),
    ("handoff 1->2 (merged spec, pre-seed)", "[handoff]"),
    ("phase 2 (DEFT loop)", "[phase 2]"),
    ("phase 3 (AutoML + final selection)", "[phase 3]"),
)


@dataclass
class DemoTiming:
    which: str
    total_s: float = 0.0
    rc: int = 0
    steps: dict[str, float] = field(default_factory=dict)
    run_dir: Path | None = None
    load_before: str = ""
    load_after: str = ""


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def run_demo(which: str, ws: Path, log_path: Path) -> DemoTiming:
    """`make demo` (QUICK=1 for 'quick') into `ws`, streaming its output to `log_path` with time stamps."""
    cmd = ["make", "--no-print-directory", "demo", f"DEMO_WS={ws}"] + (["QUICK=1"] if which == "quick" else [])
    out = DemoTiming(which, load_before=_load())
    seen: dict[str, float] = {MARKS[0][0]: 0.0}
    started = time.monotonic()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "160"}
    with open(log_path, "w") as log, subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                      text=True, env=env) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            now = time.monotonic() - started
            log.write(f"{now:8.1f}s  {line}")
            log.flush()  # so the log can be followed while the demo runs
            for name, mark in MARKS[1:]:
                if name not in seen and mark in line:
                    seen[name] = now
            if line.startswith("Run directory:"):
                out.run_dir = Path(line.split(":", 1)[1].strip())
        out.rc = proc.wait()
    out.total_s = time.monotonic() - started
    out.load_after = _load()
    order = [name for name, _ in MARKS if name in seen]
    for name, nxt in zip(order, [*order[1:], None]):
        out.steps[name] = (seen[nxt] if nxt else out.total_s) - seen[name]
    return out


def kpi_figures(rd: Path) -> dict[str, Any]:
    """Phase 1 winner (validation, and KPI = the pre-seeded baseline) vs the deliverable (KPI, holdout)."""
    state = json.loads((rd / "deft_state.json").read_text())
    best = json.loads((rd / "best_model.json").read_text())
    rec = json.loads((rd / "automl_phase1" / "best_rec.json").read_text())
    holdout = best.get("holdout_result") or {}
    return {"phase1_val": float(rec["best"]["score"]), "phase1_kpi": state["iterations"]["baseline"].get("far_pct"),
            "deliverable": best.get("iteration"), "deliverable_kpi": best.get("far_pct"),
            "holdout": holdout.get("far_at_100_pct"),
            "per_iteration_kpi": {k: v.get("far_pct") for k, v in state["iterations"].items()}}


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f} %"


def report(t: DemoTiming, figures: dict[str, Any] | None) -> None:
    target = TARGET_S[t.which]
    verdict = "meets" if t.total_s <= target and t.rc == 0 else "MISSES"
    print(f"\n== make demo{' QUICK=1' if t.which == 'quick' else ''}: {t.total_s:.0f} s wall, target {target:.0f} s "
          f"-> {verdict} (ratio {t.total_s / target:.2f}); exit {t.rc}; load avg before {t.load_before}, "
          f"after {t.load_after}")
    for name, seconds in t.steps.items():
        print(f"   {name:<38} {seconds:7.1f} s")
    if figures is None:
        print("   (no finished run folder: no KPI figures)")
        return
    p1, dl = figures["phase1_kpi"], figures["deliverable_kpi"]
    better = p1 is not None and dl is not None and dl < p1
    print(f"   Phase 1 winner: validation FAR@100 {_pct(figures['phase1_val'])}, KPI FAR@100 {_pct(p1)}")
    print(f"   deliverable ({figures['deliverable']}): KPI FAR@100 {_pct(dl)} -> "
          f"{'lower than' if better else 'NOT lower than'} Phase 1's winner"
          + (f" (ratio {dl / p1:.2f})" if better and p1 else ""))
    print(f"   holdout FAR@100 (deliverable, read once): {_pct(figures['holdout'])}")
    print("   KPI per iteration: " + ", ".join(f"{k} {_pct(v)}" for k, v in figures["per_iteration_kpi"].items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--which", choices=("quick", "default", "both"), default="both")
    ap.add_argument("--workdir", type=Path, default=None, help="Where the fresh workspaces go (default: a temp dir).")
    ap.add_argument("--keep", action="store_true", help="Keep the workspaces and logs.")
    args = ap.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="deftpipe-demo-time-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    print(f"CPU cores: {os.cpu_count()}; workdir {work}; load avg {_load()}")
    failed = 0
    for which in (("quick", "default") if args.which == "both" else (args.which,)):
        ws = work / f"demo_ws_{which}"
        if ws.exists():
            shutil.rmtree(ws)  # fresh workspace every time (make-demo-data --force would keep results/)
        t = run_demo(which, ws, work / f"{which}.log")
        figures = kpi_figures(t.run_dir) if t.run_dir and (t.run_dir / "best_model.json").exists() else None
        report(t, figures)
        print(f"   log: {work / f'{which}.log'}")
        failed += t.rc != 0
    if not args.keep and args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
