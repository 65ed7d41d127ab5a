"""The CLI's error boundary prints messages verbatim: paths and stage tags contain brackets Rich would eat."""
from __future__ import annotations

import pytest
import typer

from deftpipe.cli.app import guarded
from deftpipe.errors import EXIT_INTERNAL, ConfigError


def _raise(exc: Exception) -> None:
    raise exc


@pytest.mark.parametrize("message", ["CSV [/work/ws/a.csv] line 3: bad label", "[iter 1/2 · train] failed",
                                     "choose one of [a, b]"])
def test_error_text_with_brackets_is_printed_verbatim(message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as info:
        guarded(lambda: _raise(ConfigError(message, hint="see [/docs] or [bold]")))
    assert info.value.exit_code == ConfigError(message).exit_code
    err = capsys.readouterr().err
    assert message in err and "see [/docs] or [bold]" in err


def test_internal_error_with_brackets_names_the_log(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as info:
        guarded(lambda: _raise(RuntimeError("shape [/x] mismatch")), log_dir=tmp_path)
    assert info.value.exit_code == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "shape [/x] mismatch" in err and str(tmp_path) in err.replace("\n", "")
