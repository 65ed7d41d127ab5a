"""Stage executors of the loop driver: read inputs from state and disk, call the pure stage, write outputs.

Each executor returns a `StepResult` (artifacts, value fields, one-line summary)
that the driver commits; it writes only under its own folder, which it clears
first so a stage interrupted mid-way restarts clean.
"""
from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deftpipe.deft import data_merge, evaluate, rca, routing
from deftpipe.deft import train as train_stage
from deftpipe.deft.context import RunContext
from deftpipe.errors import ContractError, RegressionHalt, StageFailed
from deftpipe.state import StateStore
from deftpipe.faults import fault_point
from deftpipe.state.stages import iteration_label, iteration_number
from deftpipe.workspace.io import write_csv_atomic, write_json_atomic, write_parquet_atomic, write_text_atomic
from deftpipe.workspace.layout import PASS_LABEL
from deftpipe.workspace.tables import read_samples_csv


@dataclass
class StepResult:
    summary: str
    artifacts: dict[str, Path] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)


def _ts() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d_%H%M%S")


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def _backend(ctx: RunContext) -> Any:
    from deftpipe.backends import create_training_backend

    # Runs made before the key existed kept best_val + latest, the backend default.
    return create_training_backend(str(ctx.config.get("backend") or "native"),
                                   keep_checkpoints=str(ctx.config.get("keep_checkpoints") or "best_latest"))


def _iter_record(store: StateStore, label: str) -> dict[str, Any]:
    return dict(store.document["iterations"].get(label) or {})


def _prev_label(label: str) -> str:
    n = iteration_number(label) or 0
    return iteration_label(n - 1)


def evaluated_labels(doc: dict[str, Any]) -> list[str]:
    """Iterations (in order) whose evaluate is committed: they carry a metric_result and a checkpoint."""
    out = []
    for label, rec in doc["iterations"].items():
        if rec.get("metric_result") and rec.get("best_ckpt_path") and label != "final_automl":
            out.append(label)
    return sorted(out, key=lambda lab: iteration_number(lab) or 0)


def best_so_far(ctx: RunContext, doc: dict[str, Any], *, labels: list[str] | None = None) -> str | None:
    """Best evaluated iteration by the metric contract (never blindly the latest)."""
    from deftpipe.metrics.contract import MetricResult, select_best

    labels = labels if labels is not None else evaluated_labels(doc)
    if not labels:
        return None
    results = [MetricResult.from_dict(doc["iterations"][lab]["metric_result"], ctx.contract) for lab in labels]
    index, _ = select_best(results, ctx.contract)
    return labels[index]


def current_training_csv(ctx: RunContext, store: StateStore, label: str) -> Path:
    """The training table iteration `label` starts from: previous combined CSV, or the rebased base CSV."""
    n = iteration_number(label) or 0
    if n <= 1:
        return ctx.input_csv("training")
    return Path(_iter_record(store, iteration_label(n - 1))["combined_training_csv"])


# --- train / evaluate / rca ---------------------------------------------------------------------------------


def step_train(ctx: RunContext, store: StateStore, label: str, progress: Any) -> StepResult:
    n = iteration_number(label) or 0
    out_dir = _fresh(ctx.iter_dir(label) / "train")
    if n == 0:
        train_csv, init = ctx.input_csv("training"), None
    else:
        rec = _iter_record(store, label)
        train_csv = Path(rec["combined_training_csv"])
        best = best_so_far(ctx, store.document)
        init = Path(_iter_record(store, best)["best_ckpt_path"]) if best else None
    spec = ctx.training_spec(train_csv=train_csv, pretrained=init)
    spec_path = ctx.results_dir / "specs" / f"{label}_train_spec.yaml"
    write_text_atomic(spec_path, ctx.spec_text(spec))
    res = train_stage.run(_backend(ctx), spec=spec, train_csv=train_csv, val_csv=ctx.input_csv("validation"),
                          workspace_root=ctx.workspace_root, out_dir=out_dir, cache_dir=ctx.cache_dir,
                          seed=ctx.seed, device=ctx.device, progress=progress)
    for ckpt in res.candidates.values():
        if not Path(ckpt).resolve().is_relative_to(out_dir.resolve()):
            raise StageFailed("train", f"checkpoint {ckpt} is not under {out_dir}; the backend must write a new one.")
    init_note = f" from {best} checkpoint" if n and init else ""
    return StepResult(
        summary=f"trained {res.result.epochs_run} epoch(s){init_note}; best val loss {res.result.best_val_loss:.4f}",
        artifacts={"training_spec": spec_path},
        fields={"val_loss": float(res.result.best_val_loss)},
    )


def _candidates(ctx: RunContext, store: StateStore, label: str) -> dict[str, Path]:
    rec = _iter_record(store, label)
    if rec.get("source") == "automl_phase1" and rec.get("best_ckpt_path"):
        return {"best_val": Path(rec["best_ckpt_path"])}
    return train_stage.candidates_from_dir(ctx.iter_dir(label) / "train")


def _fmt(ctx: RunContext, value: float) -> str:
    c = ctx.contract
    return f"{value:.4g}{c.unit}"


def step_evaluate(ctx: RunContext, store: StateStore, label: str, progress: Any) -> StepResult:
    out_dir = _fresh(ctx.iter_dir(label) / "inference")
    cands = _candidates(ctx, store, label)
    if not cands:
        raise StageFailed("evaluate", f"no checkpoint to evaluate for {label}; its train stage left no status.json.")
    try:
        res = evaluate.run(_backend(ctx), cands, csv=ctx.input_csv("kpi"), images_dir=ctx.workspace_root,
                           workspace_root=ctx.workspace_root, out_dir=out_dir, contract=ctx.contract,
                           cache_dir=ctx.cache_dir, device=ctx.device, progress=progress, iter_label=label)
    except ContractError as exc:
        _non_finite_scores_stop(out_dir, exc)
        raise
    mr = res.metric_result
    fields: dict[str, Any] = {"best_ckpt_kind": res.chosen_kind, "threshold": mr.threshold,
                              "metric_result": {**mr.to_dict(), "evidence_path": str(res.metric_json)}}
    if ctx.contract.name == "far_pct":
        fields["far_pct"] = float(mr.value)
    prev = best_so_far(ctx, store.document)
    delta = ""
    if prev:
        delta = f"{_fmt(ctx, store.document['iterations'][prev]['metric_result']['value'])} → "
    diag = mr.diagnostics or {}
    extra = ""
    if "far_at_99_pct" in diag and "auroc" in diag:
        extra = f" (FAR@99 {diag['far_at_99_pct']:.3g}%, AUROC {diag['auroc']:.4f})"
    summary = (f"{ctx.contract.display_name or ctx.contract.name} {delta}{_fmt(ctx, mr.value)} "
               f"(target {ctx.contract.operator} {ctx.contract.target:g}{ctx.contract.unit}; "
               f"{'PASS' if mr.passed else 'not met'}){extra} · candidate {res.chosen_kind}")
    return StepResult(summary=summary, artifacts={"best_ckpt_path": res.checkpoint, "inference_csv": res.inference_csv},
                      fields=fields)


def _non_finite_scores_stop(out_dir: Path, exc: ContractError) -> None:
    """SPEC §5: a non-finite score makes the KPI unreachable — a hard stop, not a retryable input error."""
    for csv in sorted(out_dir.glob("*/inference.csv")):
        try:
            frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
            continue  # an unreadable CSV is the evaluator's ContractError, re-raised by the caller
        if "siamese_score" not in frame.columns:
            continue
        scores = pd.to_numeric(frame["siamese_score"], errors="coerce")
        n_bad = int((~np.isfinite(scores.to_numpy(float))).sum())
        if n_bad:
            why = (f"candidate {csv.parent.name} gave {n_bad} of {len(scores)} KPI row(s) a missing or non-finite "
                   f"siamese_score ({exc.message})")
            write_text_atomic(out_dir / "unreachable_kpi.txt", f"KPI unreachable: {why}.\n")
            raise StageFailed("evaluate", f"KPI unreachable: {why} (see {out_dir / 'unreachable_kpi.txt'}).",
                              hint="The model diverged or the backend wrote no scores; check its training log, "
                                   "then start a new run.") from exc


def _thumbnails(ctx: RunContext, weakest: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    import cv2

    from deftpipe.workspace.images import load_pairs
    from deftpipe.workspace.paths import ImageLocator

    if weakest.empty:
        return []
    s = ctx.image_settings
    loc = ImageLocator(ctx.workspace_root, ctx.workspace_root, s.lights, s.image_ext)
    try:
        test, golden = load_pairs(weakest.reset_index(drop=True), loc, grayscale=s.grayscale)
    except ContractError:
        return []
    out = []
    for i, row in enumerate(weakest.itertuples()):
        pair = np.concatenate([golden[i, 0], np.full((golden.shape[2], 2), 255, np.uint8), test[i, 0]], axis=1)
        pair = cv2.resize(pair, (pair.shape[1] * 2, pair.shape[0] * 2), interpolation=cv2.INTER_NEAREST)
        out.append((f"{i:02d}_{row.label}_{str(row.object_name).replace('@', '_')}", pair))
    return out


def step_rca(ctx: RunContext, store: StateStore, label: str, progress: Any) -> StepResult:
    rec = _iter_record(store, label)
    inference = pd.read_csv(rec["inference_csv"], dtype={"siamese_score": float}, keep_default_na=False,
                            converters={c: str for c in ("input_path", "golden_path", "label", "object_name")})
    c = ctx.contract
    cfg = rca.RcaConfig(rca_top_k=int(ctx.config.get("rca_top_k", 50)), is_far_contract=c.name == "far_pct",
                        far_target_pct=float(c.target), recall_pct=_recall_pct(c), threshold=rec.get("threshold"))
    result = rca.run(inference, cfg)
    root = ctx.iter_dir(label) / "rca_results"
    if root.exists():
        shutil.rmtree(root)
    out_dir = root / _ts()
    if result.unreachable_reason:
        rca.write_outputs(result, out_dir)
        exc = StageFailed("rca", f"KPI unreachable: {result.unreachable_reason} (see {out_dir / 'unreachable_kpi.txt'}).",
                          hint="Check the KPI set's labels and the model's scores; the loop cannot close this gap.")
        raise exc
    s = ctx.image_settings
    gaps = rca.add_filepath(result.gaps, images_rel="", first_light=s.lights[0], image_ext=s.image_ext)
    result = rca.RcaResult(**{**result.__dict__, "gaps": gaps})
    paths = rca.write_outputs(result, out_dir, thumbnails=_thumbnails(ctx, result.weakest))
    n_miss = int(gaps["is_miss"].sum())
    n_fa = int(gaps["is_false_alarm"].sum())
    return StepResult(
        summary=f"{len(gaps)} weak sample(s): {n_miss} miss(es) at t_far, {n_fa} false alarm(s); "
                f"targets: {', '.join(result.target_defects) or 'none'}",
        artifacts={"rca_gaps_parquet": paths["rca_gaps_parquet"]},
        fields={"rca_threshold": result.threshold, "rca_target_defects": list(result.target_defects)},
    )


def _recall_pct(contract: Any) -> float:
    for cons in contract.constraints:
        if cons.name == "recall_pct":
            return float(cons.target)
    return 100.0


# --- routing / sdg / mining / merge -------------------------------------------------------------------------


def _pool_rows(ctx: RunContext) -> pd.DataFrame | None:
    pool = ctx.config.get("mining_pool_csv")
    if not pool or not Path(pool).exists():
        return None
    return read_samples_csv(pool, name=str(pool))


def step_routing(ctx: RunContext, store: StateStore, label: str, progress: Any) -> StepResult:
    from deftpipe.sdg import supported_labels

    gaps = pd.read_parquet(_iter_record(store, _prev_label(label))["rca_gaps_parquet"])
    pool = _pool_rows(ctx)
    pool_labels = frozenset(pool["label"].unique()) if pool is not None else frozenset()
    result = routing.run(gaps, routing.RoutingConfig(sdg_labels=frozenset(supported_labels()), pool_labels=pool_labels))
    root = ctx.iter_dir(label) / "routing_results"
    if root.exists():
        shutil.rmtree(root)
    out = root / _ts()
    out.mkdir(parents=True)
    write_parquet_atomic(out / "mining_gaps.parquet", result.to_mining)
    write_parquet_atomic(out / "sdg_gaps.parquet", result.to_sdg)
    write_text_atomic(out / "routing_summary.txt", result.summary() + "\n")
    return StepResult(summary=result.summary(), artifacts={"routing_mining_parquet": out / "mining_gaps.parquet",
                                                           "routing_sdg_parquet": out / "sdg_gaps.parquet"})


def step_sdg(ctx: RunContext, store: StateStore, label: str, progress: Any) -> StepResult:
    from deftpipe.sdg import SdgConfig, run_sdg

    n = iteration_number(label) or 1
    rec = _iter_record(store, label)
    gaps = pd.read_parquet(rec["routing_sdg_parquet"])
    iter_dir = ctx.iter_dir(label)
    for sub in (iter_dir / "sdg", iter_dir / "dataset" / "images"):
        if sub.exists():
            shutil.rmtree(sub)
    train_rows = read_samples_csv(current_training_csv(ctx, store, label))
    s = ctx.image_settings
    sdg_cfg = ctx.config.get("sdg") or {}
    cfg = SdgConfig(num_sdg=int(sdg_cfg.get("num_sdg", 20)), base=str(sdg_cfg.get("base", "test")), seed=ctx.seed,
                    iteration=n)
    try:
        res = run_sdg(gaps, train_rows, workspace_root=ctx.workspace_root, train_images_dir=ctx.workspace_root,
                      lights=s.lights, image_ext=s.image_ext, iter_dir=iter_dir, run_rel=ctx.run_rel, cfg=cfg,
                      progress=progress)
    except ContractError as exc:
        raise StageFailed("sdg", exc.message, hint=exc.hint) from exc
    if res.skipped:
        return StepResult(summary=f"skipped: {res.skip_reason}", fields={"sdg_skipped": True})
    write_csv_atomic(iter_dir / "sdg" / "sdg_rows.csv", res.rows)
    counts = ", ".join(f"{k}={v}" for k, v in res.rows["label"].value_counts().sort_index().items())
    return StepResult(summary=f"{len(res.rows)} synthetic pair(s): {counts}",
                      artifacts={"sdg_result_csv": res.result_csv or iter_dir / "sdg" / "SDG_result.csv",
                                 "sdg_allocation_json": res.allocation_json or iter_dir / "sdg" / "allocation.json"},
                      fields={"sdg_skipped": False})


def step_data_mining(ctx: RunContext, store: StateStore, label: str, progress: Any) -> StepResult:
    from deftpipe.deft.data_mining import run_data_mining

    return run_data_mining(ctx, store, label, progress)


def step_data_merge(ctx: RunContext, store: StateStore, label: str, progress: Any) -> StepResult:
    n = iteration_number(label) or 1
    rec = _iter_record(store, label)
    out_dir = ctx.iter_dir(label) / "dataset"
    out_dir.mkdir(parents=True, exist_ok=True)
    combined_path = out_dir / f"train_combined_{label}.csv"
    prov_path = out_dir / f"train_combined_{label}_provenance.csv"
    report_path = out_dir / "merge_validation.json"
    for p in (combined_path, prov_path, report_path):
        p.unlink(missing_ok=True)
    new_rows = pd.read_csv(rec["mining_pool_csv"], dtype=str, keep_default_na=False) if rec.get("mining_pool_csv") \
        else pd.DataFrame(columns=["input_path", "golden_path", "label", "object_name", "origin"])
    if n == 1:
        previous = read_samples_csv(ctx.config["training_csv"])
        prev_prov = None
    else:
        prev = _iter_record(store, iteration_label(n - 1))
        previous = pd.read_csv(prev["combined_training_csv"], dtype=str, keep_default_na=False)
        prev_prov = pd.read_csv(prev["provenance_csv"], dtype=str, keep_default_na=False)
    merged = data_merge.run(previous, prev_prov, new_rows, data_merge.MergeConfig(iteration=n, images_rel=ctx.images_rel))
    s = ctx.image_settings
    protected = {name: read_samples_csv(ctx.config[key]) for name, key in
                 (("val", "validation_csv"), ("kpi", "kpi_test_csv"), ("holdout", "holdout_csv"))
                 if ctx.config.get(key) and Path(ctx.config[key]).exists()}
    report = data_merge.validate(merged.combined, workspace_root=ctx.workspace_root, lights=s.lights,
                                 image_ext=s.image_ext, protected=protected, images_rel=ctx.images_rel,
                                 training_csv=str(combined_path), validation_csv=str(ctx.config["validation_csv"]))
    write_json_atomic(report_path, report)
    if report["status"] != "ok":
        exc = StageFailed("data_merge", "; ".join(report["problems"]) + f" (see {report_path})",
                          hint="Remove the offending rows from the mining pool and start a new run.")
        raise exc
    write_csv_atomic(combined_path, merged.combined)
    fault_point("csv_merge")  # chaos checks: the combined CSV without its provenance; the restart clears both
    write_csv_atomic(prov_path, merged.provenance)
    by_origin = merged.provenance["origin"].value_counts()
    return StepResult(
        summary=f"{len(merged.combined)} training rows (+{merged.n_added}: "
                f"{int(by_origin.get('sdg', 0))} sdg rows in all, {int(by_origin.get('mined', 0))} mined rows in all); "
                f"leakage 0, missing files 0",
        artifacts={"combined_training_csv": combined_path, "provenance_csv": prov_path,
                   "merge_validation_report": report_path})


STEPS = {"train": step_train, "evaluate": step_evaluate, "rca": step_rca, "routing": step_routing,
         "sdg": step_sdg, "data_mining": step_data_mining, "data_merge": step_data_merge}


def run_stage(ctx: RunContext, store: StateStore, label: str, stage: str, *, progress_factory: Any = None) -> StepResult:
    progress = progress_factory(f"{label} · {stage}") if progress_factory else None
    return STEPS[stage](ctx, store, label, progress)


# --- regression gate and finalize ---------------------------------------------------------------------------


def regression_margin_exceeded(contract: Any, value: float, best: float, margin: float | None) -> tuple[bool, float]:
    """SPEC §5 gate: True when `value` is worse than `best` by more than the margin."""
    lower_is_better = contract.operator in ("<", "<=")
    worse_by = (value - best) if lower_is_better else (best - value)
    if margin is not None:
        return worse_by > margin, margin
    if contract.unit == "%" and lower_is_better:
        allowed = max(best, 1.0)  # worse than 2x best and more than 1 point worse
        return value > 2 * best and worse_by > 1.0, allowed
    allowed = 0.1 * abs(best)
    return worse_by > allowed, allowed


def regression_gate(ctx: RunContext, store: StateStore, label: str) -> None:
    doc = store.document
    labels = [lab for lab in evaluated_labels(doc) if lab != label]
    best = best_so_far(ctx, doc, labels=labels)
    if best is None:
        return
    value = float(doc["iterations"][label]["metric_result"]["value"])
    best_value = float(doc["iterations"][best]["metric_result"]["value"])
    margin = ctx.config.get("regression_margin")
    exceeded, allowed = regression_margin_exceeded(ctx.contract, value, best_value,
                                                   None if margin is None else float(margin))
    if not exceeded:
        return
    from deftpipe.state.store import resume_command

    command = resume_command(store.results_dir) + " --accept-regression"
    reason = (f"{label} scored {value:.4g}{ctx.contract.unit}, worse than the best so far ({best}: "
              f"{best_value:.4g}{ctx.contract.unit}) by more than the margin {allowed:.4g}")
    store.set_halt(reason=reason, iter_label=label, value=value, best=best_value, margin=allowed,
                   resume_command=command)
    raise RegressionHalt(f"regression gate: {reason}.", hint=f"Inspect the run, then `{command}` to continue "
                                                             "from the best checkpoint so far.")


def finalize(ctx: RunContext, store: StateStore) -> tuple[str, str, dict[str, Path]]:
    from deftpipe.deft.loop_stop import write_deliverable

    return write_deliverable(ctx, store)
