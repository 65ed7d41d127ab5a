"""Hypothesis, beside tests/unit/state/test_crash.py (process deaths): errors the process *survives*.

A full disk (ENOSPC) at the snapshot write, fsync or rename, or at the journal append, raises in the
committing process, which carries on with the next commits. The state must stay loadable, its events a
prefix of the intended sequence, and the journal equal to the snapshot's events after reconciliation.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deftpipe.state import store as store_mod
from deftpipe.state.records import JOURNAL_FILE, STATE_FILE
from deftpipe.state.store import StateStore
from deftpipe.workspace import io as io_mod
from deftpipe.workspace.io import orphan_temp_files, read_jsonl
from tests.unit.state.conftest import new_store, run_next
from tests.unit.state.test_stages import EXPECTED_TWO_ITERATIONS

FAULTS = ("ok", "ok", "write", "fsync", "replace", "journal")


def _enospc(*_: object, **__: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


@contextlib.contextmanager
def _fault(kind: str) -> Iterator[None]:
    real_replace, real_open = os.replace, open

    def replace(src: str, dst: str) -> None:
        if Path(dst).name == STATE_FILE:
            _enospc()
        real_replace(src, dst)

    def fsync_state_only(fd: int) -> None:  # the snapshot's temp file is the first fsync of a commit
        _enospc()

    class Full:
        def __init__(self, fh: object) -> None:
            self.fh = fh

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self.fh.close()  # type: ignore[attr-defined]

        def write(self, data: bytes) -> int:
            self.fh.write(data[:7])  # type: ignore[attr-defined]
            _enospc()
            return 0

    def fake_open(file: object, mode: str = "r", *a: object, **k: object) -> object:
        fh = real_open(file, mode, *a, **k)  # type: ignore[call-overload]
        return Full(fh) if "w" in mode and STATE_FILE in str(file) else fh

    patches = {
        "ok": [],
        "write": [mock.patch.object(io_mod, "open", fake_open, create=True)],
        "fsync": [mock.patch("os.fsync", fsync_state_only)],
        "replace": [mock.patch("os.replace", replace)],
        "journal": [mock.patch.object(store_mod, "append_jsonl", _enospc)],
    }[kind]
    with contextlib.ExitStack() as stack:
        for p in patches:
            stack.enter_context(p)
        yield


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=st.lists(st.sampled_from(FAULTS), min_size=3, max_size=10))
def test_survived_disk_full_errors_keep_a_loadable_prefix(plan: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp, mock.patch("os.fsync", lambda fd: None):
        rd = (Path(tmp) / "ws/results/run_20260101_000000").resolve()
        new_store(rd, max_iterations=2)
        done: list[tuple[str, str]] = []
        for kind in plan:
            store = StateStore.load(rd)
            nxt = store.next_stage()
            if nxt is None:
                break
            before = (rd / STATE_FILE).read_bytes()
            failed = False
            with _fault(kind):
                try:
                    run_next(store)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    failed = True
            if failed:
                assert (rd / STATE_FILE).read_bytes() == before  # the previous state, byte for byte
            else:
                done.append(nxt)  # a failed journal append still commits: the snapshot is the truth
            assert orphan_temp_files(rd) == []
            reloaded = StateStore.load(rd)  # reconciles the journal
            events = [(e.iter, e.stage) for e in reloaded.state.events]
            assert events == done == EXPECTED_TWO_ITERATIONS[: len(done)]
            assert read_jsonl(rd / JOURNAL_FILE) == json.loads((rd / STATE_FILE).read_text())["events"]
