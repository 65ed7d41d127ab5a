"""Progress helper: throttled plain lines off a TTY, a Rich bar on one, silence when quiet."""
from __future__ import annotations

import io

from deftpipe.ui.progress import make_progress, progress_reporter


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_every_ten_percent_and_the_last_one() -> None:
    out = io.StringIO()
    with progress_reporter("train", stream=out, tty=False, clock=_Clock()) as progress:
        for i in range(1, 101):
            progress(i, 100, "epoch 1/1")
    lines = out.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0] == "train: 10/100 (10%) epoch 1/1"  # the fake clock never moves: no ETA yet
    assert lines[-1] == "train: 100/100 (100%) epoch 1/1"


def test_plain_lines_also_every_few_seconds() -> None:
    out, clock = io.StringIO(), _Clock()
    with progress_reporter("decode", stream=out, tty=False, clock=clock, every_seconds=5.0) as progress:
        progress(1, 1000, "")
        clock.now = 6.0
        progress(2, 1000, "")
        progress(3, 1000, "")
    assert out.getvalue().splitlines() == ["decode: 2/1000 (0%) eta 2994s"]


def test_new_total_restarts_the_throttle() -> None:
    out = io.StringIO()
    progress = make_progress("x", stream=out)
    progress(5, 10, "decoding")
    progress(1, 40, "training")
    progress(4, 40, "training")
    assert [line.split(" eta")[0] for line in out.getvalue().splitlines()] == ["x: 5/10 (50%) decoding",
                                                                              "x: 4/40 (10%) training"]


def test_quiet_prints_nothing_and_tty_uses_rich() -> None:
    out = io.StringIO()
    with progress_reporter("train", quiet=True, stream=out) as progress:
        progress(1, 1, "done")
    assert out.getvalue() == ""
    with progress_reporter("train", stream=out, tty=True) as progress:
        progress(3, 4, "epoch 2/2")
    assert "train" in out.getvalue() and "3/4" in out.getvalue()
