"""Human logs of a run: `RESULTS_DIR/logs/<command>_<pid>.log`, one file per process (SPEC §4), and the log level.

Every status line the run prints and every record of the `deftpipe` loggers at the
session level go there; the file keeps at least `info` whatever the terminal shows,
so `--log-level warning` quiets the terminal without thinning the audit trail.
"""
from __future__ import annotations

import contextlib
import difflib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

LEVELS: dict[str, int] = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
                          "error": logging.ERROR}
_session_level = logging.INFO
_open_files: dict[Path, int] = {}  # log file -> nesting depth (a `run` wraps the loop's own run_log)


def parse_level(name: str) -> int:
    """`debug|info|warning|error` (any case) -> logging level.

    Raises:
        ConfigError: another name; the closest one is suggested.
    """
    from deftpipe.errors import ConfigError

    key = str(name).strip().lower()
    if key not in LEVELS:
        near = difflib.get_close_matches(key, LEVELS, n=1)
        tip = f" Did you mean '{near[0]}'?" if near else ""
        raise ConfigError(f"--log-level is '{name}'; choose one of {', '.join(LEVELS)}.{tip}")
    return LEVELS[key]


def session_level() -> int:
    return _session_level


def file_level() -> int:
    """The log file's threshold: the session level, but never above info."""
    return min(_session_level, logging.INFO)


@contextlib.contextmanager
def log_level(level: int | str) -> Iterator[int]:
    """Set the session level for the block (CLI `--log-level`, API `log_level=`); yields it as an int."""
    global _session_level
    value = parse_level(level) if isinstance(level, str) else int(level)
    logger = logging.getLogger("deftpipe")
    saved = (_session_level, logger.level)
    _session_level = value
    logger.setLevel(min(value, logging.INFO))
    try:
        yield value
    finally:
        _session_level = saved[0]
        logger.setLevel(saved[1])


class _NotStatusLines(logging.Filter):
    """Status lines are printed by their emitter already; the terminal handler must not repeat them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name != "deftpipe.run"


@contextlib.contextmanager
def terminal_logging(sink: Callable[[logging.LogRecord], None], level: int | None = None) -> Iterator[None]:
    """Route `deftpipe` log records at `level` (default: the session level) and above to `sink` for the block."""

    class _Sink(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                sink(record)
            except Exception:  # noqa: BLE001 - logging must never break the run
                self.handleError(record)

    handler = _Sink(level=_session_level if level is None else level)
    handler.addFilter(_NotStatusLines())
    logger = logging.getLogger("deftpipe")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


@contextlib.contextmanager
def run_log(results_dir: Path, emit: Callable[[str], None] | None = None) -> Iterator[Callable[[str], None]]:
    """Attach a file handler for the block; yields an emit function that prints and logs each line.

    Nested calls on the same run (the `run` command around the loop) share one handler.
    """
    logs = Path(results_dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    command = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    path = (logs / f"{command}_{os.getpid()}.log").resolve()
    logger = logging.getLogger("deftpipe")
    run_logger = logging.getLogger("deftpipe.run")
    handler: logging.Handler | None = None
    if path not in _open_files:
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.setLevel(file_level())
        logger.addHandler(handler)
        if logger.level == logging.NOTSET or logger.level > file_level():
            logger.setLevel(file_level())
        run_logger.info("process %s started at %s: %s", os.getpid(), datetime.now(timezone.utc).isoformat(),
                        " ".join(sys.argv))
    _open_files[path] = _open_files.get(path, 0) + 1

    def both(line: str) -> None:
        run_logger.info(line)
        if emit is not None:
            emit(line)

    if getattr(emit, "logs_to", None) == path:
        both = emit  # type: ignore[assignment]  # already logs each line to this file: do not log it twice
    both.logs_to = path  # type: ignore[attr-defined]

    try:
        yield both
    except BaseException as exc:
        if handler is not None:
            run_logger.error("stopped: %s: %s", type(exc).__name__, exc,
                             exc_info=not isinstance(exc, Exception) or None)
        raise
    finally:
        _open_files[path] -= 1
        if _open_files[path] == 0:
            del _open_files[path]
        if handler is not None:
            logger.removeHandler(handler)
            handler.close()
