"""`deftpipe init` and `deftpipe validate-workspace` (no torch import: these must be fast)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from deftpipe.cli.app import app, console, echo, err_console, guarded
from deftpipe.errors import EXIT_USER


@app.command("init")
def init_cmd(workspace: Annotated[Path, typer.Argument(help="Folder to create the workspace in.")]) -> None:
    """Scaffold an empty workspace: folders, spec template, CSV headers."""
    from deftpipe.workspace.scaffold import init_workspace

    root = guarded(lambda: init_workspace(workspace))
    echo(f"Workspace ready at {root}: put images under images/, rows in the CSVs, then `deftpipe validate-workspace {workspace}`.")


@app.command("validate-workspace")
def validate_cmd(
    workspace: Annotated[Path, typer.Argument(help="Workspace root.")],
    override: Annotated[list[str], typer.Option("-o", "--override", help="Spec override key=value (repeatable).")] = [],  # noqa: B006
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    decode: Annotated[bool, typer.Option("--decode/--no-decode", help="Decode every image (default) or only check existence.")] = True,
) -> None:
    """Check spec, CSVs, image files and train/val/KPI overlap; exit 2 on any problem."""
    from deftpipe.workspace.validate import validate_workspace

    report = guarded(lambda: validate_workspace(workspace, override, decode=decode))
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        table = Table(title=f"Workspace {report.workspace}")
        for col in ("CSV", "rows", "labels", "missing files", "bad images"):
            table.add_column(col)
        for t in report.tables:
            labels = ", ".join(f"{k}={v}" for k, v in t.labels.items())
            table.add_row(t.name, str(t.n_rows), labels, str(t.n_missing_files), str(t.n_bad_images))
        console.print(table)
        if report.lights:
            echo(f"lights: {', '.join(report.lights)} · image size: {report.image_size[1]}x{report.image_size[0]}"
                 if report.image_size else "")
        for name, n in report.overlaps.items():
            echo(f"overlap {name}: {n}")
    if not report.ok:
        for problem in report.problems:
            err_console.print(f"[bold red]error:[/] {escape(problem)}", soft_wrap=True)
        raise typer.Exit(EXIT_USER)
    if not as_json:
        echo("Workspace OK.")
