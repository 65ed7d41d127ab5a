"""The report's view model: committed state + artifacts on disk -> plain dicts the template only prints.

Every optional artifact is read inside `_safe`: a missing or unreadable one becomes
a note in the report, never a failed render.
"""
from __future__ import annotations

import base64
import logging
import math
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from deftpipe.report import _charts, _read
from deftpipe.report._cache import ReportCache
from deftpipe.report.status import label_order, ordered_labels, primary_value, status_from_doc
from deftpipe.state.stages import BASELINE, FINAL_AUTOML, iteration_number

log = logging.getLogger(__name__)

MAX_GALLERY_PAIRS = 8
MAX_WEAK_THUMBS = 10
# Thumbnails above this size are decoded and downscaled; demo-scale PNGs are embedded as they are.
MAX_RAW_IMAGE_BYTES = 40_000
MAX_THUMB_SIDE = 192
_IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp")

STATUS_TEXT = {
    "complete": "Complete",
    "in_progress": "In progress",
    "halted": "Halted by the regression gate",
    "failed": "Failed",
}


class _Notes:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, text: str) -> None:
        if text not in self.items:
            self.items.append(text)


def _safe(notes: _Notes, what: str, fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - an optional artifact never breaks the report
        log.debug("report: %s unreadable", what, exc_info=True)
        notes.add(f"{what}: could not be read ({type(exc).__name__}: {exc})")
        return None


def _fmt(value: Any, unit: str = "", digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}g}{unit}"
    return f"{value}{unit}"


def _duration(seconds: float | int | None) -> str:
    if seconds is None:
        return "—"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def image_uri(path: Path) -> str | None:
    """A data URI for an image file, downscaled when large; None when missing."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    if len(raw) <= MAX_RAW_IMAGE_BYTES and path.suffix.lower() == ".png":
        return png_uri(raw)
    import cv2
    import numpy as np

    img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        return None
    h, w = img.shape[:2]
    scale = MAX_THUMB_SIDE / max(h, w)
    if scale < 1:
        img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", img)
    return png_uri(buf.tobytes()) if ok else None


def _path(value: Any) -> Path | None:
    return Path(value) if isinstance(value, str) and value else None


def _prev_label(labels: list[str], label: str) -> str | None:
    loop = [lab for lab in labels if iteration_number(lab) is not None]
    if label not in loop:
        return None
    i = loop.index(label)
    return loop[i - 1] if i > 0 else None


# --- sections ---------------------------------------------------------------------------------------


def _headline(doc: Mapping[str, Any], rd: Path, st: dict[str, Any], notes: _Notes) -> dict[str, Any]:
    contract = doc.get("metric_contract") or {}
    unit = contract.get("unit", "")
    best = st["best"]
    deliverable = None
    bm_path = rd / "best_model.json"
    if bm_path.exists():
        bm = _safe(notes, "best_model.json", lambda: _read.read_json(bm_path))
        if isinstance(bm, Mapping):
            mr = bm.get("metric_result") or {}
            deliverable = {"iter": bm.get("iteration"), "checkpoint": bm.get("checkpoint"),
                           "threshold": _fmt(bm.get("threshold"), digits=6),
                           "value": _fmt(mr.get("value"), unit), "passed": bool(mr.get("passed")),
                           "backbone": bm.get("backbone_type")}
    failure = st["failure"]
    halt = st["halt"]
    nxt = st["current_stage"]
    if halt:
        halt = {**halt, "value_text": _fmt(halt.get("value"), unit), "best_text": _fmt(halt.get("best"), unit),
                "margin_text": _fmt(halt.get("margin"), unit)}
    return {
        "status": st["status"],
        "status_text": STATUS_TEXT.get(st["status"], st["status"]),
        "phase": st["phase"],
        "kpi_target": doc.get("kpi_target"),
        "metric_name": contract.get("display_name") or contract.get("name", ""),
        "target_text": f"{contract.get('operator', '')} {_fmt(contract.get('target'), unit)}",
        "best": None if best is None else {**best, "value_text": _fmt(best["value"], unit)},
        "passed": bool(best and best["passed"]),
        "deliverable": deliverable,
        "stop_reason": st["stop_reason"],
        "failure": failure,
        "halt": halt,
        "next_stage": f"{nxt['iter']} · {nxt['stage']}" if nxt else None,
        "iteration_text": f"{doc.get('current_iteration', 0)} / {doc.get('max_iterations', 0)}",
        "started_at": doc.get("started_at"),
        "completed_at": doc.get("completed_at"),
    }


def _holdout_value(rd: Path, contract: Mapping[str, Any], notes: _Notes) -> tuple[float | None, dict[str, Any] | None]:
    path = rd / "holdout" / "holdout_result.json"
    if not path.exists():
        return None, None
    doc = _safe(notes, "holdout/holdout_result.json", lambda: _read.read_json(path))
    if not isinstance(doc, Mapping):
        return None, None
    name = contract.get("name", "")
    mr = doc.get("metric_result")
    if isinstance(mr, Mapping) and isinstance(mr.get("value"), (int, float)):
        return float(mr["value"]), dict(doc)
    # The primary metric as the KPI defines it (FAR at the required recall), not at the deployed threshold.
    keys = ["value", name] + (["far_at_100_pct"] if name == "far_pct" else []) + [f"{name}_at_threshold"]
    for key in keys:
        if isinstance(doc.get(key), (int, float)):
            return float(doc[key]), dict(doc)
    return None, dict(doc)


def _trajectory(doc: Mapping[str, Any], rd: Path, st: dict[str, Any], deliverable: str | None,
                cache: ReportCache, notes: _Notes) -> dict[str, Any]:
    contract = doc.get("metric_contract") or {}
    unit = contract.get("unit", "")
    points: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    p1 = rd / "automl_phase1" / "best_rec.json"
    if p1.exists():
        rec = _safe(notes, "automl_phase1/best_rec.json", lambda: _read.read_json(p1))
        score = (rec or {}).get("best", {}).get("score") if isinstance(rec, Mapping) else None
        if isinstance(score, (int, float)):
            points.append({"label": "Phase 1", "value": float(score), "kind": "phase1"})
            rows.append({"label": "Phase 1 (AutoML)", "value": _fmt(score), "where": "validation set",
                         "passed": None, "deliverable": False})
    iterations = doc.get("iterations") or {}
    for label in ordered_labels(doc):
        v = primary_value(iterations[label])
        kind = "phase3" if label == FINAL_AUTOML else "loop"
        if v is None:
            continue
        is_deliv = label == deliverable
        points.append({"label": "Phase 3" if kind == "phase3" else label, "value": v, "kind": kind,
                       "deliverable": is_deliv})
        mr = iterations[label].get("metric_result") or {}
        rows.append({"label": "Phase 3 (AutoML)" if kind == "phase3" else label, "value": _fmt(v, unit),
                     "where": "KPI set", "passed": bool(mr.get("passed")), "deliverable": is_deliv})
    hv, hdoc = _holdout_value(rd, contract, notes)
    if hv is not None:
        points.append({"label": "holdout", "value": hv, "kind": "holdout"})
        at_t = ", ".join(f"{k.replace('_pct_at_threshold', '')} {_fmt(v, '%')}" for k, v in (hdoc or {}).items()
                         if k.endswith("_pct_at_threshold") and isinstance(v, (int, float)))
        where = "holdout set (read once)" + (f"; at the deployed threshold: {at_t}" if at_t else "")
        rows.append({"label": "holdout (deliverable)", "value": _fmt(hv, unit), "where": where,
                     "passed": None, "deliverable": False})
    data = {"points": points, "target": contract.get("target"), "operator": contract.get("operator", ""),
            "unit": unit, "display_name": contract.get("display_name") or contract.get("name", "metric")}
    png = None
    if points:
        png = _safe(notes, "trajectory chart", lambda: png_uri(cache.figure("trajectory", data, _charts.draw_trajectory)))
    note = None if hv is not None else "No holdout set: the KPI set was used for model selection."
    return {"png": png, "rows": rows, "note": note, "holdout": hdoc}


def _gallery(rd: Path, label: str, sdg_info: dict[str, Any] | None) -> list[dict[str, Any]]:
    n = iteration_number(label)
    base = rd / label / "dataset" / "images"
    ng_dir, ok_dir = base / f"synthetic_iter{n}_ng", base / f"synthetic_iter{n}_ok"
    if not ng_dir.is_dir():
        return []
    files = sorted(p for p in ng_dir.iterdir() if p.suffix.lower() in _IMAGE_EXTS)
    by_obj: dict[str, list[Path]] = {}
    for p in files:
        obj, _, _light = p.stem.rpartition("_")
        by_obj.setdefault(obj or p.stem, []).append(p)
    info = sdg_info or {}
    # Defects first, then PASS (nuisance) pairs, so a small gallery still shows what was painted.
    order = sorted(by_obj, key=lambda o: (info.get(o, {}).get("label", "") == "PASS", o))
    out = []
    for obj in order[:MAX_GALLERY_PAIRS]:
        ng = sorted(by_obj[obj])[0]
        ng_uri, ok_uri = image_uri(ng), image_uri(ok_dir / ng.name)
        meta = info.get(obj, {})
        out.append({"object_name": obj, "ng": ng_uri, "ok": ok_uri, "label": meta.get("label", ""),
                    "generator": meta.get("generator", ""), "light": ng.stem.rpartition("_")[2]})
    return out


def _weak_thumbs(rd: Path, label: str, rec: Mapping[str, Any]) -> list[dict[str, Any]]:
    gaps = _path(rec.get("rca_gaps_parquet"))
    thumbs_dir = gaps.parent / "thumbnails" if gaps else None
    if thumbs_dir is None or not thumbs_dir.is_dir():
        cands = sorted((rd / label / "rca_results").glob("*/thumbnails"))
        thumbs_dir = cands[-1] if cands else None
    if thumbs_dir is None:
        return []
    out = []
    for p in sorted(thumbs_dir.glob("*.png"))[:MAX_WEAK_THUMBS]:
        parts = p.stem.split("_", 1)
        out.append({"uri": image_uri(p), "caption": parts[1] if len(parts) == 2 else p.stem})
    return out


def _scores(rec: Mapping[str, Any], cache: ReportCache, notes: _Notes, label: str) -> dict[str, Any] | None:
    csv_path = _path(rec.get("inference_csv"))
    if csv_path is None:
        return None
    threshold = rec.get("threshold")
    summary = _safe(notes, f"{label} inference CSV",
                    lambda: cache.derived("scores", csv_path, lambda p: _read.score_summary(p, threshold),
                                          extra=threshold))
    if not summary:
        return None
    png = _safe(notes, f"{label} score chart",
                lambda: png_uri(cache.figure("scores", summary, _charts.draw_scores)))
    conf = summary.get("confusion")
    per_label = [{"label": lab, "n": s["n"], "flagged": s["flagged"],
                  "rate": _fmt(100.0 * s["flagged"] / s["n"] if s["n"] else None, "%", 3),
                  "kind": "false alarms" if lab == "PASS" else "detected"}
                 for lab, s in summary["per_label"].items()]
    return {"png": png, "confusion": conf, "per_label": per_label, "threshold": _fmt(threshold, digits=6),
            "csv": csv_path.name, "candidate": rec.get("best_ckpt_kind")}


def _rows_added(now: Mapping[str, Any], before: Mapping[str, Any] | None) -> dict[str, Any]:
    """Rows by origin and what this iteration added; iter1 starts from the base rows."""
    if before is None:
        b = {"base": now["origins"].get("base", 0)}
        n_before = b["base"]
    else:
        b, n_before = before["origins"], before["n_rows"]
    return {"n_rows": now["n_rows"], "added": now["n_rows"] - n_before,
            "origins": [{"origin": o, "count": c, "added": c - b.get(o, 0)} for o, c in now["origins"].items()]}


def _card(doc: Mapping[str, Any], rd: Path, label: str, labels: list[str], cache: ReportCache,
          notes: _Notes) -> dict[str, Any]:
    iterations = doc.get("iterations") or {}
    rec = iterations[label]
    contract = doc.get("metric_contract") or {}
    unit = contract.get("unit", "")
    n = iteration_number(label)
    prev = _prev_label(labels, label)
    value, prev_value = primary_value(rec), primary_value(iterations.get(prev) or {}) if prev else None
    delta = None if value is None or prev_value is None else value - prev_value
    lower = contract.get("operator", "<") in ("<", "<=")
    improved = None if delta is None else (delta < 0 if lower else delta > 0)
    card: dict[str, Any] = {
        "label": label,
        "title": {BASELINE: "Baseline", FINAL_AUTOML: "Phase 3 — AutoML refinement"}.get(label, f"Iteration {n}"),
        "status": rec.get("status"), "stage_completed": rec.get("stage_completed"), "error": rec.get("error"),
        "source": rec.get("source"),
        "metric": _fmt(value, unit), "passed": bool((rec.get("metric_result") or {}).get("passed")),
        "has_metric": value is not None,
        "delta": None if delta is None else f"{delta:+.4g}{unit} vs {prev}", "improved": improved,
        "val_loss": _fmt(rec.get("val_loss")), "candidate": rec.get("best_ckpt_kind"),
        "rca_from": (iterations.get(prev) or {}).get("rca_target_defects") if prev else None,
        "rca_from_label": prev,
        "rca_targets": rec.get("rca_target_defects"),
    }
    diag = (rec.get("metric_result") or {}).get("diagnostics") or {}
    card["diagnostics"] = [(k, _fmt(diag[k])) for k in ("far_at_99_pct", "auroc") if k in diag]
    routing: dict[str, Any] = {}
    for key, what in (("routing_mining_parquet", "mining"), ("routing_sdg_parquet", "sdg")):
        p = _path(rec.get(key))
        if p is not None:
            counts = _safe(notes, f"{label} routing {what} parquet",
                           lambda p=p: cache.derived("labels", p, _read.label_counts_parquet))
            if counts is not None:
                routing[what] = {"total": sum(counts.values()),
                                 "labels": ", ".join(f"{k}={v}" for k, v in counts.items()) or "none"}
    card["routing"] = routing or None
    card["sdg_skipped"] = rec.get("sdg_skipped")
    card["gallery"] = []
    if n and rec.get("sdg_result_csv") is not None:
        sdg_csv = _path(rec.get("sdg_result_csv"))
        info = _safe(notes, f"{label} SDG_result.csv",
                     lambda: cache.derived("sdg", sdg_csv, _read.sdg_rows)) if sdg_csv else None
        card["gallery"] = _safe(notes, f"{label} SDG gallery", lambda: _gallery(rd, label, info)) or []
    mining = None
    if rec.get("mining_pool_csv") or rec.get("data_mining_skipped") is not None:
        mining = {"skipped": rec.get("data_mining_skipped"), "mined_count": rec.get("mining_mined_count"),
                  "rows": None, "png": None}
        knn = rd / label / "mining_filter" / "knn_summary.csv"
        if knn.exists():
            mining["rows"] = _safe(notes, f"{label} knn_summary.csv",
                                   lambda: cache.derived("knn", knn, _read.knn_summary))
        pool = _path(rec.get("mining_pool_csv"))
        pool_data = _safe(notes, f"{label} mining_pool.csv",
                          lambda: cache.derived("pool", pool, _read.mining_pool)) if pool else None
        if pool_data and pool_data["similarity"]:
            min_sim = ((doc.get("config") or {}).get("mining_filter") or {}).get("min_similarity")
            data = {"values": pool_data["similarity"], "min_similarity": min_sim}
            mining["png"] = _safe(notes, f"{label} similarity chart",
                                  lambda: png_uri(cache.figure("similarity", data, _charts.draw_similarity)))
            mining["n_similarity"] = len(pool_data["similarity"])
    card["mining"] = mining
    rows = None
    prov = _path(rec.get("provenance_csv"))
    if prov is not None:
        now = _safe(notes, f"{label} provenance CSV", lambda: cache.derived("prov", prov, _read.provenance_origins))
        prev_prov = _path((iterations.get(prev) or {}).get("provenance_csv")) if prev else None
        before = _safe(notes, f"{prev} provenance CSV",
                       lambda: cache.derived("prov", prev_prov, _read.provenance_origins)) if prev_prov else None
        if now:
            rows = _rows_added(now, before)
    card["rows"] = rows
    card["loss_png"] = None
    log_path = rd / label / "train" / "train_log.jsonl"
    if log_path.exists():
        tl = _safe(notes, f"{label} train_log.jsonl", lambda: cache.derived("trainlog", log_path, _read.train_log))
        if tl and tl["epoch"]:
            card["loss_png"] = _safe(notes, f"{label} loss chart",
                                     lambda: png_uri(cache.figure("loss", tl, _charts.draw_loss)))
            card["epochs"] = len(tl["epoch"])
    card["scores"] = _scores(rec, cache, notes, label)
    card["weak"] = _safe(notes, f"{label} RCA thumbnails", lambda: _weak_thumbs(rd, label, rec)) or []
    summary_md = rd / f"{label}_summary.md"
    card["summary_md"] = _safe(notes, summary_md.name, lambda: _read.read_text(summary_md)) \
        if summary_md.exists() else None
    return card


def _automl(rd: Path, cache: ReportCache, notes: _Notes) -> list[dict[str, Any]]:
    out = []
    for sub, title in (("automl_phase1", "Phase 1 — AutoML baseline"), ("final_automl", "Phase 3 — AutoML refinement")):
        path = rd / sub / "trials.csv"
        if not path.exists():
            continue
        trials = _safe(notes, f"{sub}/trials.csv", lambda path=path: cache.derived("trials", path, _read.trials))
        if trials is None:
            continue
        best_rec = rd / sub / "best_rec.json"
        rec = _safe(notes, f"{sub}/best_rec.json", lambda: _read.read_json(best_rec)) if best_rec.exists() else None
        best_id = ((rec or {}).get("best") or {}).get("rec_id") if isinstance(rec, Mapping) else None
        metric = (rec or {}).get("metric_name", "score") if isinstance(rec, Mapping) else "score"
        names = sorted({k for t in trials for k, v in t["params"].items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)})
        png = None
        if names and any(t["score"] is not None for t in trials):
            data = {"params": names, "trials": trials, "metric_name": metric}
            png = _safe(notes, f"{sub} chart", lambda data=data: png_uri(cache.figure("automl", data, _charts.draw_automl)))
        rows = [{**t, "score_text": _fmt(t["score"]), "val_loss_text": _fmt(t["best_val_loss"]),
                 "duration_text": _duration(t["duration_s"]),
                 "params_text": ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(t["params"].items())),
                 "marks": [m for m, on in (("pruned", t["state"] == "pruned"),
                                           ("disqualified", t["state"] == "disqualified"),
                                           ("failed", t["state"] == "failed"),
                                           ("noise re-run", t["is_noise_rerun"]),
                                           ("retry", bool(t["retry_of"])),
                                           ("winner", t["rec_id"] == best_id)) if on]}
                for t in trials]
        out.append({"title": title, "folder": sub, "rows": rows, "png": png, "best_id": best_id, "metric": metric})
    return out


def _events(doc: Mapping[str, Any]) -> dict[str, Any]:
    events = list(doc.get("events") or [])
    longest = max([int(e.get("duration_sec") or 0) for e in events] + [1])
    total = sum(int(e.get("duration_sec") or 0) for e in events)
    rows = []
    for e in events:
        d = int(e.get("duration_sec") or 0)
        try:
            ts = datetime.fromisoformat(str(e.get("ts"))).strftime("%Y-%m-%d %H:%M:%S")
        except ValueError:
            ts = str(e.get("ts"))
        rows.append({**e, "ts_text": ts, "duration_text": _duration(d), "bar_pct": max(1, round(100 * d / longest))})
    return {"rows": rows, "total": _duration(total)}


def _provenance(rd: Path, notes: _Notes) -> dict[str, Any] | None:
    path = rd / "provenance.json"
    if not path.exists():
        return None
    doc = _safe(notes, "provenance.json", lambda: _read.read_json(path))
    if not isinstance(doc, Mapping):
        return None
    inputs = []
    for key, v in (doc.get("inputs") or {}).items():
        if isinstance(v, Mapping):
            inputs.append({"key": key, "path": v.get("path", ""), "sha256": v.get("sha256", "")})
        else:
            inputs.append({"key": key, "path": "", "sha256": str(v)})
    scalars = [(k, _fmt(doc.get(k))) for k in ("seed", "git_sha", "python") if k in doc]
    for group in ("host", "threads"):
        for k, v in (doc.get(group) or {}).items():
            scalars.append((f"{group}.{k}", _fmt(v)))
    cmd = doc.get("command")
    return {"packages": sorted((doc.get("packages") or {}).items()), "inputs": inputs, "scalars": scalars,
            "command": " ".join(cmd) if isinstance(cmd, list) else cmd,
            "resolved_config": sorted((doc.get("resolved_config") or {}).items())}


def markdown_blocks(text: str) -> list[dict[str, Any]]:
    """The small Markdown subset pre-flight files use: headings, pipe tables, bullet lists, paragraphs."""
    blocks: list[dict[str, Any]] = []
    for raw in text.splitlines():
        line = raw.rstrip()
        last = blocks[-1] if blocks else None
        if line.startswith("|") and line.endswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(set(c) <= set("-: ") for c in cells):
                continue
            if last and last["kind"] == "table":
                last["rows"].append(cells)
            else:
                blocks.append({"kind": "table", "header": cells, "rows": []})
        elif line.lstrip().startswith(("- ", "* ")):
            item = line.lstrip()[2:]
            if last and last["kind"] == "list":
                last["entries"].append(item)
            else:
                blocks.append({"kind": "list", "entries": [item]})
        elif line.startswith("#"):
            blocks.append({"kind": "heading", "text": line.lstrip("#").strip()})
        elif line.strip():
            if last and last["kind"] == "p":
                last["text"] += " " + line.strip()
            else:
                blocks.append({"kind": "p", "text": line.strip()})
        else:
            blocks.append({"kind": "break"})
    return [b for b in blocks if b["kind"] != "break"]


def build_view(doc: Mapping[str, Any], rd: Path, cache: ReportCache, *, generated_at: str) -> dict[str, Any]:
    notes = _Notes()
    st = status_from_doc(doc, rd)
    headline = _headline(doc, rd, st, notes)
    deliverable = (headline["deliverable"] or {}).get("iter") or (st["best"] or {}).get("iter")
    labels = ordered_labels(doc)
    cards = []
    for label in labels:
        if label_order(label)[0] > 1:
            continue
        card = _safe(notes, f"{label} card", lambda label=label: _card(doc, rd, label, labels, cache, notes))
        if card is not None:
            card["deliverable"] = label == deliverable
            cards.append(card)
    preflight = rd / "preflight.md"
    view = {
        "title": f"DEFT loop report — {rd.name}",
        "results_dir": str(rd),
        "generated_at": generated_at,
        "headline": headline,
        "trajectory": _trajectory(doc, rd, st, deliverable, cache, notes),
        "cards": cards,
        "automl": _automl(rd, cache, notes),
        "events": _events(doc),
        "preflight": _safe(notes, "preflight.md", lambda: markdown_blocks(_read.read_text(preflight)))
        if preflight.exists() else None,
        "provenance": _provenance(rd, notes),
        "config": sorted((k, _fmt(v)) for k, v in (doc.get("config") or {}).items()
                         if not isinstance(v, (dict, list))),
        "notes": notes.items,
    }
    return view
