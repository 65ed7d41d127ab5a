"""`deftpipe rerun RESULTS_DIR`: repeat a finished run into a new run folder and check its numbers match."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from deftpipe.cli.app import app, console, echo, err_console, guarded


def _fmt(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def print_comparison(result: Any) -> None:
    """Headline numbers always, every other number only when it differs; then one count line."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"rerun vs original ({result.kind})", title_justify="left")
    for col in ("number", "original", "rerun", "match"):
        table.add_column(col)
    for c in result.comparisons:
        if c.headline or not c.match:
            table.add_row(escape(c.key), escape(_fmt(c.original)), escape(_fmt(c.rerun)),
                          "yes" if c.match else "[bold red]DIFFERS[/]")
    console.print(table)
    echo(f"{len(result.comparisons) - len(result.mismatches)} of {len(result.comparisons)} numbers match "
         f"({len(result.mismatches)} differ).")


@app.command("rerun")
def rerun_cmd(
    results_dir: Annotated[Path, typer.Argument(help="Run folder made by `deftpipe run` or `deftpipe deft`.")],
    out: Annotated[Path | None, typer.Option("--out", help="New run folder (inside the workspace; default: "
                                              "results/run_<UTC>).")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Approve without asking.")] = False,
) -> None:
    """Repeat a run (same workspace, seed, settings, thread count) into a new folder and compare every number.

    Exit 0 when all match; 4 when any differs (after warnings about host / package / thread differences,
    which make differences expected).
    """

    def body() -> None:
        from rich.markup import escape

        from deftpipe.cli.cmd_deft import approve
        from deftpipe.errors import ReproductionMismatch
        from deftpipe.pipeline.rerun import REPORT_FILE, execute_rerun, plan_rerun

        plan = plan_rerun(results_dir, out=out)
        for line in plan.summary_lines():
            echo(line)
        for note in plan.warnings:
            err_console.print(f"[yellow]warning:[/] {escape(note)}", soft_wrap=True, highlight=False)
        if plan.warnings:
            err_console.print("[yellow]warning:[/] the rerun does not repeat the recorded conditions; numbers may "
                              "differ for that reason.", soft_wrap=True)
        approve(True, yes)
        result = execute_rerun(plan, emit=echo)
        print_comparison(result)
        if not result.ok:
            cause = ("expected: the conditions differ (warnings above)" if plan.warnings else
                     "same host, packages, threads and seed should give the same numbers")
            raise ReproductionMismatch(
                f"rerun: {len(result.mismatches)} of {len(result.comparisons)} numbers differ from {plan.original_dir} "
                f"(new run {result.rerun_dir}; {cause}).",
                hint=f"The differing numbers are listed above and in {result.rerun_dir / REPORT_FILE}.")
        echo(f"Reproduced: all {len(result.comparisons)} numbers match. Run directory: {result.rerun_dir}")

    guarded(body)
