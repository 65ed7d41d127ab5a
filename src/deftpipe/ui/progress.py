"""Progress reporting for long loops: a `ProgressFn(done, total, message)` for any stage.

On a TTY it drives a Rich progress bar with ETA; otherwise it prints plain lines,
throttled to every `every_fraction` of the work or `every_seconds`, and always the
last one; `quiet` turns both off.

Example:
    with progress_reporter("training") as progress:
        backend.train(TrainRequest(..., progress=progress))
"""
from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO

ProgressFn = Callable[[int, int, str], None]


def _noop(done: int, total: int, message: str) -> None:
    return None


class _PlainLines:
    """Throttled `label: done/total (pct) message [eta]` lines for logs and pipes."""

    def __init__(self, label: str, stream: IO[str], every_fraction: float, every_seconds: float,
                 clock: Callable[[], float]) -> None:
        self.label = label
        self.stream = stream
        self.every_fraction = every_fraction
        self.every_seconds = every_seconds
        self.clock = clock
        self.start = clock()
        self.last_time = self.start
        self.last_bucket = 0
        self.last_total = -1
        self.n_lines = 0

    def __call__(self, done: int, total: int, message: str) -> None:
        now = self.clock()
        frac = done / total if total > 0 else 1.0
        if total != self.last_total:  # a new phase (e.g. decoding, then training) restarts the throttle
            if self.last_total != -1:
                self.start = self.last_time = now
            self.last_total, self.last_bucket = total, 0
        bucket = int(frac / self.every_fraction + 1e-9)
        finished = total > 0 and done >= total
        if not (finished or bucket > self.last_bucket or now - self.last_time >= self.every_seconds):
            return
        self.last_time, self.last_bucket = now, bucket
        elapsed = now - self.start
        eta = f" eta {elapsed * (1 - frac) / frac:.0f}s" if 0 < frac < 1 and elapsed > 0 else ""
        text = f"{self.label}: {done}/{total} ({100 * frac:.0f}%)"
        if message:
            text += f" {message}"
        self.stream.write(text + eta + "\n")
        self.stream.flush()
        self.n_lines += 1


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
        yield _noop
        return
    is_tty = out.isatty() if tty is None else tty
    if not is_tty:
        yield _PlainLines(label, out, every_fraction, every_seconds, clock)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    console = Console(file=out, force_terminal=True, highlight=False)
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[message]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(label, total=None, message="")

        def update(done: int, total: int, message: str) -> None:
            bar.update(task, completed=done, total=total if total > 0 else None, message=message)

        yield update


def make_progress(label: str, *, quiet: bool = False, stream: IO[str] | None = None) -> ProgressFn:
    """A ProgressFn without a context: always plain throttled lines (safe to hand to other threads/processes)."""
    if quiet:
        return _noop
    return _PlainLines(label, stream if stream is not None else sys.stdout, 0.1, 5.0, time.monotonic)


__all__ = ["ProgressFn", "make_progress", "progress_reporter"]
