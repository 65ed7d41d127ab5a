"""`deftpipe import <dataset> SRC WS`: build a workspace from a public inspection dataset."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from deftpipe.cli.app import app, echo, err_console, guarded
from deftpipe.importers.deeppcb import DEFAULT_SPLITS, import_deeppcb

import_app = typer.Typer(help="Import a public dataset as a deftpipe workspace.", no_args_is_help=True)
app.add_typer(import_app, name="import")

_PHASES = {"scan": "scanning pairs", "write": "writing crops"}


@import_app.command("deeppcb")
def deeppcb(
    src: Annotated[Path, typer.Argument(help="DeepPCB 'PCBData' folder (group<G>/<id>/<id><NNN>_test.jpg).")],
    ws: Annotated[Path, typer.Argument(help="Workspace folder to create (empty or absent).")],
    crop: Annotated[int, typer.Option(help="Crop size in px (= model image size).")] = 64,
    mode: Annotated[str, typer.Option(help="defect-centred | tiles.")] = "defect-centred",
    stride: Annotated[int | None, typer.Option(
        help="Grid stride in px (tiles: default = crop; defect-centred: PASS sampling grid, default crop/4).",
    )] = None,
    max_pairs: Annotated[int | None, typer.Option(help="Import at most N pairs, drawn across groups.")] = None,
    splits: Annotated[str, typer.Option(help="Image fractions per split.")] = DEFAULT_SPLITS,
    pass_ratio: Annotated[float, typer.Option(help="Share of PASS rows per split.")] = 0.9,
    max_per_split: Annotated[int, typer.Option(help="At most N rows per split.")] = 8000,
    keep_blank: Annotated[bool, typer.Option("--keep-blank", help="Keep PASS crops with a blank golden.")] = False,
    kind: Annotated[str, typer.Option(help="component_kind column: trace | group.")] = "trace",
    seed: Annotated[int, typer.Option(help="Seed for splits and sampling.")] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace a workspace this importer created.")] = False,
) -> None:
    """Crop DeepPCB test/template pairs into a labelled workspace (images, CSVs, spec, import_summary.json)."""

    def body() -> None:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err_console, transient=True) as bar:
            tasks: dict[str, int] = {}

            def report(phase: str, done: int, total: int) -> None:
                if phase not in tasks:
                    tasks[phase] = bar.add_task(_PHASES.get(phase, phase), total=total)
                bar.update(tasks[phase], completed=done, total=total)

            summary = import_deeppcb(
                src, ws, crop=crop, mode=mode, stride=stride, max_pairs=max_pairs, splits=splits,
                pass_ratio=pass_ratio, max_per_split=max_per_split, filter_blank=not keep_blank, seed=seed,
                force=force, component_kind=kind, progress=report,
            )
        echo(summary.one_line())

    guarded(body)
