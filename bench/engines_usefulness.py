"""Are the data engines useful? Train on the demo base set, find the weakest KPI samples, add
(a) synthetic defects, (b) mined real rows, (c) both — retrain each (and a no-augmentation control
with the same extra training) and compare, median over seeds, in one run.

    python bench/engines_usefulness.py --scale small --seeds 3 --epochs 8 --retrain-epochs 4

Scores KPI and holdout FAR@100 / FAR@99 / AUROC, plus FAR@100 restricted to PASS + the planted-gap
defect types (the demo's `bridge`, `foreign_material`). The KPI set picks the weak samples, so the
holdout columns are the unbiased ones.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

ARMS = ("none", "sdg", "mined", "both")
GAP_LABELS = ("bridge", "foreign_material")


def _scores(csv: Path) -> dict[str, float]:
    from deftpipe.metrics.evaluators import read_inference_csv
    from deftpipe.metrics.far import auroc, far_at_recall

    frame, scores, is_defect = read_inference_csv(csv)
    gap = (frame["label"].isin(GAP_LABELS) | (frame["label"] == "PASS")).to_numpy()
    out = {"far100": far_at_recall(scores, is_defect).far_pct,
           "far99": far_at_recall(scores, is_defect, recall_pct=99.0).far_pct, "auroc": auroc(scores, is_defect)}
    out["gap_far100"] = far_at_recall(scores[gap], is_defect[gap]).far_pct if is_defect[gap].any() else float("nan")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", default="small")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=8, help="baseline training epochs")
    ap.add_argument("--retrain-epochs", type=int, default=4, help="fine-tuning epochs of every arm")
    ap.add_argument("--num-sdg", type=int, default=40)
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("bench/out/engines_usefulness"))
    args = ap.parse_args()

    from deftpipe.backends import create_backend
    from deftpipe.backends.base import InferRequest, TrainRequest
    from deftpipe.deft import data_merge, rca, routing
    from deftpipe.demo import make_demo_workspace
    from deftpipe.mining import (CheckpointEmbedder, MiningConfig, MiningHistory, MiningLayout, ProtectedSets,
                                 run_mining)
    from deftpipe.sdg import SdgConfig, run_sdg, supported_labels
    from deftpipe.workspace.io import write_csv_atomic
    from deftpipe.workspace.layout import Workspace
    from deftpipe.workspace.spec import ImageSettings, load_spec, set_key
    from deftpipe.workspace.tables import read_samples_csv

    out = args.out.resolve()
    ws_path = out / f"ws_{args.scale}"
    if not (ws_path / "kpi" / "testing_set.csv").exists():
        make_demo_workspace(ws_path, scale=args.scale, seed=0, force=ws_path.exists())
    ws = Workspace.at(ws_path)
    backend = create_backend("native")
    base_rows = read_samples_csv(ws.training_csv)
    pool = read_samples_csv(ws.mining_pool_csv)
    # Everything below is in workspace-root coordinates (prefix images/ once).
    inputs = out / "inputs"
    rebased = {}
    for name, path in (("train", ws.training_csv), ("val", ws.validation_csv), ("kpi", ws.kpi_csv),
                       ("holdout", ws.holdout_csv)):
        rebased[name] = inputs / f"{name}.csv"
        write_csv_atomic(rebased[name], data_merge.rebase(read_samples_csv(path), "images"))
    settings = ImageSettings.from_spec(load_spec(ws.spec_path))
    results: dict[str, list[dict[str, Any]]] = {arm: [] for arm in ARMS}
    results["baseline"] = []
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        run = out / f"seed{seed}"
        spec = load_spec(ws.spec_path, [f"train.num_epochs={args.epochs}"])
        set_key(spec, "dataset.classify.images_dir", str(ws.root))
        base = backend.train(TrainRequest(spec=spec, train_csv=rebased["train"], val_csv=rebased["val"],
                                          images_dir=ws.root, workspace_root=ws.root, out_dir=run / "baseline",
                                          cache_dir=out / "cache", seed=seed))
        ckpt = base.best_val_ckpt
        kpi_inf = run / "baseline_kpi.csv"
        backend.infer(InferRequest(checkpoint=ckpt, csv=rebased["kpi"], images_dir=ws.root, workspace_root=ws.root,
                                   out_csv=kpi_inf, cache_dir=out / "cache"))
        hold_inf = run / "baseline_holdout.csv"
        backend.infer(InferRequest(checkpoint=ckpt, csv=rebased["holdout"], images_dir=ws.root,
                                   workspace_root=ws.root, out_csv=hold_inf, cache_dir=out / "cache"))
        results["baseline"].append({"kpi": _scores(kpi_inf), "holdout": _scores(hold_inf)})
        inference = pd.read_csv(kpi_inf, dtype={"siamese_score": float}, keep_default_na=False,
                                converters={c: str for c in ("input_path", "golden_path", "label", "object_name")})
        gaps = rca.run(inference, rca.RcaConfig(rca_top_k=50)).gaps
        gaps = rca.add_filepath(gaps, images_rel="", first_light=settings.lights[0], image_ext=settings.image_ext)
        routed = routing.run(gaps, routing.RoutingConfig(sdg_labels=frozenset(supported_labels()),
                                                         pool_labels=frozenset(pool["label"].unique())))
        iter_dir = ws.root / "results" / f"bench_seed{seed}" / "iter1"
        sdg = run_sdg(routed.to_sdg, read_samples_csv(rebased["train"]), workspace_root=ws.root,
                      train_images_dir=ws.root, lights=settings.lights, image_ext=settings.image_ext,
                      iter_dir=iter_dir, run_rel=f"results/bench_seed{seed}",
                      cfg=SdgConfig(num_sdg=args.num_sdg, seed=seed, iteration=1))
        layout = MiningLayout(workspace_root=ws.root, lights=settings.lights, image_ext=settings.image_ext,
                              pool_images_dir=ws.images_dir, targets_images_dir=ws.root, cache_dir=out / "cache")
        history = MiningHistory()
        history.add_rows(read_samples_csv(rebased["train"]), kind="training", iter_label="iter1",
                         first_light=settings.lights[0], image_ext=settings.image_ext)
        protected = ProtectedSets.from_csvs(validation=ws.validation_csv, kpi=ws.kpi_csv, holdout=ws.holdout_csv,
                                            images_dir=ws.images_dir, lights=settings.lights,
                                            image_ext=settings.image_ext, workspace_root=ws.root)
        mined = run_mining(routed.to_mining, pool, embedder=CheckpointEmbedder(backend, ckpt, ws.root, out / "cache"),
                           cfg=MiningConfig(top_k_per_target=args.top_k, layout=layout), history=history,
                           protected=protected).mined
        for arm in ARMS:
            new = {"none": base_rows.iloc[0:0], "sdg": sdg.rows, "mined": mined,
                   "both": pd.concat([sdg.rows, mined], ignore_index=True)}[arm]
            merged = data_merge.run(base_rows, None, new.assign(origin=arm), data_merge.MergeConfig(iteration=1))
            train_csv = run / arm / "train.csv"
            write_csv_atomic(train_csv, merged.combined)
            ft = load_spec(ws.spec_path, [f"train.num_epochs={args.retrain_epochs}"])
            set_key(ft, "dataset.classify.images_dir", str(ws.root))
            set_key(ft, "train.pretrained_model_path", str(ckpt))
            res = backend.train(TrainRequest(spec=ft, train_csv=train_csv, val_csv=rebased["val"], images_dir=ws.root,
                                             workspace_root=ws.root, out_dir=run / arm / "train",
                                             cache_dir=out / "cache", seed=seed))
            cell: dict[str, Any] = {"rows_added": len(new)}
            for split in ("kpi", "holdout"):
                csv = run / arm / f"{split}.csv"
                backend.infer(InferRequest(checkpoint=res.best_val_ckpt, csv=rebased[split], images_dir=ws.root,
                                           workspace_root=ws.root, out_csv=csv, cache_dir=out / "cache"))
                cell[split] = _scores(csv)
            results[arm].append(cell)
            print(f"seed {seed} {arm:<6} +{len(new):<4} KPI FAR@100 {cell['kpi']['far100']:6.2f}%  gap-FAR@100 "
                  f"{cell['kpi']['gap_far100']:6.2f}%  holdout FAR@100 {cell['holdout']['far100']:6.2f}%", flush=True)
        print(f"seed {seed} done in {time.perf_counter() - t0:.0f}s", flush=True)

    def med(arm: str, split: str, key: str) -> float:
        return statistics.median(c[split][key] for c in results[arm])

    print(f"\nMedian of {args.seeds} seed(s); {args.scale} demo; baseline {args.epochs} epochs, each arm fine-tuned "
          f"{args.retrain_epochs} epochs from it.\n")
    print("| arm | KPI FAR@100 | KPI FAR@99 | KPI AUROC | KPI gap-type FAR@100 | holdout FAR@100 | holdout FAR@99 | "
          "holdout AUROC | holdout gap-type FAR@100 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for arm in ("baseline", *ARMS):
        print(f"| {arm} | {med(arm, 'kpi', 'far100'):.2f} % | {med(arm, 'kpi', 'far99'):.2f} % | "
              f"{med(arm, 'kpi', 'auroc'):.4f} | {med(arm, 'kpi', 'gap_far100'):.2f} % | "
              f"{med(arm, 'holdout', 'far100'):.2f} % | {med(arm, 'holdout', 'far99'):.2f} % | "
              f"{med(arm, 'holdout', 'auroc'):.4f} | {med(arm, 'holdout', 'gap_far100'):.2f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
