"""`deftpipe report` (re-render DEFT_Loop_Report.html) and `deftpipe status` (where a run stands; read-only)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from deftpipe.cli.app import app, echo, guarded


@app.command("report")
def report_cmd(
    results_dir: Annotated[Path, typer.Argument(help="Run directory (results/run_<TS>).")],
    open_browser: Annotated[bool, typer.Option("--open", help="Open the report in the default browser.")] = False,
    out: Annotated[Path | None, typer.Option("--out", help="Write here instead of RESULTS_DIR/DEFT_Loop_Report.html.")] = None,
) -> None:
    """Re-render the self-contained HTML report of a run (works while the run is live)."""

    def body() -> None:
        from deftpipe.report import render_report

        path = render_report(results_dir, out=out)
        echo(f"Report: {path}")
        if open_browser:
            import webbrowser

            webbrowser.open(path.resolve().as_uri())

    guarded(body)


def _event_line(ev: dict[str, Any]) -> str:
    return (f"  #{ev.get('seq')} {ev.get('iter')}/{ev.get('stage')} {ev.get('status')} "
            f"({ev.get('duration_sec')}s): {ev.get('summary')}")


def _human(st: dict[str, Any]) -> list[str]:
    lines = [f"Run: {st['results_dir']}", f"Status: {st['status']} · {st['phase']}"]
    cur = st["current_stage"]
    if cur:
        lines.append(f"Current stage: {cur['iter']} / {cur['stage']} "
                     f"(iteration {st['current_iteration']}/{st['max_iterations']})")
    if st.get("current_stage_error"):
        lines.append(f"Current stage: unknown ({st['current_stage_error']})")
    best = st["best"]
    if best:
        verdict = "meets" if best["passed"] else "misses"
        lines.append(f"Best so far: {best['iter']} = {best['value']:.4g}{best['unit']} ({verdict} {st['kpi_target']})")
    else:
        lines.append(f"Best so far: none evaluated yet (KPI {st['kpi_target']})")
    if st["halt"]:
        h = st["halt"]
        lines.append(f"HALTED at {h.get('iter')}: {h.get('reason')}")
        lines.append(f"  resume: {h.get('resume_command')}")
    if st["failure"]:
        f = st["failure"]
        lines.append(f"FAILED at {f.get('iter')} / {f.get('stage')}: {f.get('message')}")
    if st["stop_reason"]:
        lines.append(f"Stop reason: {st['stop_reason']}")
    lines.append(f"Last {len(st['last_events'])} of {st['n_events']} event(s):")
    lines.extend(_event_line(ev) for ev in st["last_events"])
    return lines


@app.command("status")
def status_cmd(
    results_dir: Annotated[Path, typer.Argument(help="Run directory (results/run_<TS>).")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines: one per event, then one status object.")] = False,
) -> None:
    """Where a run stands: phase, current stage, last events, best so far, halt/failure (never takes the lock)."""

    def body() -> None:
        from deftpipe.report import run_status

        if as_json:
            from deftpipe.report.status import load_doc, status_from_doc

            rd, doc = load_doc(results_dir)  # one snapshot for both parts: a live run may commit meanwhile
            for ev in doc.get("events") or []:
                typer.echo(json.dumps({"type": "event", **ev}, sort_keys=True))
            typer.echo(json.dumps({"type": "status", **status_from_doc(doc, rd, n_events=0)}, sort_keys=True))
            return
        for line in _human(run_status(results_dir)):
            echo(line)

    guarded(body)
