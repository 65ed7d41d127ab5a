"""Finalize before `loop_stop`: pick the deliverable by the contract, write best_model.json, the
inference spec, the holdout figure (read once, here) and the per-iteration summaries (SPEC §5)."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pandas as pd

from deftpipe.deft.context import RunContext
from deftpipe.state import StateStore
from deftpipe.state.stages import iteration_number
from deftpipe.workspace.io import write_json_atomic, write_text_atomic
from deftpipe.workspace.layout import PASS_LABEL
from deftpipe.workspace.spec import get, set_key

NAME = "loop_stop"


def inference_spec(training_spec: dict[str, Any], checkpoint: Path) -> dict[str, Any]:
    """The training spec with augmentation off and the deliverable checkpoint named for inference."""
    spec = copy.deepcopy(training_spec)
    aug = get(spec, "dataset.classify.augmentation_config") or {}
    for key in list(aug):
        if key.endswith("_probability"):
            aug[key] = 0.0
    set_key(spec, "dataset.classify.augmentation_config", aug)
    set_key(spec, "inference.checkpoint", str(checkpoint))
    set_key(spec, "train.pretrained_model_path", None)
    set_key(spec, "train.resume_training_checkpoint_path", None)
    return spec


def holdout_result(ctx: RunContext, checkpoint: Path, threshold: float | None) -> dict[str, Any] | None:
    """Score the deliverable once on the holdout set: metrics at the KPI-chosen threshold and its own FAR@100/99, AUROC."""
    holdout = ctx.input_csv("holdout")
    if not holdout.exists():
        return None
    import numpy as np

    from deftpipe.backends import create_backend
    from deftpipe.backends.base import InferRequest
    from deftpipe.metrics.far import auroc, confusion_at, far_at_recall

    out = ctx.results_dir / "holdout" / "inference.csv"
    create_backend(str(ctx.config.get("backend") or "native")).infer(InferRequest(
        checkpoint=checkpoint, csv=holdout, images_dir=ctx.workspace_root, workspace_root=ctx.workspace_root,
        out_csv=out, cache_dir=ctx.cache_dir, device=ctx.device))
    frame = pd.read_csv(out, dtype={"siamese_score": float}, keep_default_na=False, converters={"label": str})
    scores = frame["siamese_score"].to_numpy(float)
    is_defect = (frame["label"] != PASS_LABEL).to_numpy()
    res: dict[str, Any] = {"inference_csv": str(out), "n_rows": int(len(frame)), "n_defect": int(is_defect.sum())}
    if is_defect.any() and (~is_defect).any() and np.isfinite(scores).all():
        at100 = far_at_recall(scores, is_defect, recall_pct=100.0)
        at99 = far_at_recall(scores, is_defect, recall_pct=99.0)
        res.update({"far_at_100_pct": at100.far_pct, "far_at_99_pct": at99.far_pct, "auroc": auroc(scores, is_defect)})
        if threshold is not None:
            fixed = confusion_at(scores, is_defect, float(threshold))
            res.update({"threshold": float(threshold), "far_pct_at_threshold": fixed.far_pct,
                        "recall_pct_at_threshold": fixed.recall_pct})
    write_json_atomic(ctx.results_dir / "holdout" / "holdout_result.json", res)
    return res


def iteration_summaries(ctx: RunContext, store: StateStore) -> list[Path]:
    """`iter<N>_summary.md`: targets, rows added, metric delta — short, for people."""
    doc = store.document
    paths = []
    prev_value: float | None = None
    base = doc["iterations"].get("baseline", {})
    if base.get("metric_result"):
        prev_value = float(base["metric_result"]["value"])
    unit = ctx.contract.unit
    for label, rec in doc["iterations"].items():
        n = iteration_number(label)
        if not n:
            continue
        prev_label = "baseline" if n == 1 else f"iter{n - 1}"
        targets = doc["iterations"].get(prev_label, {}).get("rca_target_defects") or []
        lines = [f"# {label} summary", "",
                 f"- RCA targets (from {prev_label}): {', '.join(targets) or 'none'}"]
        prov = rec.get("provenance_csv")
        if prov and Path(prov).exists():
            p = pd.read_csv(prov, dtype=str)
            added = p[p["source"] == "mining_pool"]["origin"].value_counts()
            lines.append(f"- rows added: {int(added.sum())} ({', '.join(f'{k}={v}' for k, v in added.items()) or 'none'});"
                         f" training rows now {len(p)}")
        if rec.get("sdg_skipped"):
            lines.append("- synthetic defects: skipped (no routed rows)")
        if rec.get("data_mining_skipped"):
            lines.append("- mining: skipped (no routed rows)")
        mr = rec.get("metric_result")
        if mr:
            value = float(mr["value"])
            delta = f" (was {prev_value:.4g}{unit}, delta {value - prev_value:+.4g})" if prev_value is not None else ""
            lines.append(f"- {ctx.contract.display_name or ctx.contract.name}: {value:.4g}{unit}{delta}; "
                         f"{'meets' if mr.get('passed') else 'misses'} the target {ctx.contract.operator} "
                         f"{ctx.contract.target:g}{unit}")
            prev_value = value
        path = ctx.results_dir / f"{label}_summary.md"
        write_text_atomic(path, "\n".join(lines) + "\n")
        paths.append(path)
    return paths


def write_deliverable(ctx: RunContext, store: StateStore) -> tuple[str, str, dict[str, Path]]:
    """Returns (stop reason, deliverable iteration, final artifacts)."""
    import yaml

    from deftpipe.deft.steps import best_so_far, evaluated_labels
    from deftpipe.state import write_best_model

    doc = store.document
    labels = evaluated_labels(doc)
    best = best_so_far(ctx, doc, labels=labels)
    if best is None:
        raise RuntimeError("finalize reached with no evaluated iteration")
    last = doc["iterations"][labels[-1]]
    reason = "metric_met" if last["metric_result"].get("passed") else "max_iterations"
    rec = doc["iterations"][best]
    checkpoint = Path(rec["best_ckpt_path"])
    spec_file = rec.get("training_spec") or ctx.config["specs_file"]
    training_spec = yaml.safe_load(Path(spec_file).read_text()) if Path(spec_file).exists() else ctx.base_spec
    inf_spec_path = ctx.results_dir / "best_model_inference_spec.yaml"
    write_text_atomic(inf_spec_path, ctx.spec_text(inference_spec(training_spec, checkpoint)))
    hold = holdout_result(ctx, checkpoint, rec.get("threshold"))
    far = float(rec["metric_result"]["value"]) if ctx.contract.name == "far_pct" else None
    best_model = write_best_model(
        ctx.results_dir, checkpoint=checkpoint, threshold=rec.get("threshold"),
        metric_contract=doc["metric_contract"], metric_result=rec["metric_result"], iteration=best,
        backbone_type=str(get(training_spec, "model.backbone.type", "resnet_tiny")),
        backbone_frozen=bool(get(training_spec, "model.backbone.freeze_backbone", False)),
        images_dir=str(ctx.workspace_root), training_spec=str(spec_file), far_pct=far, holdout_result=hold)
    summaries = iteration_summaries(ctx, store)
    artifacts: dict[str, Path] = {"best_model_json": best_model, "inference_spec": inf_spec_path}
    for p in summaries:
        artifacts[p.stem] = p
    if hold:
        artifacts["holdout_result"] = ctx.results_dir / "holdout" / "holdout_result.json"
    return reason, best, artifacts
