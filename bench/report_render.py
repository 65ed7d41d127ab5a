"""Report render time: a cold process with the figure cache on disk vs. no cache vs. a warm re-render.

Each cold number is a fresh `python` process (what `deftpipe report RD` and a resumed run pay):
it imports `deftpipe.report`, renders `DEFT_Loop_Report.html` in place and says whether matplotlib
was imported. Target (issue #7): cold render with cached figures ≤ 0.5 s at demo scale. The cache
lives in `RESULTS_DIR/cache/report/` (state by file signature, figures by data hash, page by view
hash); the run fills it at commit time. "No cache" (DEFTPIPE_REPORT_CACHE=0) is the old behaviour.

    python bench/report_render.py RESULTS_DIR [--repeat 3]
    # a QUICK run dir:  deftpipe make-demo-data /tmp/rr_ws --scale small --seed 0 --force
    #                   deftpipe run --workspace /tmp/rr_ws --max-iterations 1 --recommendations 2 \\
    #                       --epochs 2 --noise-rerun off --seed 0 --yes
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from deftpipe.report import render_report
t1 = time.perf_counter()
path = render_report(sys.argv[1])
t2 = time.perf_counter()
if sys.argv[2] == "warm":
    render_report(sys.argv[1])
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "cold_s": t2 - t0, "warm_s": t3 - t2, "size": path.stat().st_size,
                  "matplotlib": "matplotlib" in sys.modules}))
"""


def _child(rd: Path, *, cache: bool) -> dict[str, float]:
    env = {**os.environ, "DEFTPIPE_REPORT_CACHE": "1" if cache else "0"}
    started = time.perf_counter()  # the process wall time includes the warm re-render (≈ 0.1 s)
    argv = [sys.executable, "-c", _CHILD, str(rd), "warm" if cache else "once"]
    out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout
    wall = time.perf_counter() - started
    return {**json.loads(out.strip().splitlines()[-1]), "wall_s": wall}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results_dir", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    src = args.results_dir.resolve()
    if not (src / "deft_state.json").is_file():
        ap.error(f"{src} has no deft_state.json; pass a run directory")
    # In place: a moved run refuses to load (its state holds absolute paths). Only the report and its
    # cache are rewritten, with the same content.
    rd = src
    rows: dict[str, list[float]] = {"no cache (every figure drawn)": [], "cold process, figures cached": []}
    walls: dict[str, list[float]] = {name: [] for name in rows}
    warm: list[float] = []
    mpl_cached: list[bool] = []
    size = 0
    _child(rd, cache=True)  # fill the cache, as the run does at commit time
    for _ in range(args.repeat):
        r = _child(rd, cache=False)
        rows["no cache (every figure drawn)"].append(r["cold_s"])
        walls["no cache (every figure drawn)"].append(r["wall_s"])
        r = _child(rd, cache=True)
        rows["cold process, figures cached"].append(r["cold_s"])
        walls["cold process, figures cached"].append(r["wall_s"])
        warm.append(r["warm_s"])
        mpl_cached.append(bool(r["matplotlib"]))
        size = int(r["size"])
    base = statistics.median(rows["no cache (every figure drawn)"])
    print(f"report render, {src.name} (median of {args.repeat} fresh processes; render = imports + render, "
          "process = + interpreter start and exit)")
    for name, vals in rows.items():
        med = statistics.median(vals)
        print(f"  {name:<34} render {med:6.3f} s   process {statistics.median(walls[name]):6.3f} s   "
              f"ratio vs no cache {med / base:5.2f}")
    print(f"  {'warm re-render (same process)':<34} {statistics.median(warm):6.3f} s")
    print(f"  matplotlib imported on a cached render: {any(mpl_cached)}; report size {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
