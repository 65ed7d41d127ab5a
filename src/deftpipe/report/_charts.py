"""Matplotlib figures of the report, drawn from plain data to PNG bytes (no pyplot, no global state).

Each `draw_*` takes the JSON-ready data the renderer hashes for the cache, so
an unchanged input never redraws. Matplotlib is imported only on a cache miss.
"""
from __future__ import annotations

import io
import math
from typing import Any

_DPI = 80
_COLORS = ("#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#7f7f7f")


def _figure(w: float, h: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any, *, left: float = 0.14, bottom: float = 0.2, right: float = 0.97, top: float = 0.95) -> bytes:
    # Fixed margins instead of tight_layout: it draws the figure twice, and drawing is most of the cost.
    buf = io.BytesIO()
    fig.subplots_adjust(left=left, bottom=bottom, right=right, top=top, wspace=0.35, hspace=0.55)
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return buf.getvalue()


def draw_trajectory(d: dict[str, Any]) -> bytes:
    """Phase 1 (validation) -> baseline -> iterations -> Phase 3, target line, holdout point."""
    fig = _figure(8.0, 3.4)
    ax = fig.add_subplot(1, 1, 1)
    pts = d["points"]
    xs = list(range(len(pts)))
    loop = [(x, p) for x, p in zip(xs, pts) if p["kind"] in ("loop", "phase3") and p["value"] is not None]
    if loop:
        ax.plot([x for x, _ in loop], [p["value"] for _, p in loop], "-o", color="#1f77b4", label="KPI set")
    for x, p in zip(xs, pts):
        if p["value"] is None:
            continue
        if p["kind"] == "phase1":
            ax.plot([x], [p["value"]], "s", color="#7f7f7f", label="Phase 1 (validation set)")
        elif p["kind"] == "holdout":
            ax.plot([x], [p["value"]], "D", color="#2ca02c", markersize=8, label="holdout (deliverable)")
        if p.get("deliverable"):
            ax.plot([x], [p["value"]], "o", markersize=14, markerfacecolor="none", markeredgecolor="#2ca02c",
                    markeredgewidth=2, label="deliverable")
        ax.annotate(f"{p['value']:.3g}", (x, p["value"]), textcoords="offset points", xytext=(0, 7),
                    ha="center", fontsize=8)
    if d.get("target") is not None:
        ax.axhline(d["target"], color="#d62728", linestyle="--", linewidth=1,
                   label=f"target {d['operator']} {d['target']:g}{d['unit']}")
    ax.set_xticks(xs)
    ax.set_xticklabels([p["label"] for p in pts], fontsize=8)
    ax.set_ylabel(f"{d['display_name']} ({d['unit']})" if d["unit"] else d["display_name"])
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    ax.legend(uniq.values(), uniq.keys(), fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(fig, left=0.08, bottom=0.1, right=0.76)


def draw_loss(d: dict[str, Any]) -> bytes:
    fig = _figure(3.6, 2.4)
    ax = fig.add_subplot(1, 1, 1)
    for key, style in (("train_loss", "-o"), ("val_loss", "-s")):
        pairs = [(e, v) for e, v in zip(d["epoch"], d[key]) if v is not None]
        if pairs:
            ax.plot([e for e, _ in pairs], [v for _, v in pairs], style, markersize=3, label=key)
    ax.set_xlabel("epoch", fontsize=8)
    ax.set_ylabel("loss", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _png(fig)


def draw_scores(d: dict[str, Any]) -> bytes:
    """Step histograms per label on shared bins; PASS filled; the threshold as a vertical line."""
    fig = _figure(4.6, 2.6)
    ax = fig.add_subplot(1, 1, 1)
    lo, hi = d["lo"], d["hi"]
    n = len(next(iter(d["per_label"].values()))["hist"]) if d["per_label"] else 1
    edges = [lo + (hi - lo) * i / n for i in range(n + 1)]
    k = 0
    for label, s in d["per_label"].items():
        if label == "PASS":
            ax.stairs(s["hist"], edges, fill=True, color="#1f77b4", alpha=0.35, label=f"PASS (n={s['n']})")
        else:
            ax.stairs(s["hist"], edges, color=_COLORS[k % len(_COLORS)], linewidth=1.5,
                      label=f"{label} (n={s['n']})")
            k += 1
    if d.get("threshold") is not None:
        ax.axvline(d["threshold"], color="black", linestyle="--", linewidth=1, label="threshold")
    ax.set_xlabel("siamese_score (higher = defect)", fontsize=8)
    ax.set_ylabel("rows", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, ncol=2)
    return _png(fig)


def draw_similarity(d: dict[str, Any]) -> bytes:
    fig = _figure(3.6, 2.4)
    ax = fig.add_subplot(1, 1, 1)
    ax.hist(d["values"], bins=20, color="#2ca02c", alpha=0.7)
    if d.get("min_similarity") is not None:
        ax.axvline(d["min_similarity"], color="#d62728", linestyle="--", linewidth=1, label="min_similarity")
        ax.legend(fontsize=7)
    ax.set_xlabel("cosine similarity to target", fontsize=8)
    ax.set_ylabel("mined rows", fontsize=8)
    ax.tick_params(labelsize=7)
    return _png(fig)


def draw_automl(d: dict[str, Any]) -> bytes:
    """Score against each numeric hyperparameter (log x for ranges over a decade); reruns hollow."""
    names = d["params"]
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = _figure(3.2 * cols, 2.4 * rows)
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        for t in d["trials"]:
            x = t["params"].get(name)
            if x is None or t["score"] is None:
                continue
            face = "none" if t["is_noise_rerun"] else ("#1f77b4" if t["state"] == "complete" else "#d62728")
            ax.scatter([x], [t["score"]], s=22, facecolors=face, edgecolors="#1f77b4")
        xs = [t["params"].get(name) for t in d["trials"] if isinstance(t["params"].get(name), (int, float))]
        if xs and min(xs) > 0 and max(xs) / min(xs) > 10:
            from matplotlib.ticker import NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(name, fontsize=8)
        ax.set_ylabel(d["metric_name"], fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    return _png(fig, left=0.1, bottom=0.22 / rows)
