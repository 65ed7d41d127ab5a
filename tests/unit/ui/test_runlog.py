"""Log level: parsed with a suggestion; debug reaches the file, which keeps info at any level; one handler per file."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from deftpipe.errors import ConfigError
from deftpipe.ui.runlog import file_level, log_level, parse_level, run_log, terminal_logging

log = logging.getLogger("deftpipe.test_runlog")


def _log_text(rd: Path) -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted((rd / "logs").glob("*.log")))


def test_parse_level_suggests_the_closest_name() -> None:
    assert parse_level("DEBUG") == logging.DEBUG
    with pytest.raises(ConfigError, match="Did you mean 'error'"):
        parse_level("eror")


def test_debug_reaches_the_file_and_warning_still_keeps_info(tmp_path: Path) -> None:
    with log_level("debug"), run_log(tmp_path / "a") as emit:
        log.debug("a debug detail")
        emit("[baseline · train] a status line")
    text = _log_text(tmp_path / "a")
    assert "DEBUG deftpipe.test_runlog: a debug detail" in text and "[baseline · train] a status line" in text

    with log_level("warning"):
        assert file_level() == logging.INFO
        with run_log(tmp_path / "b") as emit:
            log.debug("hidden")
            log.info("kept in the file")
    text = _log_text(tmp_path / "b")
    assert "kept in the file" in text and "hidden" not in text


def test_terminal_sink_follows_the_level_and_skips_status_lines(tmp_path: Path) -> None:
    seen: list[str] = []
    with log_level("warning"), terminal_logging(lambda r: seen.append(r.getMessage())), \
            run_log(tmp_path) as emit:
        log.info("an info record")
        log.warning("a warning record")
        emit("a status line")  # printed by its emitter, never twice
    assert seen == ["a warning record"]


def test_nested_run_logs_share_one_handler(tmp_path: Path) -> None:
    with run_log(tmp_path, lambda line: None) as outer, run_log(tmp_path, outer) as inner:
        inner("only once")
    assert _log_text(tmp_path).count("only once") == 1
    assert len(list((tmp_path / "logs").glob("*.log"))) == 1
