"""Entry point of the `deftpipe` console script: loads every `cmd_*` module, then runs Typer."""
from __future__ import annotations

import importlib
import pkgutil

import typer

from deftpipe.cli.app import app, guarded
from deftpipe.faults import armed


def _load_commands() -> None:
    import deftpipe.cli as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("cmd_"):
            importlib.import_module(f"deftpipe.cli.{info.name}")


def main() -> None:
    # A malformed DEFTPIPE_FAULT fails here, exit 2, before anything is written (not inside a stage).
    try:
        guarded(armed)
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    _load_commands()
    app()


if __name__ == "__main__":
    main()
