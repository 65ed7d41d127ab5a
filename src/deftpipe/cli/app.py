"""The Typer application and the one place where errors become exit codes (SPEC §9).

Command modules are `deftpipe.cli.cmd_<group>`; each decorates functions with
`@app.command()` and wraps its body in `guarded(...)`.
"""
from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from deftpipe.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, DeftError

app = typer.Typer(
    name="deftpipe",
    help="Improve AOI defect classifiers end to end: AutoML -> DEFT data loop -> warm-started AutoML.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)
T = TypeVar("T")


def _internal_log_dir() -> Path:
    base = os.environ.get("DEFTPIPE_LOG_DIR")
    return Path(base) if base else Path.home() / ".cache" / "deftpipe" / "logs"


def guarded(fn: Callable[[], T], *, log_dir: Path | None = None) -> T:
    """Run a command body: DeftError -> one line + hint + its exit code; other errors -> exit 1, traceback to a log."""
    try:
        return fn()
    except DeftError as exc:
        err_console.print(f"[bold red]error:[/] {exc.message}", soft_wrap=True)
        if exc.hint:
            err_console.print(f"[yellow]hint:[/] {exc.hint}", soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err_console.print("interrupted; resume with the same command plus --resume where the command supports it.")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        target = log_dir or _internal_log_dir()
        try:
            target.mkdir(parents=True, exist_ok=True)
            log = target / f"crash_{os.getpid()}.log"
            log.write_text(traceback.format_exc())
            where = f"traceback in {log}"
        except OSError:
            where = "traceback could not be written"
        err_console.print(f"[bold red]internal error:[/] {type(exc).__name__}: {exc} ({where}); please report it.")
        raise typer.Exit(EXIT_INTERNAL) from None


def is_interactive() -> bool:
    return sys.stdin is not None and sys.stdin.isatty() and sys.stdout.isatty()


def echo(message: Any) -> None:
    """Print a plain line (no Rich markup: run output contains brackets such as `[iter 1/2 · train]`)."""
    console.print(message, soft_wrap=True, markup=False, highlight=False)
