"""Run state: the stage vocabulary, the validated `deft_state.json` records, and the store that alone writes them.

Names load on first use (PEP 562), so `deftpipe.state.stages` alone — what read-only views such
as the report need — does not pay for pydantic and the record models.

Example:
    from deftpipe.state import StateStore, new_run_dir
    rd = new_run_dir(ws.results_root)
    StateStore.create(rd, kpi_target=..., metric_contract=..., max_iterations=2, config={...})
    with StateStore.open(rd) as store:
        print(store.next_stage())  # ('baseline', 'train')
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deftpipe.state.best_model import read_best_model, write_best_model
    from deftpipe.state.records import DeftState, EventRecord, IterationRecord
    from deftpipe.state.rundir import ResumePoint, clear_stage_dir, find_resumable, new_run_dir
    from deftpipe.state.stages import STAGES, next_stage, normalize_stage
    from deftpipe.state.store import StateStore, read_state

_WHERE = {
    "read_best_model": "best_model", "write_best_model": "best_model",
    "DeftState": "records", "EventRecord": "records", "IterationRecord": "records",
    "ResumePoint": "rundir", "clear_stage_dir": "rundir", "find_resumable": "rundir", "new_run_dir": "rundir",
    "STAGES": "stages", "next_stage": "stages", "normalize_stage": "stages",
    "StateStore": "store", "read_state": "store",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'deftpipe.state' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"deftpipe.state.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "STAGES",
    "DeftState",
    "EventRecord",
    "IterationRecord",
    "ResumePoint",
    "StateStore",
    "clear_stage_dir",
    "find_resumable",
    "new_run_dir",
    "next_stage",
    "normalize_stage",
    "read_best_model",
    "read_state",
    "write_best_model",
]
