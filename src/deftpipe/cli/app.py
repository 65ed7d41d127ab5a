"""The Typer application and the one place where errors become exit codes (SPEC §9).

Command modules are `deftpipe.cli.cmd_<group>`; each decorates functions with
`@app.command()` and wraps its body in `guarded(...)`.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from deftpipe.errors import EXIT_INTERNAL, EXIT_INTERRUPTED, DeftError
from deftpipe.ui import events

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
        err_console.print(f"[bold red]error:[/] {escape(exc.message)}", soft_wrap=True)
        if exc.hint:
            err_console.print(f"[yellow]hint:[/] {escape(exc.hint)}", soft_wrap=True)
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
        err_console.print(f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))} ({escape(where)}); "
                          "please report it.")
        raise typer.Exit(EXIT_INTERNAL) from None


def is_interactive() -> bool:
    """A person can answer a prompt: stdin and the stream human text goes to (stderr under --json) are terminals."""
    out = sys.stderr if console.stderr else sys.stdout
    return sys.stdin is not None and sys.stdin.isatty() and out.isatty()


def prompt(text: str) -> str:
    """Ask on the stream human text goes to, so `--json` keeps stdout to JSON lines."""
    return str(typer.prompt(text, default="", show_default=False, err=console.stderr))


def echo(message: Any) -> None:
    """Print a plain line (no Rich markup: run output contains brackets such as `[iter 1/2 · train]`)."""
    console.print(message, soft_wrap=True, markup=False, highlight=False)


JsonOpt = Annotated[bool, typer.Option(
    "--json", help="One JSON object per event on stdout (schema in README); human text goes to stderr.")]
LogLevelOpt = Annotated[str, typer.Option(
    "--log-level", help="debug|info|warning|error: terminal verbosity; RESULTS_DIR/logs/ keeps at least info.")]


@dataclass
class Session:
    """How one run command talks: `say` for info lines, a progress factory, and the result event."""

    json: bool
    level: int
    progress_factory: Any = None
    results_dir: Path | None = None
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def verbose(self) -> bool:
        """Info lines (pre-flight tables, stage lines, progress) are shown on the terminal."""
        return self.level <= logging.INFO

    def say(self, line: Any) -> None:
        if self.verbose:
            echo(line)


def _terminal_sink(json_mode: bool) -> Callable[[logging.LogRecord], None]:
    def sink(record: logging.LogRecord) -> None:
        if record.name.startswith("deftpipe.ui"):
            return  # the event machinery's own records would loop back into it
        if json_mode:
            events.publish("log", level=record.levelname.lower(), logger=record.name, message=record.getMessage())
        else:
            err_console.print(f"{record.levelname.lower()}: {record.getMessage()}", markup=False, soft_wrap=True)
    return sink


@contextlib.contextmanager
def session(command: str, *, json_mode: bool, log_level: str, quiet: bool = False) -> Iterator[Session]:
    """Set up `--json` / `--log-level` / `--quiet` for one command body (run inside `guarded`).

    Under `--json` the shared console prints to stderr and stdout carries only JSON lines, ending
    with one `result` event (`status` ok or error, `exit_code`) whatever happens.
    """
    from deftpipe.ui.progress import progress_board
    from deftpipe.ui.runlog import log_level as level_scope
    from deftpipe.ui.runlog import terminal_logging

    saved = console.stderr
    with contextlib.ExitStack() as stack:
        if json_mode:
            console.stderr = True
            stack.callback(setattr, console, "stderr", saved)
            stack.enter_context(events.listen(events.JsonLines(sys.stdout)))
        stack.enter_context(events.scope(command=command))
        s = Session(json=json_mode, level=logging.INFO)
        try:
            s.level = stack.enter_context(level_scope(log_level))  # a bad name is a ConfigError: one result line
            stack.enter_context(terminal_logging(_terminal_sink(json_mode)))
            shown = not (quiet or json_mode or s.level > logging.INFO)
            s.progress_factory = stack.enter_context(progress_board(quiet=not shown, console=console))
            yield s
        except DeftError as exc:
            events.publish("result", status="error", exit_code=exc.exit_code, error=type(exc).__name__,
                           message=exc.message, hint=exc.hint, results_dir=s.results_dir)
            raise
        except KeyboardInterrupt:
            events.publish("result", status="error", exit_code=EXIT_INTERRUPTED, error="KeyboardInterrupt",
                           message="interrupted", results_dir=s.results_dir)
            raise
        except typer.Exit as exc:
            events.publish("result", status="ok" if exc.exit_code == 0 else "error", exit_code=exc.exit_code,
                           results_dir=s.results_dir, **s.result)
            raise
        except Exception as exc:
            events.publish("result", status="error", exit_code=EXIT_INTERNAL, error=type(exc).__name__,
                           message=str(exc), results_dir=s.results_dir)
            raise
        events.publish("result", status="ok", exit_code=0, results_dir=s.results_dir, **s.result)
