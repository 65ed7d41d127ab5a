"""Entry point of the `deftpipe` console script: loads every `cmd_*` module, then runs Typer."""
from __future__ import annotations

import importlib
import pkgutil

from deftpipe.cli.app import app


def _load_commands() -> None:
    import deftpipe.cli as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("cmd_"):
            importlib.import_module(f"deftpipe.cli.{info.name}")


def main() -> None:
    _load_commands()
    app()


if __name__ == "__main__":
    main()
