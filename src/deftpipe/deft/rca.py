"""Root-cause analysis of the chosen candidate's KPI inference (SPEC §5).

Ranks the weakest samples per label against the recorded threshold `t` and the
target-FAR threshold `t_far`; pure over tables. `write_outputs` lays the files
out under `<iter>/rca_results/<TS>/`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deftpipe.errors import StageFailed
from deftpipe.workspace.io import write_json_atomic, write_parquet_atomic, write_text_atomic
from deftpipe.workspace.layout import PASS_LABEL

NAME = "rca"


@dataclass(frozen=True)
class RcaConfig:
    rca_top_k: int = 50
    is_far_contract: bool = True
    far_target_pct: float = 5.0
    recall_pct: float = 100.0
    threshold: float | None = None  # recorded threshold t; None: computed at recall_pct


@dataclass(frozen=True)
class RcaResult:
    gaps: pd.DataFrame
    threshold: float
    threshold_far: float
    metrics: dict[str, Any]
    target_defects: tuple[str, ...]
    breakdown: str
    unreachable_reason: str | None = None
    weakest: pd.DataFrame = field(default_factory=pd.DataFrame)


def unreachable(inference: pd.DataFrame, recall_pct: float) -> str | None:
    """Why the KPI cannot be reached on this inference, or None."""
    from deftpipe.metrics.far import far_at_recall

    scores = inference["siamese_score"].to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(scores))
    if len(bad):
        return f"non-finite siamese_score on {len(bad)} row(s) (first: CSV line {int(bad[0]) + 2})"
    is_defect = (inference["label"] != PASS_LABEL).to_numpy()
    if not is_defect.any():
        return "the KPI set has no defect rows, so recall is undefined"
    if is_defect.all():
        return "the KPI set has no PASS rows, so FAR is undefined"
    res = far_at_recall(scores, is_defect, recall_pct=recall_pct)
    if res.far_pct >= 100.0:
        return f"only FAR = 100% reaches {recall_pct:g}% recall: the model ranks a defect below every PASS row"
    return None


def _per_label(frame: pd.DataFrame, t: float, t_far: float) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for label, grp in frame.groupby("label", sort=True):
        s = grp["siamese_score"].to_numpy(dtype=float)
        flagged_t = int((s > t).sum())
        flagged_far = int((s > t_far).sum())
        out[str(label)] = {
            "count": int(len(grp)),
            "flagged_at_t": flagged_t,
            "flagged_at_t_far": flagged_far,
            "rate_at_t_pct": 100.0 * flagged_t / len(grp),
            "rate_at_t_far_pct": 100.0 * flagged_far / len(grp),
            "score_min": float(s.min()),
            "score_median": float(np.median(s)),
            "score_max": float(s.max()),
        }
    return out


def _confusion(frame: pd.DataFrame, threshold: float) -> dict[str, Any]:
    from deftpipe.metrics.far import confusion_at

    r = confusion_at(frame["siamese_score"].to_numpy(float), (frame["label"] != PASS_LABEL).to_numpy(), threshold)
    return {"threshold": threshold, "tp": r.tp, "fp": r.fp, "tn": r.tn, "fn": r.fn,
            "far_pct": r.far_pct, "recall_pct": r.recall_pct}


def run(inference: pd.DataFrame, cfg: RcaConfig) -> RcaResult:
    """Weak samples per label; `unreachable_reason` set (and no gaps) when the KPI cannot be met at all."""
    from deftpipe.metrics.far import far_at_recall, threshold_for_far

    reason = unreachable(inference, cfg.recall_pct)
    if reason:
        return RcaResult(pd.DataFrame(), math.nan, math.nan, {}, (), "", unreachable_reason=reason)
    frame = inference.reset_index(drop=True).copy()
    scores = frame["siamese_score"].to_numpy(dtype=float)
    is_defect = (frame["label"] != PASS_LABEL).to_numpy()
    t = cfg.threshold if cfg.threshold is not None else far_at_recall(scores, is_defect, recall_pct=cfg.recall_pct).threshold
    t_far = threshold_for_far(scores, is_defect, max_far_pct=cfg.far_target_pct) if cfg.is_far_contract else t

    defects = frame[is_defect].copy()
    defects["weakness"] = t_far - defects["siamese_score"].astype(float)
    defects["is_miss"] = defects["siamese_score"].astype(float) <= t_far
    defects["is_false_alarm"] = False
    defects = defects.sort_values(["siamese_score", "input_path", "object_name"], ascending=[True, True, True],
                                  kind="mergesort")
    passes = frame[~is_defect].copy()
    passes["weakness"] = passes["siamese_score"].astype(float) - t
    passes["is_false_alarm"] = passes["siamese_score"].astype(float) > t
    passes["is_miss"] = False
    passes = passes.sort_values(["siamese_score", "input_path", "object_name"], ascending=[False, True, True],
                                kind="mergesort")
    ranked = pd.concat([defects, passes])
    gaps = ranked.groupby("label", sort=True, group_keys=False).head(cfg.rca_top_k).reset_index(drop=True)

    per_label = _per_label(frame, t, t_far)
    misses = defects.groupby("label")["is_miss"].sum()
    fa_rate = {lab: st["rate_at_t_pct"] for lab, st in per_label.items() if lab == PASS_LABEL}
    defect_labels = sorted(misses.index, key=lambda lab: (-int(misses[lab]), lab))
    targets = [lab for lab in defect_labels if int(misses[lab]) > 0]
    if fa_rate.get(PASS_LABEL, 0.0) > 0:
        targets.append(PASS_LABEL)
    metrics = {"at_t": _confusion(frame, t), "at_t_far": _confusion(frame, t_far), "per_label": per_label,
               "n_rows": int(len(frame)), "rca_top_k": cfg.rca_top_k}
    weakest = ranked.assign(_w=ranked["weakness"]).sort_values("_w", ascending=False, kind="mergesort").head(10)
    lines = [f"RCA at threshold t = {t:.6g} (recall {cfg.recall_pct:g}%), t_far = {t_far:.6g} "
             f"(FAR <= {cfg.far_target_pct:g}%)" if cfg.is_far_contract else f"RCA at threshold t = {t:.6g}"]
    for lab, st in per_label.items():
        kind = "false alarms" if lab == PASS_LABEL else "caught"
        lines.append(f"  {lab:<22} n={st['count']:<5} {kind} at t: {st['flagged_at_t']:<5} "
                     f"at t_far: {st['flagged_at_t_far']}")
    lines.append(f"targets (by misses, then false-alarm rate): {', '.join(targets) or 'none'}")
    return RcaResult(gaps=gaps.drop(columns=[c for c in ("_w",) if c in gaps]), threshold=float(t),
                     threshold_far=float(t_far), metrics=metrics, target_defects=tuple(targets),
                     breakdown="\n".join(lines) + "\n", weakest=weakest.drop(columns=["_w"]))


def add_filepath(gaps: pd.DataFrame, *, images_rel: str, first_light: str, image_ext: str) -> pd.DataFrame:
    """`filepath` = the first light's test image, relative to the workspace root."""
    out = gaps.copy()
    prefix = f"{images_rel.strip('/')}/" if images_rel.strip("/") else ""
    out.insert(0, "filepath", prefix + out["input_path"].astype(str) + "/" + out["object_name"].astype(str)
               + f"_{first_light}{image_ext}")
    return out


def write_outputs(result: RcaResult, out_dir: Path, *, thumbnails: list[tuple[str, np.ndarray]] | None = None) -> dict[str, Path]:
    """Write the SPEC §5 files; returns the artifact paths. Unreachable → only unreachable_kpi.txt."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if result.unreachable_reason:
        path = out_dir / "unreachable_kpi.txt"
        write_text_atomic(path, f"KPI unreachable: {result.unreachable_reason}.\n")
        return {"unreachable": path}
    paths = {
        "rca_gaps_parquet": out_dir / "kpi_gaps.parquet",
        "threshold": out_dir / "threshold.txt",
        "metrics": out_dir / "metrics.json",
        "breakdown": out_dir / "weak_samples_breakdown.txt",
    }
    write_parquet_atomic(paths["rca_gaps_parquet"], result.gaps)
    write_text_atomic(paths["threshold"], f"{result.threshold:.17g}\n")
    write_json_atomic(paths["metrics"], {**result.metrics, "threshold": result.threshold,
                                         "threshold_far": result.threshold_far,
                                         "target_defects": list(result.target_defects)})
    write_text_atomic(paths["breakdown"], result.breakdown)
    if thumbnails:
        import cv2

        from deftpipe.workspace.io import write_atomic

        thumbs = out_dir / "thumbnails"
        thumbs.mkdir(exist_ok=True)
        for name, img in thumbnails:
            ok, buf = cv2.imencode(".png", img)
            if ok:
                write_atomic(thumbs / f"{name}.png", buf.tobytes())
        paths["thumbnails"] = thumbs
    return paths
