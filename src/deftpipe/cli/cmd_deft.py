"""`deftpipe deft`: the DEFT loop alone (trains its own baseline unless pre-seeded); resumable."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from deftpipe.cli.app import JsonOpt, LogLevelOpt, Session, app, console, echo, guarded, is_interactive, prompt, session
from deftpipe.ui import events


def approve(summary_printed: bool, yes: bool) -> None:
    """One approval: --yes, or `go` typed on a TTY; otherwise exit 3 having written nothing."""
    from deftpipe.errors import ApprovalNeeded

    if yes:
        return
    if not is_interactive():
        raise ApprovalNeeded("approval needed: nothing was written. Re-run with --yes to approve the plan above.")
    answer = prompt("Type 'go' to start (anything else aborts)")
    if answer.strip().lower() != "go":
        raise ApprovalNeeded("not approved; nothing was written.")


@app.command("deft")
def deft_cmd(
    workspace: Annotated[Path | None, typer.Option("--workspace", "-w", help="Workspace root.")] = None,
    max_iterations: Annotated[int | None, typer.Option("--max-iterations", help="DEFT iterations at most.")] = None,
    kpi_target: Annotated[float | None, typer.Option("--kpi-target", help="FAR target in % at 100% recall.")] = None,
    num_sdg: Annotated[int | None, typer.Option("--num-sdg", help="Synthetic pairs per iteration.")] = None,
    sdg_base: Annotated[str | None, typer.Option("--sdg-base", help="test (default) or golden.")] = None,
    mining_top_k: Annotated[int | None, typer.Option("--mining-top-k", help="Neighbours kept per target.")] = None,
    rca_top_k: Annotated[int | None, typer.Option("--rca-top-k", help="Weak samples kept per label.")] = None,
    min_similarity: Annotated[float | None, typer.Option("--min-similarity", help="Cosine cutoff.")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Epochs per training (default: spec).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for everything.")] = None,
    spec: Annotated[Path | None, typer.Option("--spec", help="Spec file (default: WS/specs/baseline_spec.yaml).")] = None,
    override: Annotated[list[str], typer.Option("-o", "--override", help="Spec override key=value.")] = [],  # noqa: B006
    embedder: Annotated[str | None, typer.Option("--embedder", help="checkpoint (default) or frozen.")] = None,
    finetune_lr_scale: Annotated[float | None, typer.Option(
        "--finetune-lr-scale", help="LR multiplier when an iteration fine-tunes the best checkpoint (default 0.3).")] = None,
    resume: Annotated[Path | None, typer.Option("--resume", help="Continue this run directory.")] = None,
    accept_regression: Annotated[bool, typer.Option("--accept-regression", help="Clear a regression halt.")] = False,
    until: Annotated[str | None, typer.Option("--until", help="Stop after this stage (e.g. rca).")] = None,
    keep_checkpoints: Annotated[str | None, typer.Option(
        "--keep-checkpoints", help="best_latest (default: best_val + latest per training) or all.")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Approve the pre-flight without asking.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only one line per stage (no progress lines).")] = False,
    json_out: JsonOpt = False,
    log_level: LogLevelOpt = "info",
    backend: Annotated[str, typer.Option("--backend", hidden=True,
                                         help="Registered model backend (tests and plug-ins).")] = "native",
) -> None:
    """Run Phase 2 — the DEFT data loop — on a workspace, or resume one with --resume RESULTS_DIR."""
    from deftpipe.deft.context import DeftSettings
    from deftpipe.deft.loop import run_loop

    def finish(s: Session, out: Any) -> None:
        s.result.update(run_status=out.status, stop_reason=out.stop_reason, deliverable=out.best_iteration)
        s.say(f"DEFT {out.status}: stop reason {out.stop_reason}, deliverable {out.best_iteration}.")
        echo(f"Run directory: {out.results_dir}")

    if resume is not None:
        def body_resume(s: Session) -> None:
            from deftpipe.state import read_state

            state = read_state(resume)
            s.results_dir = Path(resume).resolve()
            s.say(f"Resuming {s.results_dir} — last events:")
            for ev in state.events[-5:]:
                s.say(f"  #{ev.seq} {ev.iter}/{ev.stage} {ev.status}: {ev.summary}")
            events.publish("run_start", results_dir=s.results_dir, resumed=True)
            finish(s, run_loop(Path(resume), accept_regression=accept_regression, until=until, on_event=s.say,
                               progress_factory=s.progress_factory))
        guarded(lambda: _in_session(body_resume, json_out, log_level, quiet))
        return

    def body(s: Session) -> None:
        from deftpipe.deft.preflight import build_preflight
        from deftpipe.deft.run import create_run
        from deftpipe.errors import ConfigError

        if workspace is None or max_iterations is None:
            raise ConfigError("deft needs --workspace and --max-iterations (or --resume RESULTS_DIR).")
        if until is not None:  # refuse a typo before a run directory exists
            from deftpipe.state.stages import normalize_stage

            normalize_stage(until, where="--until")
        given: dict[str, object] = {"spec_path": spec, "kpi_target_pct": kpi_target, "num_sdg": num_sdg,
                                    "sdg_base": sdg_base, "mining_top_k": mining_top_k, "rca_top_k": rca_top_k,
                                    "min_similarity": min_similarity, "epochs": epochs, "seed": seed,
                                    "embedder": embedder, "finetune_lr_scale": finetune_lr_scale,
                                    "keep_checkpoints": keep_checkpoints}
        chosen = {k: v for k, v in given.items() if v is not None}
        settings = DeftSettings(workspace=workspace, max_iterations=max_iterations, overrides=tuple(override),
                                backend=backend, **chosen)
        pf = build_preflight(settings, given=set(chosen) | {"max_iterations"})
        table = Table(title="DEFT pre-flight")
        for col in ("setting", "value", "source"):
            table.add_column(col)
        for row in pf.rows:
            table.add_row(*row)
        if s.verbose or not yes:  # the plan must be on screen when someone is asked to approve it
            console.print(table)
            for gate in pf.gates:
                echo(f"  gate: {gate}")
        approve(True, yes)
        rd = create_run(settings)
        from deftpipe.workspace.io import write_text_atomic

        write_text_atomic(rd / "preflight.md", pf.to_markdown())
        s.results_dir = rd
        echo(f"Run directory: {rd}")
        events.publish("run_start", results_dir=rd, resumed=False)
        finish(s, run_loop(rd, until=until, on_event=s.say, progress_factory=s.progress_factory))

    guarded(lambda: _in_session(body, json_out, log_level, quiet))


def _in_session(body: Any, json_out: bool, log_level: str, quiet: bool) -> None:
    with session("deft", json_mode=json_out, log_level=log_level, quiet=quiet) as s, events.scope(phase="deft"):
        body(s)
