"""Simulated crashes at every point of a commit always leave a loadable, resumable state.

A crash is a `BaseException` raised from inside the store's writes (as if the process were
killed there); a killed writer's leftovers — its temp file and its run lock with a dead PID —
are recreated by hand, and the next `StateStore.open` must clean / take them over.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deftpipe.state import store as store_mod
from deftpipe.state.records import JOURNAL_FILE, STATE_FILE
from deftpipe.state.store import LOCK_FILE, StateStore
from deftpipe.workspace.io import orphan_temp_files, read_jsonl

from .conftest import new_store, run_next
from .test_stages import EXPECTED_TWO_ITERATIONS

POINTS = ("none", "fsync", "replace", "replace_killed", "journal", "journal_torn", "journal_oserror")


class Crash(BaseException):
    """The process dies here: nothing after this line of the store runs."""


_DEAD_PID: list[int] = []


def dead_pid() -> int:
    if not _DEAD_PID:
        out = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                             capture_output=True, text=True, check=True)
        _DEAD_PID.append(int(out.stdout))
    return _DEAD_PID[0]


@contextlib.contextmanager
def crash_at(point: str, rd: Path) -> Iterator[None]:
    real_replace = os.replace

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(dst).name == STATE_FILE:
            if point == "replace_killed":  # a SIGKILL would leave the temp file behind
                Path(src).with_name(f".{STATE_FILE}.{dead_pid()}.deftpipe-tmp").write_bytes(Path(src).read_bytes())
            raise Crash
        real_replace(src, dst)

    def fsync(fd: int) -> None:
        raise Crash

    def append(path: Path | str, record: dict) -> None:
        if point == "journal_oserror":
            raise OSError(28, "No space left on device")
        if point == "journal_torn":
            with open(path, "ab") as fh:
                fh.write(json.dumps(record).encode()[:17])
        raise Crash

    patches = {
        "none": [],
        "fsync": [mock.patch("os.fsync", fsync)],
        "replace": [mock.patch("os.replace", replace)],
        "replace_killed": [mock.patch("os.replace", replace)],
        "journal": [mock.patch.object(store_mod, "append_jsonl", append)],
        "journal_torn": [mock.patch.object(store_mod, "append_jsonl", append)],
        "journal_oserror": [mock.patch.object(store_mod, "append_jsonl", append)],
    }[point]
    with contextlib.ExitStack() as stack:
        for p in patches:
            stack.enter_context(p)
        yield


def _check_consistent(rd: Path) -> list[tuple[str, str]]:
    with StateStore.open(rd) as s:  # "restart": cleans orphans, takes a stale lock, reconciles the journal
        events = [(e.iter, e.stage) for e in s.state.events]
        assert events == EXPECTED_TWO_ITERATIONS[: len(events)]
        assert [e.seq for e in s.state.events] == list(range(1, len(events) + 1))
        assert read_jsonl(rd / JOURNAL_FILE) == json.loads((rd / STATE_FILE).read_text())["events"]
        assert orphan_temp_files(rd) == []
    return events


def _run_plan(plan: list[str]) -> None:
    # fsync durability is not what an in-process crash tests; skipping it keeps the suite fast
    with tempfile.TemporaryDirectory() as tmp, mock.patch("os.fsync", lambda fd: None):
        rd = Path(tmp) / "run"
        new_store(rd, max_iterations=2)
        done: list[tuple[str, str]] = []
        for point in plan:
            s = StateStore.load(rd)
            nxt = s.next_stage()
            if nxt is None:
                break
            crashed = False
            with crash_at(point, rd):
                try:
                    with StateStore.open(rd) as locked:
                        run_next(locked)
                except Crash:
                    crashed = True
            if crashed:  # a killed process leaves its lock behind
                (rd / LOCK_FILE).write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname()}))
            events = _check_consistent(rd)
            assert events in (done, done + [nxt])
            if not crashed:
                assert events == done + [nxt]
            done = events
        if StateStore.load(rd).next_stage() is not None:  # one more clean commit after the last crash
            with StateStore.open(rd) as s:
                run_next(s)
            _check_consistent(rd)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=st.lists(st.sampled_from(POINTS), min_size=1, max_size=5))
def test_random_crashes_leave_a_loadable_prefix(plan: list[str]) -> None:
    _run_plan(plan)


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=st.lists(st.sampled_from(POINTS), min_size=5, max_size=20))
def test_random_crashes_over_a_whole_run(plan: list[str]) -> None:
    _run_plan(plan)


@pytest.mark.parametrize("point", POINTS)
def test_each_crash_point(point: str) -> None:
    _run_plan(["none", point, "none"])
