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


def test_milestone_events_every_ten_percent_whatever_is_shown() -> None:
    from deftpipe.ui import events
    from deftpipe.ui.progress import progress_board

    got: list[dict] = []
    out = io.StringIO()
    with events.listen(got.append), progress_board(quiet=True, stream=out) as factory:
        progress = factory("iter1 · sdg")
        for i in range(1, 21):
            progress(i, 20, "painting")
    assert out.getvalue() == ""  # quiet: nothing shown ...
    pcts = [e["pct"] for e in got]
    assert pcts == [5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0]  # ... but milestones sent
    assert got[-1]["task"] == "iter1 · sdg" and got[-1]["done"] == got[-1]["total"] == 20


def test_board_plain_lines_off_a_tty_and_one_bar_per_step_on_one() -> None:
    from deftpipe.ui.progress import progress_board

    out, clock = io.StringIO(), _Clock()
    with progress_board(stream=out, tty=False, clock=clock) as factory:
        knn = factory("iter1 · data_mining")
        knn(3, 3, "k-NN search (label short)")  # over at once: a quick part prints nothing
        knn(1, 3, "k-NN search (label open)")
        clock.now = 2.0
        knn(3, 3, "k-NN search (label open)")
    assert out.getvalue().splitlines() == ["iter1 · data_mining: 3/3 (100%) k-NN search (label open)"]

    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120)
    with progress_board(console=console) as factory:
        embed = factory("iter1 · data_mining")
        embed(1, 4, "embedding")
        assert "iter1 · data_mining" in out.getvalue() and "/4" in out.getvalue()  # a bar with its count
        embed(4, 4, "embedding")
        sdg = factory("iter1 · sdg")
        sdg(1, 2, "painting")
    assert "iter1 · sdg" in out.getvalue()


def test_a_second_part_with_the_same_total_restarts_lines_and_milestones() -> None:
    from deftpipe.ui import events

    got: list[dict] = []
    out = io.StringIO()
    with events.listen(got.append):
        progress = make_progress("iter1 · data_mining", stream=out)
        for msg in ("decoding", "embedding"):
            for i in range(1, 5):
                progress(i, 4, msg)
    lines = [line.split(" eta")[0] for line in out.getvalue().splitlines()]
    assert lines.count("iter1 · data_mining: 4/4 (100%) embedding") == 1 and len(lines) == 8
    assert [e["message"] for e in got].count("embedding") == 4
