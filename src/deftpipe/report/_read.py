"""Readers from one run artifact to small JSON-ready summaries (cacheable by file signature).

Each reader takes a path and returns plain data; a torn or malformed optional
artifact yields what could be read, never an exception the renderer must handle
(callers still wrap them: a report never fails on an optional artifact).
"""
from __future__ import annotations

import csv
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

N_BINS = 30


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def read_text(path: Path, *, max_chars: int = 200_000) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[:max_chars]


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _float(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def train_log(path: Path) -> dict[str, list[Any]]:
    """Per-epoch `train_loss` / `val_loss` from `train_log.jsonl` (a torn last line is skipped)."""
    out: dict[str, list[Any]] = {"epoch": [], "train_loss": [], "val_loss": []}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict) or "epoch" not in rec:
            continue
        out["epoch"].append(rec.get("epoch"))
        out["train_loss"].append(_float(rec.get("train_loss")))
        out["val_loss"].append(_float(rec.get("val_loss")))
    return out


def _histogram(values: list[float], lo: float, hi: float, n_bins: int = N_BINS) -> list[int]:
    counts = [0] * n_bins
    width = (hi - lo) / n_bins or 1.0
    for v in values:
        counts[min(n_bins - 1, max(0, int((v - lo) / width)))] += 1
    return counts


def score_summary(path: Path, threshold: float | None) -> dict[str, Any]:
    """Per-label score histograms on shared bins and the confusion at `threshold` (defect when score > t)."""
    scores: dict[str, list[float]] = {}
    for row in csv_rows(path):
        s = _float(row.get("siamese_score"))
        if s is None:
            continue
        label = row.get("label", "")
        label = label if label == "PASS" else label.strip().lower()
        scores.setdefault(label, []).append(s)
    every = [v for vs in scores.values() for v in vs]
    lo, hi = (min(every), max(every)) if every else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    if threshold is not None:
        lo, hi = min(lo, threshold), max(hi, threshold)
    per_label: dict[str, dict[str, Any]] = {}
    tp = fp = tn = fn = 0
    for label in sorted(scores, key=lambda x: (x != "PASS", x)):
        vs = scores[label]
        flagged = sum(1 for v in vs if threshold is not None and v > threshold)
        per_label[label] = {"n": len(vs), "flagged": flagged, "hist": _histogram(vs, lo, hi),
                            "min": min(vs), "max": max(vs)}
        if label == "PASS":
            fp += flagged
            tn += len(vs) - flagged
        else:
            tp += flagged
            fn += len(vs) - flagged
    return {"lo": lo, "hi": hi, "per_label": per_label, "threshold": threshold,
            "confusion": {"tp": tp, "fp": fp, "tn": tn, "fn": fn} if threshold is not None else None}


def label_counts_parquet(path: Path) -> dict[str, int]:
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=None)
    if "label" not in table.column_names:
        return {"(rows)": table.num_rows} if table.num_rows else {}
    return dict(sorted(Counter(str(v) for v in table.column("label").to_pylist()).items()))


def knn_summary(path: Path) -> list[dict[str, Any]]:
    rows = []
    for r in csv_rows(path):
        rows.append({"label": r.get("label", ""), "candidate_count": r.get("candidate_count", ""),
                     "kept_count": r.get("kept_count", ""), "rejected_count": r.get("rejected_count", ""),
                     "similarity_threshold": _float(r.get("similarity_threshold"))})
    return rows


def mining_pool(path: Path) -> dict[str, Any]:
    """Rows by origin and the similarity values of mined rows (for the histogram)."""
    origins: Counter[str] = Counter()
    sims: list[float] = []
    for r in csv_rows(path):
        origins[r.get("origin") or "?"] += 1
        s = _float(r.get("similarity"))
        if s is not None:
            sims.append(s)
    return {"origins": dict(sorted(origins.items())), "similarity": sims}


def provenance_origins(path: Path) -> dict[str, Any]:
    origins: Counter[str] = Counter()
    n = 0
    for r in csv_rows(path):
        origins[r.get("origin") or r.get("source") or "?"] += 1
        n += 1
    return {"n_rows": n, "origins": dict(sorted(origins.items()))}


def sdg_rows(path: Path) -> dict[str, dict[str, str]]:
    """object_name -> {label, generator} from `SDG_result.csv`."""
    return {r.get("object_name", ""): {"label": r.get("label", ""), "generator": r.get("generator", "")}
            for r in csv_rows(path)}


def trials(path: Path) -> list[dict[str, Any]]:
    out = []
    for r in csv_rows(path):
        try:
            params = json.loads(r.get("params") or "{}")
        except ValueError:
            params = {}
        out.append({
            "number": r.get("number", ""), "rec_id": r.get("rec_id", ""), "state": r.get("state", ""),
            "score": _float(r.get("score")), "params": params if isinstance(params, dict) else {},
            "budget_epochs": r.get("budget_epochs", ""),
            "is_noise_rerun": str(r.get("is_noise_rerun", "")).lower() in ("true", "1"),
            "rerun_of": r.get("rerun_of", ""), "retry_of": r.get("retry_of", ""),
            "best_val_loss": _float(r.get("best_val_loss")), "duration_s": _float(r.get("duration_s")),
            "error": r.get("error", ""),
        })
    return out
