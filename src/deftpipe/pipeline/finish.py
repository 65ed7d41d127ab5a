"""Finish of the three-phase run: register Phase 3 as `iterations.final_automl`, re-select the
deliverable (Phase 3 wins only if better on the KPI set), holdout figure, trajectory summary."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from deftpipe.workspace.io import write_text_atomic
from deftpipe.workspace.spec import deep_merge, dump_spec, set_key

EmitFn = Callable[[str], None]


def _contract(doc: dict[str, Any]) -> Any:
    from deftpipe.metrics.contract import MetricContract

    return MetricContract.from_dict(doc["metric_contract"])


def register_phase3(rd: Path, settings: Any, *, warm_start: Path | None, train_csv: Path, emit: EmitFn) -> None:
    """Evaluate Phase 3's winner on the KPI set and commit it as iterations.final_automl.

    `warm_start` None: the trials started from fresh weights (a cold-start ablation).
    """
    from deftpipe.backends import create_backend
    from deftpipe.backends.base import InferRequest
    from deftpipe.metrics.evaluators import evaluate_inference_csv
    from deftpipe.state import StateStore

    started = time.monotonic()
    best_rec = json.loads((rd / "final_automl" / "best_rec.json").read_text())
    ckpt = Path(best_rec["best"]["checkpoint_uri"])
    merged = yaml.safe_load((rd / "specs" / "baseline_spec_automl.yaml").read_text())
    spec = deep_merge(merged, best_rec["best"]["specs"])
    ws_root = str(Path(settings.workspace).resolve())
    set_key(spec, "train.pretrained_model_path", str(warm_start) if warm_start else None)
    set_key(spec, "dataset.classify.images_dir", ws_root)
    set_key(spec, "dataset.classify.train_dataset.csv_path", str(train_csv))
    set_key(spec, "dataset.classify.train_dataset.images_dir", ws_root)
    spec_path = rd / "specs" / "final_automl_train_spec.yaml"
    write_text_atomic(spec_path, dump_spec(spec))
    doc = json.loads((rd / "deft_state.json").read_text())
    contract = _contract(doc)
    out = rd / "final_automl" / "inference" / "inference.csv"
    create_backend(settings.backend).infer(InferRequest(
        checkpoint=ckpt, csv=rd / "inputs" / "kpi.csv", images_dir=Path(ws_root), workspace_root=Path(ws_root),
        out_csv=out, cache_dir=rd / "cache", device=settings.device))
    mr = evaluate_inference_csv(out, contract, out_json=out.parent / "metric_result.json", iter_label="final_automl")
    fields: dict[str, Any] = {"best_ckpt_kind": "phase3_winner", "threshold": mr.threshold,
                              "metric_result": {**mr.to_dict(), "evidence_path": str(out.parent / "metric_result.json")}}
    if contract.name == "far_pct":
        fields["far_pct"] = float(mr.value)
    with StateStore.open(rd) as store:
        store.commit("final_automl", "evaluate", artifacts={"best_ckpt_path": ckpt, "inference_csv": out,
                                                            "training_spec": spec_path},
                     fields=fields, summary=f"Phase 3 winner {best_rec['best']['rec_id']} on KPI: "
                                            f"{mr.value:.4g}{contract.unit} "
                                            f"({f'warm start {warm_start.name}' if warm_start else 'cold start'})",
                     duration_sec=time.monotonic() - started)
    emit(f"[phase 3] winner on KPI: {mr.value:.4g}{contract.unit}")


def final_selection(rd: Path, settings: Any, *, emit: EmitFn) -> tuple[str, list[str]]:
    """Phase 3 becomes the deliverable only if the contract prefers it; returns (deliverable, trajectory)."""
    from deftpipe.deft.context import RunContext
    from deftpipe.deft.loop_stop import holdout_result
    from deftpipe.metrics.contract import MetricResult, select_best
    from deftpipe.state import write_best_model
    from deftpipe.workspace.spec import get

    doc = json.loads((rd / "deft_state.json").read_text())
    contract = _contract(doc)
    best_model_path = rd / "best_model.json"
    best_model = json.loads(best_model_path.read_text())
    loop_best = best_model["iteration"]
    deliverable = loop_best
    p3 = doc["iterations"].get("final_automl")
    if p3 and p3.get("metric_result"):
        results = [MetricResult.from_dict(doc["iterations"][loop_best]["metric_result"], contract),
                   MetricResult.from_dict(p3["metric_result"], contract)]
        index, _ = select_best(results, contract)  # ties keep the loop's best (index 0)
        if index == 1:
            deliverable = "final_automl"
            ctx = RunContext(results_dir=rd, doc=doc)
            hold = holdout_result(ctx, Path(p3["best_ckpt_path"]), p3.get("threshold"))
            spec = yaml.safe_load(Path(p3["training_spec"]).read_text())
            write_best_model(rd, checkpoint=Path(p3["best_ckpt_path"]), threshold=p3.get("threshold"),
                             metric_contract=doc["metric_contract"], metric_result=p3["metric_result"],
                             iteration="final_automl",
                             backbone_type=str(get(spec, "model.backbone.type", "resnet_tiny")),
                             backbone_frozen=bool(get(spec, "model.backbone.freeze_backbone", False)),
                             images_dir=str(Path(settings.workspace).resolve()), training_spec=p3["training_spec"],
                             far_pct=p3.get("far_pct"), holdout_result=hold)
    zero_shot_reference(rd, settings)
    lines = trajectory(rd, doc, deliverable=deliverable)
    write_summary(rd, settings, emit=emit, lines=lines)
    return deliverable, lines


def zero_shot_reference(rd: Path, settings: Any) -> dict[str, Any] | None:
    """The shipped zero-shot scorer on the KPI set, for reference only (never used to select anything)."""
    path = rd / "zero_shot_kpi.json"
    if path.exists():
        return json.loads(path.read_text())
    from deftpipe.metrics.evaluators import read_inference_csv
    from deftpipe.metrics.far import auroc, far_at_recall
    from deftpipe.metrics.zeroshot import score_csv_zero_shot
    from deftpipe.workspace.io import write_json_atomic
    from deftpipe.workspace.spec import load_spec

    ws_root = Path(settings.workspace).resolve()
    spec = load_spec(ws_root / "specs" / "baseline_spec.yaml", settings.spec_overrides())
    out = rd / "zero_shot" / "kpi_inference.csv"
    try:
        score_csv_zero_shot(rd / "inputs" / "kpi.csv", images_dir=ws_root, workspace_root=ws_root, spec=spec,
                            out_csv=out)
        _, scores, is_defect = read_inference_csv(out)
        res = {"far_at_100_pct": far_at_recall(scores, is_defect).far_pct,
               "far_at_99_pct": far_at_recall(scores, is_defect, recall_pct=99.0).far_pct,
               "auroc": auroc(scores, is_defect), "inference_csv": str(out)}
    except Exception:  # noqa: BLE001 - a reference figure must never break the finish
        return None
    write_json_atomic(path, res)
    return res


def trajectory(rd: Path, doc: dict[str, Any], *, deliverable: str | None, holdout: bool = True) -> list[str]:
    """Phase 1 -> baseline -> iter<N> -> Phase 3 lines; `holdout=False` leaves out the holdout line."""
    contract = _contract(doc)
    unit = contract.unit
    lines: list[str] = []
    rec_path = rd / "automl_phase1" / "best_rec.json"
    if rec_path.exists():
        rec = json.loads(rec_path.read_text())
        lines.append(f"Phase 1 best (validation): {rec['best']['score']:.4g}{unit} ({rec['best']['rec_id']})")
    iters = doc["iterations"]
    order = sorted((lab for lab in iters if lab != "final_automl"),
                   key=lambda lab: 0 if lab == "baseline" else int(lab[4:]))
    for lab in order:
        mr = iters[lab].get("metric_result")
        if mr:
            mark = "  ◀ deliverable" if lab == deliverable else ""
            lines.append(f"{lab} (KPI): {mr['value']:.4g}{unit}{mark}")
    p3 = iters.get("final_automl")
    if p3 and p3.get("metric_result"):
        value = p3["metric_result"]["value"]
        if deliverable == "final_automl":
            lines.append(f"Phase 3 (KPI): {value:.4g}{unit}  ◀ deliverable")
        elif deliverable is not None:
            best = iters[deliverable]["metric_result"]["value"]
            lines.append(f"Phase 3 (KPI): {value:.4g}{unit} — not better than the loop's best {best:.4g}{unit}; "
                         f"{deliverable} stays the deliverable (safety net)")
    if not holdout:
        return lines
    zs_path = rd / "zero_shot_kpi.json"
    if zs_path.exists():
        zs = json.loads(zs_path.read_text())
        lines.append(f"Zero-shot scorer (KPI, reference only): FAR@100 {zs['far_at_100_pct']:.4g}%, FAR@99 "
                     f"{zs['far_at_99_pct']:.4g}%, AUROC {zs['auroc']:.4f}")
    best_model = json.loads((rd / "best_model.json").read_text()) if (rd / "best_model.json").exists() else {}
    hold = best_model.get("holdout_result")
    if hold and "far_at_100_pct" in hold:
        extra = ""
        if "far_pct_at_threshold" in hold:
            extra = (f"; at the KPI-chosen threshold FAR {hold['far_pct_at_threshold']:.4g}% / recall "
                     f"{hold['recall_pct_at_threshold']:.4g}%")
        lines.append(f"Holdout (deliverable, read once): FAR@100 {hold['far_at_100_pct']:.4g}%, FAR@99 "
                     f"{hold['far_at_99_pct']:.4g}%, AUROC {hold['auroc']:.4f}{extra}")
    else:
        lines.append("No holdout set: the KPI set was used for model selection, so its figure is optimistic.")
    return lines


def write_summary(rd: Path, settings: Any, *, emit: EmitFn, lines: list[str] | None = None,
                  phase3_skipped: str | None = None) -> Path:
    gate = rd / "automl_phase1" / "zero_shot_gate.json"
    body = ["# deftpipe pipeline summary", ""]
    if gate.exists():
        g = json.loads(gate.read_text())
        flag = "" if g.get("beats") else " **(warning: AutoML did not beat the zero-shot baseline)**"
        body += [f"- Zero-shot check: {g['note']}{flag}", ""]
    if phase3_skipped:
        body += [f"- {phase3_skipped}", ""]
    body += ["## Trajectory", ""] + [f"- {line}" for line in (lines or [])] + [""]
    path = rd / "pipeline_summary.md"
    write_text_atomic(path, "\n".join(body))
    for line in lines or []:
        emit(f"  {line}")
    return path
