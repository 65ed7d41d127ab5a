"""Small but complete run directories for report tests, written through the real `StateStore`.

`build_run(rd, kind)` gives a `complete`, `in_progress`, `halted` or `failed` run with
every artifact the report reads (tiny images, CSVs, parquets, logs), in well under a second.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from deftpipe.state import StateStore

FAR_CONTRACT: dict[str, Any] = {
    "name": "far_pct", "display_name": "FAR", "operator": "<", "target": 5.0, "unit": "%",
    "evaluator": {"type": "builtin", "id": "far_at_recall"},
    "constraints": [{"name": "recall_pct", "display_name": "Recall", "operator": ">=", "target": 100.0, "unit": "%"}],
}
LABELS = ["PASS"] * 16 + ["bridge", "bridge", "missing", "shift"]
FAIL_MESSAGE = "data_merge: 3 training row(s) leak into the KPI set (see merge_validation.json)"


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _png(path: Path, seed: int, size: int = 32) -> Path:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (size, size), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    return path


def _inference(rd: Path, label: str, shift: float) -> tuple[Path, float]:
    rng = np.random.default_rng(len(label))
    scores = [float(rng.normal(-1.0, 0.5)) if lab == "PASS" else float(rng.normal(1.0 + shift, 0.3))
              for lab in LABELS]
    frame = pd.DataFrame({"input_path": "kpi/test", "golden_path": "kpi/golden", "label": LABELS,
                          "object_name": [f"R{i}@1" for i in range(len(LABELS))], "siamese_score": scores})
    path = rd / label / "inference" / "best_val" / "inference.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, float_format="%.17g")
    threshold = min(s for s, lab in zip(scores, LABELS) if lab != "PASS") - 1e-6
    return path, threshold


def _evaluate(store: StateStore, label: str, value: float, shift: float) -> None:
    rd = store.results_dir
    csv, threshold = _inference(rd, label, shift)
    mr = {"name": "far_pct", "value": value, "unit": "%", "passed": value < 5.0,
          "constraints": {"recall_pct": 100.0}, "diagnostics": {"far_at_99_pct": value, "auroc": 0.9}}
    store.commit(label, "evaluate", artifacts={"inference_csv": csv},
                 fields={"threshold": threshold, "metric_result": mr, "far_pct": value, "best_ckpt_kind": "best_val"},
                 summary=f"FAR {value:.4g}% (target < 5%)", duration_sec=2)


def _train(store: StateStore, label: str) -> None:
    rd = store.results_dir
    ckpt = _write(rd / label / "train" / "model_epoch_002_step_004.pth", b"weights")
    _write(rd / label / "train" / "train_log.jsonl",
           "".join(json.dumps({"epoch": e, "step": 2 * e, "train_loss": 1.0 / e, "val_loss": 1.2 / e}) + "\n"
                   for e in (1, 2)) + '{"epoch": 3, "tra')  # a torn last line, as a live run can leave
    store.commit(label, "train", artifacts={"best_ckpt_path": ckpt}, fields={"val_loss": 0.6},
                 summary="trained 2 epoch(s)", duration_sec=21)


def _rca(store: StateStore, label: str) -> None:
    rd = store.results_dir
    folder = rd / label / "rca_results" / "20260101_000000"
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"label": ["bridge", "PASS"], "siamese_score": [0.1, 0.2], "weakness": [0.3, 0.1]}).to_parquet(
        folder / "kpi_gaps.parquet")
    for i, name in enumerate(("PASS_R1_1", "bridge_R17_1")):
        _png(folder / "thumbnails" / f"{i:02d}_{name}.png", seed=i, size=24)
    store.commit(label, "rca", artifacts={"rca_gaps_parquet": folder / "kpi_gaps.parquet"},
                 fields={"rca_target_defects": ["bridge", "PASS"], "rca_threshold": 0.0},
                 summary="2 weak sample(s); targets: bridge, PASS", duration_sec=1)


def _iteration_data(store: StateStore, label: str, *, fail_merge: bool) -> None:
    rd = store.results_dir
    n = int(label[4:])
    routing = rd / label / "routing_results" / "20260101_000001"
    routing.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"label": ["bridge", "PASS", "PASS"]}).to_parquet(routing / "mining_gaps.parquet")
    pd.DataFrame({"label": ["bridge", "PASS", "PASS", "missing"]}).to_parquet(routing / "sdg_gaps.parquet")
    store.commit(label, "routing", artifacts={"routing_mining_parquet": routing / "mining_gaps.parquet",
                                              "routing_sdg_parquet": routing / "sdg_gaps.parquet"},
                 summary="mining: PASS=2, bridge=1; sdg: PASS=2, bridge=1, missing=1", duration_sec=1)
    images = rd / label / "dataset" / "images"
    sdg_rows = []
    for k, lab in enumerate(("bridge", "missing", "PASS")):
        obj = f"R{k}@1__sdg{n}_{k}"
        for light in ("LightA", "LightB"):
            _png(images / f"synthetic_iter{n}_ng" / f"{obj}_{light}.png", seed=10 + k)
            _png(images / f"synthetic_iter{n}_ok" / f"{obj}_{light}.png", seed=20 + k)
        sdg_rows.append({"object_name": obj, "label": lab, "generator": "cutpaste" if lab != "PASS" else "nuisance"})
    sdg_csv = rd / label / "sdg" / "SDG_result.csv"
    sdg_csv.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(sdg_rows).to_csv(sdg_csv, index=False)
    store.commit(label, "sdg", artifacts={"sdg_result_csv": sdg_csv}, fields={"sdg_skipped": False},
                 summary="3 synthetic pair(s)", duration_sec=1)
    mining = rd / label / "mining_filter"
    mining.mkdir(parents=True, exist_ok=True)
    pool = pd.DataFrame({"label": ["bridge", "missing", "PASS", "bridge", "PASS"],
                         "origin": ["sdg", "sdg", "sdg", "mined", "mined"],
                         "similarity": [None, None, None, 0.95, 0.97]})
    pool.to_csv(mining / "mining_pool.csv", index=False)
    _write(mining / "knn_summary.csv", "label,candidate_count,kept_count,rejected_count,similarity_threshold\n"
                                       "bridge,3,1,1,0.9\nPASS,5,1,0,0.9\n")
    _write(mining / "mining_summary.txt", "2 mined\n")
    store.commit(label, "data_mining", artifacts={"mining_pool_csv": mining / "mining_pool.csv",
                                                  "mining_summary": mining / "mining_summary.txt"},
                 fields={"mining_mined_count": 2, "data_mining_skipped": False},
                 summary="2 novel row(s) mined (exact k-NN)", duration_sec=3)
    dataset = rd / label / "dataset"
    prov = pd.DataFrame({"source": ["base_train"] * 10 + ["mining_pool"] * 5,
                         "origin": ["base"] * 10 + ["sdg"] * 3 + ["mined"] * 2})
    prov.to_csv(dataset / f"train_combined_iter{n}_provenance.csv", index=False)
    _write(dataset / f"train_combined_iter{n}.csv", "input_path,golden_path,label,object_name\n")
    if fail_merge:
        store.commit(label, "data_merge", status="error", summary=FAIL_MESSAGE, duration_sec=1)
        return
    store.commit(label, "data_merge", artifacts={
        "combined_training_csv": dataset / f"train_combined_iter{n}.csv",
        "provenance_csv": dataset / f"train_combined_iter{n}_provenance.csv"},
        summary="15 training rows (+5)", duration_sec=1)


def _extras(rd: Path) -> None:
    _write(rd / "preflight.md", "| setting | value | source |\n|---|---|---|\n| max_iterations | 1 | user |\n\n"
                                "Gates that can still halt the run:\n- leakage at data merge (hard stop, exit 4)\n")
    _write(rd / "provenance.json", json.dumps({
        "packages": {"deftpipe": "0.1.0"}, "python": "3.11", "git_sha": "abc123", "seed": 0,
        "inputs": {"training_csv": {"path": "/ws/train/base/training_set.csv", "sha256": "f" * 64}}}))
    auto = rd / "automl_phase1"
    auto.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([
        {"number": 0, "rec_id": "trial_0000", "state": "complete", "score": 12.0,
         "params": json.dumps({"train.optim.lr": 0.001, "train.optim.optim": "adamw"}), "is_noise_rerun": False},
        {"number": 1, "rec_id": "trial_0001", "state": "pruned", "score": None,
         "params": json.dumps({"train.optim.lr": 0.01, "train.optim.optim": "sgd"}), "is_noise_rerun": False},
        {"number": 2, "rec_id": "trial_0002", "state": "disqualified", "score": 90.0,
         "params": json.dumps({"train.optim.lr": 0.1, "train.optim.optim": "sgd"}), "is_noise_rerun": False,
         "error": "predictions collapse to one class"},
        {"number": 3, "rec_id": "trial_0003", "state": "complete", "score": 14.0,
         "params": json.dumps({"train.optim.lr": 0.001, "train.optim.optim": "adamw"}), "is_noise_rerun": True},
    ]).to_csv(auto / "trials.csv", index=False)
    _write(auto / "best_rec.json", json.dumps({"schema_version": 1, "experiment_id": "x", "metric_name": "far_pct",
                                               "direction": "minimize", "best": {"rec_id": "trial_0000", "score": 12.0},
                                               "all_recs": []}))


def build_run(rd: Path, kind: str = "complete") -> Path:
    """A run directory in state `kind` (`complete`, `in_progress`, `halted`, `failed`); returns it resolved."""
    store = StateStore.create(rd, kpi_target="FAR < 5% at Recall=100%", metric_contract=FAR_CONTRACT,
                              max_iterations=1, config={"mining_filter": {"min_similarity": 0.9}})
    rd = store.results_dir
    _extras(rd)
    _train(store, "baseline")
    _evaluate(store, "baseline", 40.0, 0.0)
    _rca(store, "baseline")
    _iteration_data(store, "iter1", fail_merge=kind == "failed")
    if kind in ("failed", "in_progress"):
        return rd
    _train(store, "iter1")
    if kind == "halted":
        _evaluate(store, "iter1", 95.0, -0.5)
        store.set_halt(reason="FAR rose from 40% to 95% (more than the regression margin)", iter_label="iter1",
                       value=95.0, best=40.0, margin=40.0)
        return rd
    _evaluate(store, "iter1", 3.0, 1.0)
    bm = _write(rd / "best_model.json", json.dumps({
        "checkpoint": str(rd / "iter1" / "train" / "model_epoch_002_step_004.pth"), "threshold": 0.25,
        "iteration": "iter1", "metric_result": {"name": "far_pct", "value": 3.0, "unit": "%", "passed": True},
        "backbone_type": "resnet_tiny"}))
    _write(rd / "holdout" / "holdout_result.json", json.dumps({"far_at_100_pct": 4.5, "far_pct_at_threshold": 3.9,
                                                                "recall_pct_at_threshold": 100.0}))
    store.complete({"best_model_json": bm}, summary="loop stopped (metric_met); deliverable = iter1", duration_sec=1)
    return rd
