"""`deftpipe make-demo-data`: write the synthetic AOI demo workspace."""
from __future__ import annotations

from pathlib import Path

import typer

from deftpipe.cli.app import app, echo, guarded


@app.command("make-demo-data")
def make_demo_data(
    workspace: Path = typer.Argument(..., help="Folder to create (must be new, empty, or a demo workspace with --force)."),
    scale: str = typer.Option("small", "--scale", help="tiny | small | medium | large"),
    seed: int = typer.Option(0, "--seed", help="Same seed -> byte-identical data."),
    force: bool = typer.Option(False, "--force", help="Replace an existing demo workspace (only its generated files)."),
) -> None:
    """Generate a synthetic PCB inspection workspace (golden/test pairs, two lights, planted data gaps)."""
    from deftpipe.demo import make_demo_workspace

    summary = guarded(lambda: make_demo_workspace(workspace, scale=scale, seed=seed, force=force))
    echo(summary.one_line())
