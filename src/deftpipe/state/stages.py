"""The one stage vocabulary of SPEC §4 and the order the DEFT loop runs it in.

Reads a state document (mapping or `DeftState`); returns stage names and the next
`(iter_label, stage)` to run. Written names are always canonical (`sdg`, never
TAO's `anomalygen`).

Order (N = 1 … max_iterations)::

    baseline: train -> evaluate -> rca
    iter<N>:  routing -> sdg -> data_mining -> data_merge -> train -> evaluate -> rca
                                                                      |
              evaluate passes the KPI, or N == max_iterations ------> loop_stop  (no rca)
"""
from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from deftpipe.errors import ContractError

TRAIN = "train"
EVALUATE = "evaluate"
RCA = "rca"
ROUTING = "routing"
SDG = "sdg"
DATA_MINING = "data_mining"
DATA_MERGE = "data_merge"
LOOP_STOP = "loop_stop"

STAGES: tuple[str, ...] = (TRAIN, EVALUATE, RCA, ROUTING, SDG, DATA_MINING, DATA_MERGE, LOOP_STOP)
STAGE_ALIASES: Mapping[str, str] = {"anomalygen": SDG}

BASELINE_ORDER: tuple[str, ...] = (TRAIN, EVALUATE, RCA)
ITERATION_ORDER: tuple[str, ...] = (ROUTING, SDG, DATA_MINING, DATA_MERGE, TRAIN, EVALUATE, RCA)

BASELINE = "baseline"
FINAL_AUTOML = "final_automl"
_ITER_RE = re.compile(r"^iter([1-9][0-9]*)$")


def normalize_stage(name: str, *, where: str = "stage") -> str:
    """Canonical stage name for `name`; `anomalygen` reads as `sdg`.

    Raises:
        ContractError: `name` is not in the vocabulary (the closest name is suggested).
    """
    if name in STAGES:
        return name
    if name in STAGE_ALIASES:
        return STAGE_ALIASES[name]
    near = difflib.get_close_matches(str(name), STAGES + tuple(STAGE_ALIASES), n=1)
    tip = f" Did you mean '{near[0]}'?" if near else ""
    raise ContractError(f"{where}: unknown stage '{name}'; known stages: {list(STAGES)}.{tip}")


def iteration_label(n: int) -> str:
    """`baseline` for 0, `iter<N>` for N ≥ 1."""
    if n < 0:
        raise ValueError(f"iteration number must be >= 0, got {n}")
    return BASELINE if n == 0 else f"iter{n}"


def iteration_number(label: str) -> int | None:
    """0 for `baseline`, N for `iter<N>`, None for `final_automl`.

    Raises:
        ContractError: `label` is none of `baseline`, `iter<N>`, `final_automl`.
    """
    if label == BASELINE:
        return 0
    if label == FINAL_AUTOML:
        return None
    m = _ITER_RE.match(label)
    if m is None:
        raise ContractError(
            f"iteration label '{label}' is not one of 'baseline', 'iter1', 'iter2', …, 'final_automl'."
        )
    return int(m.group(1))


def is_iteration_label(label: str) -> bool:
    return label in (BASELINE, FINAL_AUTOML) or _ITER_RE.match(label) is not None


def stages_for(label: str, *, max_iterations: int) -> tuple[str, ...]:
    """The loop stages of one iteration, in order (rca dropped after the last iteration).

    `final_automl` is Phase 3, outside the loop order: it has none.
    """
    n = iteration_number(label)
    if n is None:
        return ()
    order = BASELINE_ORDER if n == 0 else ITERATION_ORDER
    if n >= max_iterations:
        order = tuple(s for s in order if s != RCA)
    return order


def _as_mapping(state: Any) -> Mapping[str, Any]:
    if isinstance(state, Mapping):
        return state
    dump = getattr(state, "model_dump", None)
    if callable(dump):
        out = dump()
        if isinstance(out, Mapping):
            return out
    raise TypeError(f"next_stage expects a state mapping or DeftState, got {type(state).__name__}")


def _stage_of(rec: Mapping[str, Any] | None) -> str | None:
    if not rec:
        return None
    done = rec.get("stage_completed")
    return None if done is None else normalize_stage(str(done), where="stage_completed")


def _passed(rec: Mapping[str, Any]) -> bool:
    result = rec.get("metric_result") or {}
    return bool(result.get("passed")) if isinstance(result, Mapping) else False


def latest_iteration(state: Any) -> int:
    """The highest loop iteration started: `current_iteration` or any `iter<N>` with a committed stage."""
    doc = _as_mapping(state)
    n = int(doc.get("current_iteration") or 0)
    for label, rec in (doc.get("iterations") or {}).items():
        k = iteration_number(label)
        if k is not None and _stage_of(rec) is not None:
            n = max(n, k)
    return n


def next_stage(state: Any) -> tuple[str, str] | None:
    """What runs next, as `(iter_label, stage)`; None once the run is complete, failed, halted or stopped.

    A passing `evaluate` (its `metric_result.passed`) or the last iteration's
    `evaluate` leads to `loop_stop`: RCA only runs when a next iteration will use it.
    """
    doc = _as_mapping(state)
    if doc.get("status") != "in_progress" or doc.get("halt"):
        return None
    iterations: Mapping[str, Any] = doc.get("iterations") or {}
    if any(_stage_of(rec) == LOOP_STOP for rec in iterations.values()):
        return None
    max_iterations = int(doc.get("max_iterations") or 0)
    n = latest_iteration(doc)
    label = iteration_label(n)
    order = stages_for(label, max_iterations=max_iterations)
    rec = iterations.get(label)
    done = _stage_of(rec)
    if done is None:
        return label, order[0]
    if done not in order:
        raise ContractError(
            f"deft_state.json: iterations.{label}.stage_completed is '{done}', which is not a stage of "
            f"{label} (order: {list(order)}); the state file was edited by hand — restore it from loop_log.jsonl."
        )
    if done == EVALUATE and (n >= max_iterations or _passed(rec or {})):
        return label, LOOP_STOP
    idx = order.index(done)
    if idx + 1 < len(order):
        return label, order[idx + 1]
    return iteration_label(n + 1), ITERATION_ORDER[0]


def is_stage_committed(state: Any, label: str, stage: str) -> bool:
    """True when `stage` of `label` is at or before that iteration's `stage_completed`."""
    doc = _as_mapping(state)
    stage = normalize_stage(stage)
    rec = (doc.get("iterations") or {}).get(label)
    done = _stage_of(rec)
    if done is None:
        return False
    if done == stage:
        return True
    order = stages_for(label, max_iterations=int(doc.get("max_iterations") or 0))
    if done == LOOP_STOP:  # loop_stop always follows evaluate; rca of that iteration never ran
        done = EVALUATE
    if stage not in order or done not in order:
        return False
    return order.index(stage) <= order.index(done)
