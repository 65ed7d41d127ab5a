"""Where a run stands, from its committed `deft_state.json` only (no lock: valid while another process runs it).

`run_status(results_dir)` returns one JSON-ready dict (status, phase, next stage,
best so far, halt, failure, stop reason, last events); the report headline and
`deftpipe status` both use it, so they always agree.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deftpipe.errors import ContractError
from deftpipe.state.stages import FINAL_AUTOML, LOOP_STOP, iteration_number, next_stage

_REASON_RE = re.compile(r"\(([a-z_]+)\)")
_OPS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def label_order(label: str) -> tuple[int, int]:
    try:
        n = iteration_number(label)
    except ContractError:
        return (2, 0)
    return (1, 0) if n is None else (0, n)


def ordered_labels(doc: Mapping[str, Any]) -> list[str]:
    return sorted((doc.get("iterations") or {}), key=label_order)


def primary_value(rec: Mapping[str, Any]) -> float | None:
    mr = rec.get("metric_result") or {}
    v = mr.get("value") if isinstance(mr, Mapping) else None
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _constraints_pass(contract: Mapping[str, Any], rec: Mapping[str, Any]) -> bool:
    values = (rec.get("metric_result") or {}).get("constraints") or {}
    if not isinstance(values, Mapping):
        return False
    for c in contract.get("constraints") or []:
        v = values.get(c.get("name"))
        if not isinstance(v, (int, float)) or not _OPS[c.get("operator", ">=")](v, c.get("target", 0.0)):
            return False
    return True


def best_so_far(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """The contract's pick over evaluated iterations (constraints first, then the operator's direction)."""
    contract = doc.get("metric_contract") or {}
    op = contract.get("operator", "<")
    lower = op in ("<", "<=")
    evaluated = [(lab, rec) for lab, rec in (doc.get("iterations") or {}).items() if primary_value(rec) is not None]
    if not evaluated:
        return None
    evaluated.sort(key=lambda lr: label_order(lr[0]))
    ok = [lr for lr in evaluated if _constraints_pass(contract, lr[1])]
    pool = ok or evaluated
    best_label, best_rec = pool[0]
    for lab, rec in pool[1:]:
        a, b = primary_value(rec), primary_value(best_rec)
        if a is not None and b is not None and (a < b if lower else a > b):
            best_label, best_rec = lab, rec
    value = primary_value(best_rec)
    target = contract.get("target")
    passed = bool(ok) and value is not None and target is not None and _OPS.get(op, _OPS["<"])(value, target)
    return {"iter": best_label, "value": value, "unit": contract.get("unit", ""), "passed": passed,
            "threshold": best_rec.get("threshold")}


def stop_reason(doc: Mapping[str, Any]) -> str | None:
    for ev in reversed(doc.get("events") or []):
        if ev.get("stage") == LOOP_STOP:
            m = _REASON_RE.search(str(ev.get("summary", "")))
            return m.group(1) if m else str(ev.get("summary", ""))
    return None


def failure_of(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """`failure` {iter, stage, message}; for older documents, the last error event."""
    if doc.get("status") != "failed":
        return None
    f = doc.get("failure")
    if isinstance(f, Mapping):
        return {"iter": f.get("iter"), "stage": f.get("stage"), "message": f.get("message")}
    for ev in reversed(doc.get("events") or []):
        if ev.get("status") == "error":
            return {"iter": ev.get("iter"), "stage": ev.get("stage"), "message": ev.get("summary")}
    return {"iter": None, "stage": None, "message": "the run is marked failed (no error event recorded)"}


def display_status(doc: Mapping[str, Any]) -> str:
    """`complete`, `failed`, `halted` (regression gate) or `in_progress`."""
    if doc.get("status") == "in_progress" and doc.get("halt"):
        return "halted"
    return str(doc.get("status"))


def phase_of(doc: Mapping[str, Any], results_dir: Path) -> str:
    iterations = doc.get("iterations") or {}
    if FINAL_AUTOML in iterations:
        return "Phase 3 — AutoML refinement"
    if doc.get("status") == "complete":
        return "Phase 2 — DEFT loop (finished)"
    if not doc.get("events") and (results_dir / "automl_phase1").is_dir():
        return "Phase 1 — AutoML baseline"
    return "Phase 2 — DEFT loop"


def status_from_doc(doc: Mapping[str, Any], results_dir: Path, *, n_events: int = 5) -> dict[str, Any]:
    try:
        nxt = next_stage(doc)
    except ContractError as exc:
        nxt, nxt_error = None, exc.message
    else:
        nxt_error = None
    events = list(doc.get("events") or [])
    return {
        "results_dir": str(results_dir),
        "status": display_status(doc),
        "run_status": doc.get("status"),
        "phase": phase_of(doc, results_dir),
        "current_stage": {"iter": nxt[0], "stage": nxt[1]} if nxt else None,
        "current_stage_error": nxt_error,
        "current_iteration": doc.get("current_iteration"),
        "max_iterations": doc.get("max_iterations"),
        "kpi_target": doc.get("kpi_target"),
        "best": best_so_far(doc),
        "halt": dict(doc["halt"]) if doc.get("halt") else None,
        "failure": failure_of(doc),
        "stop_reason": stop_reason(doc),
        "started_at": doc.get("started_at"),
        "completed_at": doc.get("completed_at"),
        "n_events": len(events),
        "last_events": events[-n_events:] if n_events > 0 else [],
    }


def load_doc(results_dir: Path | str) -> tuple[Path, dict[str, Any]]:
    """The validated state as a plain dict (read-only; never takes the run lock).

    Raises:
        ContractError: no state file or a malformed one.
    """
    from deftpipe.state import read_state  # pydantic: paid only when the document must be validated

    rd = Path(results_dir).expanduser().resolve()
    return rd, read_state(rd).model_dump(mode="json")


def run_status(results_dir: Path | str, *, n_events: int = 5) -> dict[str, Any]:
    """Status of the run in `results_dir` (see module docstring).

    Raises:
        ContractError: no state file or a malformed one.
    """
    rd, doc = load_doc(results_dir)
    return status_from_doc(doc, rd, n_events=n_events)
