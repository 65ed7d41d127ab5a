"""`deftpipe deft`: the DEFT loop alone (trains its own baseline unless pre-seeded); resumable."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from deftpipe.cli.app import app, console, echo, guarded, is_interactive


def approve(summary_printed: bool, yes: bool) -> None:
    """One approval: --yes, or `go` typed on a TTY; otherwise exit 3 having written nothing."""
    from deftpipe.errors import ApprovalNeeded

    if yes:
        return
    if not is_interactive():
        raise ApprovalNeeded("approval needed: nothing was written. Re-run with --yes to approve the plan above.")
    answer = typer.prompt("Type 'go' to start (anything else aborts)", default="", show_default=False)
    if answer.strip().lower() != "go":
        raise ApprovalNeeded("not approved; nothing was written.")


def progress_factory(quiet: bool) -> Any:
    """Throttled plain progress lines for training / inference inside each stage (None when quiet)."""
    if quiet:
        return None
    from deftpipe.ui.progress import make_progress

    return lambda label: make_progress(label)


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
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Approve the pre-flight without asking.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only one line per stage (no progress lines).")] = False,
    backend: Annotated[str, typer.Option("--backend", hidden=True,
                                         help="Registered model backend (tests and plug-ins).")] = "native",
) -> None:
    """Run Phase 2 — the DEFT data loop — on a workspace, or resume one with --resume RESULTS_DIR."""
    from deftpipe.deft.context import DeftSettings
    from deftpipe.deft.loop import run_loop

    if resume is not None:
        def body_resume() -> None:
            from deftpipe.state import read_state

            state = read_state(resume)
            echo(f"Resuming {Path(resume).resolve()} — last events:")
            for ev in state.events[-5:]:
                echo(f"  #{ev.seq} {ev.iter}/{ev.stage} {ev.status}: {ev.summary}")
            out = run_loop(Path(resume), accept_regression=accept_regression, until=until, on_event=echo,
                           progress_factory=progress_factory(quiet))
            echo(f"Run directory: {out.results_dir}")
        guarded(body_resume)
        return

    def body() -> None:
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
                                    "embedder": embedder, "finetune_lr_scale": finetune_lr_scale}
        chosen = {k: v for k, v in given.items() if v is not None}
        settings = DeftSettings(workspace=workspace, max_iterations=max_iterations, overrides=tuple(override),
                                backend=backend, **chosen)
        pf = build_preflight(settings, given=set(chosen) | {"max_iterations"})
        table = Table(title="DEFT pre-flight")
        for col in ("setting", "value", "source"):
            table.add_column(col)
        for row in pf.rows:
            table.add_row(*row)
        console.print(table)
        for gate in pf.gates:
            echo(f"  gate: {gate}")
        approve(True, yes)
        rd = create_run(settings)
        from deftpipe.workspace.io import write_text_atomic

        write_text_atomic(rd / "preflight.md", pf.to_markdown())
        echo(f"Run directory: {rd}")
        out = run_loop(rd, until=until, on_event=echo, progress_factory=progress_factory(quiet))
        echo(f"DEFT {out.status}: stop reason {out.stop_reason}, deliverable {out.best_iteration}.")
        echo(f"Run directory: {rd}")

    guarded(body)
