"""The DEFT loop driver: reads the committed state, runs the next stage, commits, repeats (SPEC §4–§5).

    baseline: train -> evaluate -> rca
    iter<N>:  routing -> sdg -> data_mining -> data_merge -> train -> evaluate -> rca
    (KPI met or N == max_iterations after evaluate) -> finalize -> loop_stop

Every stage writes only under its own folder, cleared first when a previous
attempt died mid-way; committed stages are never redone. Hard stops commit the
failing stage with status=error; the regression gate halts with exit 5.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deftpipe.deft import steps
from deftpipe.deft.context import RunContext
from deftpipe.errors import RegressionHalt, StageFailed
from deftpipe.state import StateStore
from deftpipe.state.stages import iteration_number, normalize_stage
from deftpipe.ui import events

# on_event(line) — one human status line per committed stage.
EventFn = Callable[[str], None]
log = logging.getLogger(__name__)


def refresh_report(results_dir: Path) -> None:
    """Re-render DEFT_Loop_Report.html; a report problem must never break the loop."""
    try:
        from deftpipe.report import render_report

        started = time.monotonic()
        render_report(results_dir)
        log.debug("DEFT_Loop_Report.html refreshed in %.2fs", time.monotonic() - started)
    except Exception:  # noqa: BLE001 - the report is a view, the state is the truth
        log.warning("DEFT_Loop_Report.html not refreshed", exc_info=True)


@dataclass
class LoopOutcome:
    results_dir: Path
    status: str
    stop_reason: str | None = None
    best_iteration: str | None = None
    lines: list[str] = field(default_factory=list)


def _status_line(ctx: RunContext, store: StateStore, label: str, stage: str, summary: str, seconds: float) -> str:
    n = iteration_number(label)
    where = "baseline" if n == 0 else f"iter {n}/{ctx.doc['max_iterations']}" if n else label
    nxt = store.next_stage()
    after = f"next: {nxt[1]}" if nxt else "next: finalize"
    return f"[{where} · {stage}] {summary} · {seconds:.0f}s · {after}"


def run_loop(results_dir: Path, *, accept_regression: bool = False, until: str | None = None,
             on_event: EventFn | None = None, progress_factory: Any = None) -> LoopOutcome:
    """Run (or resume) the loop in `results_dir` until it completes, fails, halts or reaches `until`.

    Raises:
        StageFailed: a hard stop (exit 4); the failing stage is committed with status=error.
        RegressionHalt: the regression gate fired (exit 5).
    """
    from deftpipe.ui.runlog import run_log

    if until is not None:  # an unknown name would otherwise run the whole loop; `anomalygen` reads as `sdg`
        until = normalize_stage(until, where="--until")
    with StateStore.open(results_dir) as store, run_log(store.results_dir, on_event) as emit:
        if store.took_over_lock_from:
            emit(f"took over a stale lock left by PID {store.took_over_lock_from}")
        doc = store.document
        ctx = RunContext(results_dir=store.results_dir, doc=doc)
        store.check_input_digests()
        if doc.get("halt"):
            if not accept_regression:
                halt = doc["halt"]
                raise RegressionHalt(
                    f"the run is halted by the regression gate at {halt.get('iter')}: {halt.get('reason')}",
                    hint=f"Resume with `{halt.get('resume_command')}` to accept it and continue from the best checkpoint.")
            store.clear_halt()
        outcome = LoopOutcome(results_dir=store.results_dir, status=store.state.status)
        while True:
            nxt = store.next_stage()
            if nxt is None:
                break
            label, stage = nxt
            events.publish("stage_start", iter=label, stage=stage)
            log.debug("stage %s/%s starting", label, stage)
            if stage == "loop_stop":
                started = time.monotonic()
                reason, best_label, artifacts = steps.finalize(ctx, store)
                store.complete(artifacts, summary=f"loop stopped ({reason}); deliverable = {best_label}",
                               duration_sec=time.monotonic() - started)
                outcome.stop_reason, outcome.best_iteration = reason, best_label
                line = f"[loop_stop] {reason}; deliverable: {best_label} · Run directory: {store.results_dir}"
                outcome.lines.append(line)
                emit(line)
                refresh_report(store.results_dir)
                break
            started = time.monotonic()
            try:
                result = steps.run_stage(ctx, store, label, stage, progress_factory=progress_factory)
            except StageFailed as exc:
                store.commit(label, stage, status="error", artifacts=getattr(exc, "artifacts", None) or {},
                             summary=exc.message, duration_sec=time.monotonic() - started)
                emit(f"[{label} · {stage}] HARD STOP: {exc.message}")
                refresh_report(store.results_dir)
                raise
            seconds = time.monotonic() - started
            store.commit(label, stage, artifacts=result.artifacts, fields=result.fields, summary=result.summary,
                         duration_sec=seconds)
            line = _status_line(ctx, store, label, stage, result.summary, seconds)
            outcome.lines.append(line)
            emit(line)
            if stage == "evaluate" and iteration_number(label):
                try:
                    steps.regression_gate(ctx, store, label)
                except RegressionHalt:
                    refresh_report(store.results_dir)
                    raise
            refresh_report(store.results_dir)
            if until and stage == until:
                break
        outcome.status = store.state.status
        return outcome
