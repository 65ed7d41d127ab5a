"""Mining k-NN scale benchmark: 1 000 targets vs 10^4, 10^5, 10^6 random 128-d pool vectors.

Each case runs in its own child process so its peak RSS is its own. Cases: exact label-filtered
search (5 labels, the default path of `run_mining`), exact search over one label, and the
approximate (HNSW) index. Target: 10^6 exact in <= 30 s and <= 2 GiB on a 2-core machine.

    .venv/bin/python bench/mining_scale.py [--sizes 10000,100000,1000000] [--modes exact_labels,exact,ann]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

DIM = 128
N_TARGETS = 1000
N_LABELS = 5
TOP_K = 5
TARGET_SECONDS = 30.0
TARGET_GIB = 2.0


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def run_case(n_pool: int, mode: str, seed: int = 0) -> dict[str, float | int | str]:
    import numpy as np

    from deftpipe.mining import l2_normalize, search_by_label

    rng = np.random.default_rng(seed)
    pool = np.empty((n_pool, DIM), np.float32)
    for start in range(0, n_pool, 100_000):  # float32 straight away: no float64 copy of the pool
        stop = min(start + 100_000, n_pool)
        pool[start:stop] = rng.standard_normal((stop - start, DIM), dtype=np.float32)
    pool = l2_normalize(pool)
    targets = l2_normalize(rng.standard_normal((N_TARGETS, DIM), dtype=np.float32))
    labels = np.array([f"defect_{i}" for i in range(N_LABELS)], dtype=object)
    filtered = mode != "exact"
    pool_labels = labels[rng.integers(0, N_LABELS, n_pool)] if filtered else np.full(n_pool, "all", dtype=object)
    target_labels = labels[rng.integers(0, N_LABELS, N_TARGETS)] if filtered else np.full(N_TARGETS, "all",
                                                                                          dtype=object)
    rss_data = _rss_gib()
    t0 = time.perf_counter()
    hits = search_by_label(targets, target_labels, lambda lab: pool[pool_labels == lab], pool_labels,
                           top_k=TOP_K, min_similarity=-1.0, filter_by_label=True, approximate=mode == "ann")
    seconds = time.perf_counter() - t0
    return {"n_pool": n_pool, "mode": mode, "seconds": round(seconds, 3), "peak_rss_gib": round(_rss_gib(), 3),
            "data_rss_gib": round(rss_data, 3), "hits": int(len(hits))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--modes", default="exact_labels,exact,ann")
    parser.add_argument("--ann-max", type=int, default=100_000,
                        help="largest pool for the HNSW case (building HNSW on 10^6 rows takes minutes on 2 cores)")
    parser.add_argument("--one", nargs=2, metavar=("N", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_case(int(args.one[0]), args.one[1])))
        return
    rows = []
    print(f"{N_TARGETS} targets, {DIM}-d, top-{TOP_K}; exact = sgemm + FAISS heaps (same result as IndexFlatIP)")
    print(f"{'pool rows':>10} {'mode':>13} {'seconds':>8} {'peak RSS GiB':>13} {'data GiB':>9} {'ok':>4}")
    for n in (int(s) for s in args.sizes.split(",")):
        for mode in args.modes.split(","):
            if mode == "ann" and n > args.ann_max:
                print(f"{n:>10} {mode:>13}  skipped (--ann-max {args.ann_max})", flush=True)
                continue
            out = subprocess.run([sys.executable, __file__, "--one", str(n), mode], capture_output=True, text=True,
                                 check=True, env={**os.environ})
            row = json.loads(out.stdout.strip().splitlines()[-1])
            ok = row["seconds"] <= TARGET_SECONDS and row["peak_rss_gib"] <= TARGET_GIB
            rows.append(row)
            print(f"{n:>10} {mode:>13} {row['seconds']:>8.2f} {row['peak_rss_gib']:>13.3f} "
                  f"{row['data_rss_gib']:>9.3f} {'yes' if ok else 'NO':>4}", flush=True)
    by = {(r["n_pool"], r["mode"]): r for r in rows}
    for mode in args.modes.split(","):
        sizes = sorted(n for n, m in by if m == mode)
        if len(sizes) >= 2:
            lo, hi = by[(sizes[0], mode)], by[(sizes[-1], mode)]
            ratio = float(hi["seconds"]) / max(float(lo["seconds"]), 1e-9)
            print(f"{mode}: time x{ratio:.1f} for pool x{sizes[-1] // sizes[0]}")
    print(f"cpus: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
