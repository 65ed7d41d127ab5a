"""Run state: the stage vocabulary, the validated `deft_state.json` records, and the store that alone writes them.

Example:
    from deftpipe.state import StateStore, new_run_dir
    rd = new_run_dir(ws.results_root)
    StateStore.create(rd, kpi_target=..., metric_contract=..., max_iterations=2, config={...})
    with StateStore.open(rd) as store:
        print(store.next_stage())  # ('baseline', 'train')
"""
from __future__ import annotations

from deftpipe.state.best_model import read_best_model, write_best_model
from deftpipe.state.records import DeftState, EventRecord, IterationRecord
from deftpipe.state.rundir import ResumePoint, clear_stage_dir, find_resumable, new_run_dir
from deftpipe.state.stages import STAGES, next_stage, normalize_stage
from deftpipe.state.store import StateStore, read_state

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
