"""Trained model vs the shipped zero-shot scorer on a demo workspace's KPI set (median of N seeds).

    python bench/model_vs_zeroshot.py --scale medium --seeds 3 --epochs 10

Prints FAR@100 / FAR@99 / AUROC of the registered, tolerant zero-shot scorer and of the
native model trained on the base training set (one row per seed, then the median), all
measured in this run on the same KPI CSV.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path


def _metrics(csv: Path) -> tuple[float, float, float]:
    from deftpipe.metrics.evaluators import read_inference_csv
    from deftpipe.metrics.far import auroc, far_at_recall

    _, scores, is_defect = read_inference_csv(csv)
    return (far_at_recall(scores, is_defect).far_pct, far_at_recall(scores, is_defect, recall_pct=99.0).far_pct,
            auroc(scores, is_defect))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", type=Path, default=None, help="existing workspace (default: generate one)")
    ap.add_argument("--scale", default="medium")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--out", type=Path, default=Path("bench/out/model_vs_zeroshot"))
    args = ap.parse_args()

    from deftpipe.backends import create_backend
    from deftpipe.backends.base import InferRequest, TrainRequest
    from deftpipe.metrics.zeroshot import score_csv_zero_shot
    from deftpipe.workspace.layout import Workspace
    from deftpipe.workspace.spec import load_spec

    out = args.out.resolve()
    ws_path = args.workspace or out / f"ws_{args.scale}"
    if args.workspace is None and not (ws_path / "kpi" / "testing_set.csv").exists():
        from deftpipe.demo import make_demo_workspace

        make_demo_workspace(ws_path, scale=args.scale, seed=0, force=ws_path.exists())
    ws = Workspace.at(ws_path)
    spec = load_spec(ws.spec_path, [f"train.num_epochs={args.epochs}"])
    rows = []
    zs_csv = out / "zero_shot_kpi.csv"
    t0 = time.perf_counter()
    score_csv_zero_shot(ws.kpi_csv, images_dir=ws.images_dir, workspace_root=ws.root, spec=spec, out_csv=zs_csv)
    zs = _metrics(zs_csv)
    print(f"zero-shot (registered, 1px-tolerant): FAR@100 {zs[0]:.2f}%  FAR@99 {zs[1]:.2f}%  AUROC {zs[2]:.4f}  "
          f"({time.perf_counter() - t0:.1f}s)", flush=True)
    backend = create_backend("native")
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        run = out / f"seed{seed}"
        res = backend.train(TrainRequest(spec=spec, train_csv=ws.training_csv, val_csv=ws.validation_csv,
                                         images_dir=ws.images_dir, workspace_root=ws.root, out_dir=run / "train",
                                         cache_dir=out / "cache", seed=seed))
        best = None
        for kind, ckpt in (("best_val", res.best_val_ckpt), ("latest", res.latest_ckpt)):
            csv = run / f"kpi_{kind}.csv"
            backend.infer(InferRequest(checkpoint=ckpt, csv=ws.kpi_csv, images_dir=ws.images_dir,
                                       workspace_root=ws.root, out_csv=csv, cache_dir=out / "cache"))
            m = _metrics(csv)
            if kind == "best_val":
                best = m
        assert best is not None
        rows.append(best)
        print(f"model seed {seed} (best_val): FAR@100 {best[0]:.2f}%  FAR@99 {best[1]:.2f}%  AUROC {best[2]:.4f}  "
              f"({time.perf_counter() - t0:.0f}s)", flush=True)
    med = [statistics.median(r[i] for r in rows) for i in range(3)]
    print("\n| scorer | FAR@100 | FAR@99 | AUROC |\n|---|---|---|---|")
    print(f"| zero-shot (registered, tolerant) | {zs[0]:.2f} % | {zs[1]:.2f} % | {zs[2]:.4f} |")
    per = " / ".join(f"{r[0]:.1f}" for r in rows)
    print(f"| native model, {args.epochs} epochs, median of {args.seeds} seeds ({per}) | {med[0]:.2f} % | "
          f"{med[1]:.2f} % | {med[2]:.4f} |")
    print(f"\nratio zero-shot FAR@100 / model FAR@100 = {zs[0] / max(med[0], 1e-9):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
