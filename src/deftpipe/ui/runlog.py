"""Human logs of a run: `RESULTS_DIR/logs/<command>_<pid>.log`, one file per process (SPEC §4).

Every status line the run prints and every warning of the `deftpipe` loggers go there too.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path


@contextlib.contextmanager
def run_log(results_dir: Path, emit: Callable[[str], None] | None = None) -> Iterator[Callable[[str], None]]:
    """Attach a file handler for the block; yields an emit function that prints and logs each line."""
    logs = Path(results_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    command = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    handler = logging.FileHandler(logs / f"{command}_{os.getpid()}.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("deftpipe")
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    run_logger = logging.getLogger("deftpipe.run")
    run_logger.info("process %s started at %s: %s", os.getpid(), datetime.now(timezone.utc).isoformat(), " ".join(sys.argv))

    def both(line: str) -> None:
        run_logger.info(line)
        if emit is not None:
            emit(line)

    try:
        yield both
    except BaseException as exc:
        run_logger.error("stopped: %s: %s", type(exc).__name__, exc, exc_info=not isinstance(exc, Exception) or None)
        raise
    finally:
        logger.removeHandler(handler)
        handler.close()
