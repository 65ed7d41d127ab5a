from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from deftpipe.errors import StateConflict
from deftpipe.state.rundir import find_resumable
from deftpipe.state.store import LOCK_FILE, StateStore

from .conftest import run_next


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    return int(proc.stdout)


@pytest.fixture
def holder(rd: Path, store: StateStore):
    """A second process holding the run open until its stdin closes."""
    code = textwrap.dedent(f"""
        import sys
        from deftpipe.state.store import StateStore
        with StateStore.open({str(rd)!r}):
            print("locked", flush=True)
            sys.stdin.read()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    yield proc
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=20)


def test_second_process_refused(rd: Path, holder: subprocess.Popen, store: StateStore) -> None:
    with pytest.raises(StateConflict, match=rf"another deftpipe process \(PID {holder.pid}\)"):
        with StateStore.open(rd):
            pass
    with pytest.raises(StateConflict, match="another deftpipe process"):
        run_next(store)  # a change outside open() takes the lock too
    with pytest.raises(StateConflict, match=rf"PID {holder.pid}\) is running this run"):
        find_resumable(rd)
    assert StateStore.load(rd).state.status == "in_progress"  # reading stays possible


def test_stale_lock_taken_over_and_reported(rd: Path, store: StateStore, caplog) -> None:
    pid = _dead_pid()
    (rd / LOCK_FILE).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "since": 0}))
    point = find_resumable(rd)
    assert point.stale_lock_pid == pid and point.next_stage == ("baseline", "train")
    with caplog.at_level(logging.WARNING), StateStore.open(rd) as s:
        assert s.took_over_lock_from == pid
        assert json.loads((rd / LOCK_FILE).read_text())["pid"] == os.getpid()
        run_next(s)
    assert f"stale run lock of dead process {pid}" in caplog.text
    assert not (rd / LOCK_FILE).exists()


def test_open_nested_in_one_process_keeps_the_lock(rd: Path, store: StateStore) -> None:
    with StateStore.open(rd) as outer:
        run_next(StateStore.load(rd))  # another store object, same process: no second lock needed
        with StateStore.open(rd):
            pass
        assert (rd / LOCK_FILE).exists()
        run_next(outer)
    assert not (rd / LOCK_FILE).exists()
    assert [e.seq for e in StateStore.load(rd).state.events] == [1, 2]
