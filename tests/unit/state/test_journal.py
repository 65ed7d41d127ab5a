from __future__ import annotations

import json
from pathlib import Path

from deftpipe.state.records import JOURNAL_FILE, STATE_FILE
from deftpipe.state.store import ORPHANED_JOURNAL_FILE, StateStore
from deftpipe.workspace.io import read_jsonl

from .conftest import run_next


def _snapshot_events(rd: Path) -> list[dict]:
    return json.loads((rd / STATE_FILE).read_text())["events"]


def test_torn_last_journal_line_tolerated_and_repaired(store: StateStore, rd: Path) -> None:
    run_next(store)
    run_next(store)
    with open(rd / JOURNAL_FILE, "ab") as fh:
        fh.write(b'{"seq": 3, "ts": "2026')  # a write torn by a crash
    assert len(read_jsonl(rd / JOURNAL_FILE)) == 2
    loaded = StateStore.load(rd)
    assert [e.seq for e in loaded.state.events] == [1, 2]
    run_next(loaded)
    assert read_jsonl(rd / JOURNAL_FILE) == _snapshot_events(rd)
    assert (rd / JOURNAL_FILE).read_bytes().endswith(b"\n")
    assert '"seq": 3, "ts": "2026' in (rd / ORPHANED_JOURNAL_FILE).read_text()


def test_journal_missing_last_event_gets_it_appended_on_load(store: StateStore, rd: Path) -> None:
    for _ in range(3):
        run_next(store)
    lines = (rd / JOURNAL_FILE).read_text().splitlines(keepends=True)
    (rd / JOURNAL_FILE).write_text("".join(lines[:1]))  # crash after snapshot, before journal append
    StateStore.load(rd)
    assert read_jsonl(rd / JOURNAL_FILE) == _snapshot_events(rd)
    assert not (rd / ORPHANED_JOURNAL_FILE).exists()


def test_journal_event_beyond_snapshot_is_ignored(store: StateStore, rd: Path) -> None:
    run_next(store)
    old_snapshot = (rd / STATE_FILE).read_bytes()
    run_next(store)
    (rd / STATE_FILE).write_bytes(old_snapshot)  # e.g. an older snapshot restored by hand
    loaded = StateStore.load(rd)
    assert [e.seq for e in loaded.state.events] == [1]
    assert loaded.next_stage() == ("baseline", "evaluate")
    run_next(loaded)
    journal = read_jsonl(rd / JOURNAL_FILE)
    assert [e["seq"] for e in journal] == [1, 2] and journal == _snapshot_events(rd)
    assert len(read_jsonl(rd / ORPHANED_JOURNAL_FILE)) == 1


def test_missing_journal_rebuilt_from_snapshot(store: StateStore, rd: Path) -> None:
    run_next(store)
    (rd / JOURNAL_FILE).unlink()
    StateStore.load(rd)
    assert read_jsonl(rd / JOURNAL_FILE) == _snapshot_events(rd)
