"""Progress reporting for long loops: a `ProgressFn(done, total, message)` for any stage.

On a TTY it drives a Rich progress bar with ETA; otherwise it prints plain lines,
throttled to every `every_fraction` of the work or `every_seconds`, and always the
last one; `quiet` turns both off. Whatever is shown, every 10 % is also published
as a `progress` event (`deftpipe.ui.events`) for `--json`.

Example:
    with progress_reporter("training") as progress:
        backend.train(TrainRequest(..., progress=progress))
    with progress_board(console=console) as factory:   # one display for a whole command
        run_loop(rd, progress_factory=factory)          # factory("iter1 · sdg") -> ProgressFn
"""
from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

from deftpipe.ui import events

ProgressFn = Callable[[int, int, str], None]


def _noop(done: int, total: int, message: str) -> None:
    return None


class _PlainLines:
    """Throttled `label: done/total (pct) message [eta]` lines for logs and pipes."""

    def __init__(self, label: str, stream: IO[str], every_fraction: float, every_seconds: float,
                 clock: Callable[[], float], min_seconds: float = 0.0) -> None:
        self.label = label
        self.min_seconds = min_seconds
        self.stream = stream
        self.every_fraction = every_fraction
        self.every_seconds = every_seconds
        self.clock = clock
        self.start = clock()
        self.last_time = self.start
        self.last_bucket = 0
        self.last_total = -1
        self.last_done = 0
        self.n_lines = 0

    def __call__(self, done: int, total: int, message: str) -> None:
        now = self.clock()
        frac = done / total if total > 0 else 1.0
        # A new phase (decoding, then training or embedding) restarts the throttle, even at the same total.
        if total != self.last_total or done < self.last_done:
            if self.last_total != -1:
                self.start = self.last_time = now
            self.last_total, self.last_bucket = total, 0
        self.last_done = done
        bucket = int(frac / self.every_fraction + 1e-9)
        finished = total > 0 and done >= total
        if not (finished or bucket > self.last_bucket or now - self.last_time >= self.every_seconds):
            return
        if now - self.start < self.min_seconds:
            return  # a part this quick (one small query group, a 2-row CSV) is not worth a log line
        self.last_time, self.last_bucket = now, bucket
        elapsed = now - self.start
        eta = f" eta {elapsed * (1 - frac) / frac:.0f}s" if 0 < frac < 1 and elapsed > 0 else ""
        text = f"{self.label}: {done}/{total} ({100 * frac:.0f}%)"
        if message:
            text += f" {message}"
        self.stream.write(text + eta + "\n")
        self.stream.flush()
        self.n_lines += 1


class _Milestones:
    """Wraps a ProgressFn: publishes a `progress` event at every `every_fraction` and at the end."""

    def __init__(self, label: str, inner: ProgressFn, every_fraction: float = 0.1) -> None:
        self.label = label
        self.inner = inner
        self.every_fraction = every_fraction
        self.last_total = -1
        self.last_done = 0
        self.last_bucket = -1

    def __call__(self, done: int, total: int, message: str) -> None:
        self.inner(done, total, message)
        if not events.active():
            return
        if total != self.last_total or done < self.last_done:  # a new part (decoding, then embedding ...)
            self.last_total, self.last_bucket = total, -1
        self.last_done = done
        frac = done / total if total > 0 else 1.0
        bucket = int(frac / self.every_fraction + 1e-9)
        if bucket > self.last_bucket:
            self.last_bucket = bucket
            events.publish("progress", task=self.label, done=int(done), total=int(total),
                           pct=round(100 * frac, 1), message=message)


def _rich_columns() -> tuple[Any, ...]:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[message]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())


@contextlib.contextmanager
def progress_reporter(label: str, *, quiet: bool = False, stream: IO[str] | None = None,
                      tty: bool | None = None, every_fraction: float = 0.1, every_seconds: float = 5.0,
                      clock: Callable[[], float] = time.monotonic) -> Iterator[ProgressFn]:
    """Yield a ProgressFn: Rich bar with ETA on a TTY, throttled plain lines otherwise, nothing when `quiet`.

    Args:
        tty: force (True/False) instead of asking `stream.isatty()`.
    """
    out = stream if stream is not None else sys.stdout
    if quiet:
        yield _Milestones(label, _noop)
        return
    is_tty = out.isatty() if tty is None else tty
    if not is_tty:
        yield _Milestones(label, _PlainLines(label, out, every_fraction, every_seconds, clock))
        return
    from rich.console import Console
    from rich.progress import Progress

    console = Console(file=out, force_terminal=True, highlight=False)
    with Progress(*_rich_columns(), console=console, transient=False) as bar:
        task = bar.add_task(label, total=None, message="")

        def update(done: int, total: int, message: str) -> None:
            bar.update(task, completed=done, total=total if total > 0 else None, message=message)

        yield _Milestones(label, update)


def make_progress(label: str, *, quiet: bool = False, stream: IO[str] | None = None,
                  clock: Callable[[], float] = time.monotonic, min_seconds: float = 0.0) -> ProgressFn:
    """A ProgressFn without a context: always plain throttled lines (safe to hand to other threads/processes).

    Args:
        min_seconds: print nothing for a part until it has run this long (quick parts stay silent).
    """
    if quiet:
        return _Milestones(label, _noop)
    return _Milestones(label, _PlainLines(label, stream if stream is not None else sys.stdout, 0.1, 5.0,
                                          clock, min_seconds))


class _Board:
    """One Rich live display shared by every step of a command: a bar appears on a step's first call and
    goes when the step reaches its total, so status lines printed on the same console stay above it."""

    def __init__(self, console: Any) -> None:
        from rich.progress import Progress

        self.progress = Progress(*_rich_columns(), console=console, transient=True)
        self.lock = threading.Lock()
        self.n_open = 0

    def bar(self, label: str) -> ProgressFn:
        task: list[Any] = []

        def update(done: int, total: int, message: str) -> None:
            with self.lock:
                if not task:
                    if self.n_open == 0:
                        self.progress.start()
                    self.n_open += 1
                    task.append(self.progress.add_task(label, total=total if total > 0 else None, message=""))
                self.progress.update(task[0], completed=done, total=total if total > 0 else None, message=message)
                if total > 0 and done >= total:  # this part is over; the next call (new total) opens a fresh bar
                    self.progress.remove_task(task.pop())
                    self.n_open -= 1
                    if self.n_open == 0:
                        self.progress.stop()

        return update

    def close(self) -> None:
        with self.lock:
            if self.n_open:
                self.progress.stop()
                self.n_open = 0


@contextlib.contextmanager
def progress_board(*, quiet: bool = False, console: Any = None, stream: IO[str] | None = None,
                   tty: bool | None = None, clock: Callable[[], float] = time.monotonic,
                   min_seconds: float = 1.0) -> Iterator[Callable[[str], ProgressFn]]:
    """Yield a factory `label -> ProgressFn` for every long step of one command.

    Rich bars with ETA on `console` when it is a terminal, throttled plain lines on `stream`
    otherwise (only for parts running at least `min_seconds`: a run has hundreds of tiny ones), nothing
    shown when `quiet` (`--quiet`, `--json`, `--log-level warning`); milestone events are published in
    every mode.
    """
    out = stream if stream is not None else (console.file if console is not None else sys.stdout)
    is_tty = tty if tty is not None else (console.is_terminal if console is not None else out.isatty())
    if quiet:
        yield lambda label: _Milestones(label, _noop)
        return
    if not is_tty:
        yield lambda label: make_progress(label, stream=out, clock=clock, min_seconds=min_seconds)
        return
    if console is None:
        from rich.console import Console

        console = Console(file=out, force_terminal=True, highlight=False)
    board = _Board(console)
    try:
        yield lambda label: _Milestones(label, board.bar(label))
    finally:
        board.close()


__all__ = ["ProgressFn", "make_progress", "progress_board", "progress_reporter"]
