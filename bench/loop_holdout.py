"""Score every evaluated iteration of a finished DEFT run on the holdout set (for reports, not selection).

    python bench/loop_holdout.py WS/results/run_<TS>

The loop itself reads the holdout set once, for the deliverable only; this benchmark shows the whole
trajectory on holdout so a gain on the KPI set can be checked against data the loop never saw.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results_dir", type=Path)
    args = ap.parse_args()

    from deftpipe.backends import create_backend
    from deftpipe.backends.base import InferRequest
    from deftpipe.metrics.evaluators import read_inference_csv
    from deftpipe.metrics.far import auroc, far_at_recall

    rd = args.results_dir.resolve()
    state = json.loads((rd / "deft_state.json").read_text())
    ws = Path(state["config"]["workspace_root"])
    holdout = rd / "inputs" / "holdout.csv"
    if not holdout.exists():
        print(f"{rd}: the workspace has no holdout set", file=sys.stderr)
        return 2
    backend = create_backend(str(state["config"].get("backend") or "native"))
    print("| iteration | KPI FAR@100 | holdout FAR@100 | holdout FAR@99 | holdout AUROC |\n|---|---|---|---|---|")
    for label, rec in state["iterations"].items():
        if not rec.get("best_ckpt_path") or not rec.get("metric_result"):
            continue
        out = rd / "bench_holdout" / f"{label}.csv"
        backend.infer(InferRequest(checkpoint=Path(rec["best_ckpt_path"]), csv=holdout, images_dir=ws,
                                   workspace_root=ws, out_csv=out, cache_dir=rd / "cache"))
        _, scores, is_defect = read_inference_csv(out)
        print(f"| {label} | {rec['metric_result']['value']:.2f} % | {far_at_recall(scores, is_defect).far_pct:.2f} % | "
              f"{far_at_recall(scores, is_defect, recall_pct=99.0).far_pct:.2f} % | {auroc(scores, is_defect):.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
