"""`StateStore`: the only writer of `deft_state.json` and `loop_log.jsonl` (SPEC §4).

Every change re-reads the snapshot from disk, applies itself to a copy, validates
the result, replaces the snapshot atomically (temp file in the same folder,
fsync, `os.replace`) and then appends the same event to the fsynced journal.

Crash ordering and recovery::

    check artifacts ──> write snapshot (atomic) ──> append journal line
         │ fails: nothing changed    │ crash: old snapshot      │ crash: journal one event short
                                                                 └─> next load/commit appends it

The snapshot is the source of truth. On load (and before every change) the
journal is reconciled with it: missing trailing events are appended; a torn
last line, a diverging line, or an event beyond the snapshot (possible only
when an older snapshot was restored by hand) makes the journal be rewritten
atomically from the snapshot, the dropped lines kept in `loop_log.orphaned.jsonl`.
Temp files orphaned by a killed writer are removed by `StateStore.open` once it
holds the run lock (nobody else can be writing then) and listed in
`StateStore.removed_temp_files`.
"""
from __future__ import annotations

import contextlib
import copy
import difflib
import json
import logging
import math
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from deftpipe.errors import ConfigError, ContractError, StageFailed, StateConflict
from deftpipe.state._artifacts import check_artifacts
from deftpipe.state.records import (
    ARTIFACT_FIELDS,
    FORMAT,
    JOURNAL_FILE,
    SCHEMA_VERSION,
    STATE_FILE,
    VALUE_FIELDS,
    ConfigRecord,
    DeftState,
    EventRecord,
    format_validation_error,
    parse_state,
    to_plain,
    utc_now_iso,
)
from deftpipe.state.stages import (
    BASELINE,
    FINAL_AUTOML,
    LOOP_STOP,
    TRAIN,
    is_stage_committed,
    iteration_label,
    iteration_number,
    latest_iteration,
    next_stage,
    normalize_stage,
)
from deftpipe.workspace.io import (
    RunLock,
    append_jsonl,
    orphan_temp_files,
    sha256_file,
    write_atomic,
    write_json_atomic,
)

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
ORPHANED_JOURNAL_FILE = "loop_log.orphaned.jsonl"

# Run directories whose lock this process holds through `StateStore.open` (nesting count);
# a change made through any store on such a directory needs no lock of its own.
_HELD: dict[str, int] = {}
_THREAD_LOCKS: dict[str, threading.RLock] = {}
_REGISTRY_LOCK = threading.Lock()


def resume_command(results_dir: Path | str) -> str:
    """The command that continues the run in `results_dir`."""
    return f"deftpipe deft --resume {results_dir}"


def duration_to_int(seconds: float, *, preseeded: bool = False) -> int:
    """`max(1, ceil(seconds))`; 0 only for a pre-seeded event whose duration is exactly 0."""
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not math.isfinite(seconds):
        raise ContractError(f"duration_sec must be a finite number of seconds, got {seconds!r}.")
    if seconds < 0:
        raise ContractError(f"duration_sec must be >= 0, got {seconds}.")
    if preseeded and seconds == 0:
        return 0
    return max(1, math.ceil(seconds))


def digest_files(paths: Iterable[Path | str]) -> dict[str, str]:
    """sha256 of each input file, keyed by absolute path (for `StateStore.record_input_digests`)."""
    return {str(Path(p).resolve()): sha256_file(p) for p in paths}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _check_names(given: Mapping[str, Any], allowed: tuple[str, ...], *, what: str, where: str) -> None:
    for key in given:
        if key not in allowed:
            near = difflib.get_close_matches(key, allowed, n=1)
            tip = f" Did you mean '{near[0]}'?" if near else ""
            raise ContractError(f"{where}: unknown {what} '{key}'; known: {list(allowed)}.{tip}")


class StateStore:
    """Reads and writes one run's state; every method that changes it is one atomic commit.

    Example:
        store = StateStore.create(rd, kpi_target="FAR < 5% at Recall=100%", metric_contract=contract,
                                  max_iterations=2, config={"images_dir": str(ws.images_dir)})
        with StateStore.open(rd) as store:
            label, stage = store.next_stage()
            ...  # run the stage, write its outputs under rd
            store.commit(label, stage, artifacts={"inference_csv": csv}, summary="…", duration_sec=12.3)
    """

    def __init__(self, results_dir: Path, doc: dict[str, Any], view: DeftState) -> None:
        self.results_dir = results_dir
        self._doc = doc
        self._view = view
        self.took_over_lock_from: int | None = None
        self.removed_temp_files: list[Path] = []

    # --- paths --------------------------------------------------------------------------------------

    @property
    def state_path(self) -> Path:
        return self.results_dir / STATE_FILE

    @property
    def journal_path(self) -> Path:
        return self.results_dir / JOURNAL_FILE

    @property
    def lock_path(self) -> Path:
        return self.results_dir / LOCK_FILE

    # --- construction -------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        results_dir: Path | str,
        *,
        kpi_target: str,
        metric_contract: Mapping[str, Any] | Any,
        max_iterations: int,
        config: Mapping[str, Any] | ConfigRecord,
        started_at: str | datetime | None = None,
    ) -> StateStore:
        """Write the initial document; refuses a folder that already holds a state or a journal.

        Raises:
            StateConflict: the run directory already has `deft_state.json` (resume it instead).
            ContractError: a given value breaks the state contract (the field is named).
        """
        rd = Path(results_dir).expanduser().resolve()
        rd.mkdir(parents=True, exist_ok=True)
        if isinstance(started_at, datetime):
            if started_at.tzinfo is None:
                raise ContractError("started_at must carry a UTC offset (timezone-aware datetime).")
            started = started_at.isoformat(timespec="seconds")
        else:
            started = started_at or utc_now_iso()
        doc: dict[str, Any] = {
            "version": SCHEMA_VERSION,
            "format": FORMAT,
            "started_at": started,
            "status": "in_progress",
            "kpi_target": kpi_target,
            "metric_contract": to_plain(metric_contract),
            "results_dir": str(rd),
            "max_iterations": max_iterations,
            "current_iteration": 0,
            "config": _config_doc(config, source=f"{rd / STATE_FILE} (new)"),
            "iterations": {},
            "events": [],
        }
        canon, view = parse_state(doc, source=f"{rd / STATE_FILE} (new)")
        store = cls(rd, canon, view)
        with store._writer_lock():
            for existing in (store.state_path, store.journal_path):
                if existing.exists() and existing.stat().st_size > 0:
                    raise StateConflict(
                        f"{existing} already exists: {rd} is an existing run; refusing to overwrite its state.",
                        hint=f"Resume it with `{resume_command(rd)}`, or start a new run (new run directory).",
                    )
            write_json_atomic(store.state_path, canon)
        return store

    @classmethod
    def load(cls, results_dir: Path | str) -> StateStore:
        """Read and validate the state; reconciles the journal when no other process holds the run.

        Raises:
            ContractError: no state file, or a malformed one (the field is named).
        """
        rd = Path(results_dir).expanduser().resolve()
        doc, view = _read_snapshot(rd)
        store = cls(rd, doc, view)
        try:
            with store._writer_lock():
                store._reconcile_journal(doc)
        except StateConflict:
            pass  # another live process owns the run; reading is still fine
        return store

    @classmethod
    @contextlib.contextmanager
    def open(cls, results_dir: Path | str) -> Iterator[StateStore]:
        """Hold the run lock for the block: load, clean orphaned temp files, reconcile the journal.

        A stale lock (dead PID) is taken over; its PID is in `took_over_lock_from` and logged.

        Raises:
            StateConflict: another live process holds the run.
        """
        rd = Path(results_dir).expanduser().resolve()
        if not (rd / STATE_FILE).exists():
            raise ContractError(
                f"{rd / STATE_FILE} does not exist: {rd} is not a deftpipe run directory.",
                hint="Pass the run folder (results/run_<TS>) or start a new run without --resume.",
            )
        key = str(rd)
        lock: RunLock | None = None
        if not _HELD.get(key):
            lock = RunLock(rd / LOCK_FILE).acquire()
        with _REGISTRY_LOCK:
            _HELD[key] = _HELD.get(key, 0) + 1
        try:
            removed = []
            if lock is not None:
                removed = orphan_temp_files(rd)
                for tmp in removed:
                    with contextlib.suppress(FileNotFoundError):
                        tmp.unlink()
                if removed:
                    log.warning("%s: removed %d temp file(s) left by an interrupted write", rd, len(removed))
            store = cls.load(rd)
            store.removed_temp_files = removed
            if lock is not None and lock.took_over_from is not None:
                store.took_over_lock_from = lock.took_over_from
                log.warning("%s: took over the stale run lock of dead process %d", rd, lock.took_over_from)
            yield store
        finally:
            with _REGISTRY_LOCK:
                _HELD[key] -= 1
                if not _HELD[key]:
                    del _HELD[key]
            if lock is not None:
                lock.release()

    # --- reading ------------------------------------------------------------------------------------

    @property
    def state(self) -> DeftState:
        """The state as on disk now (frozen; re-read on every access: never trust memory across stages)."""
        return self.reload()

    @property
    def document(self) -> dict[str, Any]:
        """A deep copy of the raw document as on disk now."""
        self.reload()
        return copy.deepcopy(self._doc)

    def reload(self) -> DeftState:
        self._doc, self._view = _read_snapshot(self.results_dir)
        return self._view

    def next_stage(self) -> tuple[str, str] | None:
        return next_stage(self.state)

    def is_committed(self, iter_label: str, stage: str) -> bool:
        iteration_number(iter_label)
        return is_stage_committed(self.state, iter_label, stage)

    def last_events(self, n: int = 5) -> list[EventRecord]:
        events = self.state.events
        return list(events[-n:]) if n > 0 else []

    # --- commits ------------------------------------------------------------------------------------

    def commit(
        self,
        iter_label: str,
        stage: str,
        *,
        status: Literal["ok", "error"] = "ok",
        artifacts: Mapping[str, str | Path] | None = None,
        fields: Mapping[str, Any] | None = None,
        summary: str,
        duration_sec: float,
        stage_completed: bool = True,
        ended_at: datetime | None = None,
        preseeded: bool = False,
    ) -> EventRecord:
        """Record a finished stage: artifacts checked first, then one atomic snapshot, then the journal.

        Args:
            artifacts: iteration path fields (`ARTIFACT_FIELDS`) -> files/folders the stage wrote; each must
                exist, be non-empty and resolve inside RESULTS_DIR. Stored as absolute paths.
            fields: iteration value fields (`VALUE_FIELDS`): threshold, metric_result, counts, flags.
            status: `error` commits a hard stop: the iteration and the run become `failed`.
            stage_completed: False records the event and fields without advancing `stage_completed`.
            preseeded: the baseline `train` event that reuses Phase 1's checkpoint (allows duration 0).

        Raises:
            ContractError: an artifact or field is missing/invalid — nothing was changed.
            StateConflict: the stage is already committed, out of order, or the run is not in progress.
        """
        where = f"commit {iter_label}/{stage}"
        n = iteration_number(iter_label)
        stage = normalize_stage(stage, where=where)
        if status not in ("ok", "error"):
            raise ContractError(f"{where}: status must be 'ok' or 'error', got {status!r}.")
        if preseeded and (iter_label != BASELINE or stage != TRAIN):
            raise ContractError(f"{where}: only the baseline train event can be pre-seeded.")
        seconds = duration_to_int(duration_sec, preseeded=preseeded)
        line = _one_line(summary)
        if not line:
            raise ContractError(f"{where}: summary must be a non-empty line saying what the stage did.")
        artifacts = dict(artifacts or {})
        fields = to_plain(dict(fields or {}))
        for key in fields:
            if key in ARTIFACT_FIELDS:
                raise ContractError(f"{where}: '{key}' is a path; pass it in artifacts= so it is checked.")
        _check_names(fields, VALUE_FIELDS, what="iteration field", where=where)
        _check_names(artifacts, ARTIFACT_FIELDS, what="artifact", where=where)
        paths = check_artifacts(self.results_dir, artifacts, where=where)
        ts = _ts(ended_at)
        event: dict[str, Any] = {}

        def apply(doc: dict[str, Any]) -> dict[str, Any]:
            _require_open(doc, self.results_dir, where=where, allow_complete=iter_label == FINAL_AUTOML)
            if stage_completed and is_stage_committed(doc, iter_label, stage):
                raise StateConflict(
                    f"{where}: already committed (seq of that event is on disk); committed stages are never redone.",
                    hint=f"Continue with the next stage: {next_stage(doc)}.",
                )
            if n is not None:
                expected = next_stage(doc)
                if expected != (iter_label, stage):
                    raise StateConflict(
                        f"{where}: out of order; the next stage of this run is "
                        f"{'/'.join(expected) if expected else 'none (the loop has stopped)'}.",
                        hint="The loop driver must follow stages.next_stage(); see SPEC §4 stage order.",
                    )
            rec = doc["iterations"].setdefault(iter_label, {"status": "pending"})
            rec.update(fields)
            rec.update(paths)
            if status == "error":
                rec["status"] = "failed"
                rec.setdefault("error", line)
                doc["status"] = "failed"
                doc["failure"] = {"iter": iter_label, "stage": stage, "message": line}
            else:
                if stage_completed:
                    rec["stage_completed"] = stage
                if n is None:
                    rec["status"] = "complete" if stage_completed else "in_progress"
                else:
                    doc["current_iteration"] = max(int(doc.get("current_iteration") or 0), n)
                    after = next_stage(doc)
                    rec["status"] = "complete" if after is None or after[0] != iter_label else "in_progress"
            event.update(_event(doc, ts, iter_label, stage, status, line, seconds))
            doc["events"].append(dict(event))
            return event

        self._mutate(apply, fault_site="state_commit")
        return EventRecord.model_validate(event)

    def complete(
        self,
        final_artifacts: Mapping[str, str | Path],
        *,
        summary: str = "loop stopped; deliverable recorded",
        duration_sec: float = 1.0,
        ended_at: datetime | None = None,
    ) -> None:
        """Mark the run complete: commits `loop_stop` (unless already committed) and `final_artifacts`.

        Raises:
            ContractError: a final artifact is missing, empty or outside RESULTS_DIR (nothing changed).
            StateConflict: the loop has not reached `loop_stop` yet, or the run is halted/failed.
        """
        where = "complete"
        paths = check_artifacts(self.results_dir, dict(final_artifacts), where=where)
        seconds = duration_to_int(duration_sec)
        line = _one_line(summary) or "loop stopped"
        ts = _ts(ended_at)

        def apply(doc: dict[str, Any]) -> dict[str, Any] | None:
            _require_open(doc, self.results_dir, where=where)
            event: dict[str, Any] | None = None
            if not _loop_stopped(doc):
                expected = next_stage(doc)
                if expected is None or expected[1] != LOOP_STOP:
                    raise StateConflict(
                        f"{where}: the loop has not reached loop_stop (next stage: "
                        f"{'/'.join(expected) if expected else 'none'}); finish the remaining stages first.",
                        hint=f"Resume with `{resume_command(self.results_dir)}`.",
                    )
                label = expected[0]
                rec = doc["iterations"].setdefault(label, {"status": "pending"})
                rec["stage_completed"] = LOOP_STOP
                rec["status"] = "complete"
                event = _event(doc, ts, label, LOOP_STOP, "ok", line, seconds)
                doc["events"].append(dict(event))
            doc["status"] = "complete"
            doc["completed_at"] = ts
            doc["final_artifacts"] = paths
            return event

        self._mutate(apply)

    def set_status(self, status: Literal["in_progress", "complete", "failed"]) -> None:
        """Low-level status change; a failed or complete run is never relabelled.

        Raises:
            StateConflict: the run is already `failed` or `complete` and `status` differs.
        """

        def apply(doc: dict[str, Any]) -> None:
            current = doc["status"]
            if current == status:
                return
            if current != "in_progress":
                raise StateConflict(
                    f"{self.state_path}: run status is '{current}'; it is never changed to '{status}'.",
                    hint="Start a new run (deftpipe run / deftpipe deft without --resume).",
                )
            doc["status"] = status
            if status == "complete":
                doc["completed_at"] = utc_now_iso()

        self._mutate(apply)

    def mark_failed(
        self,
        stage: str,
        message: str,
        *,
        iter_label: str | None = None,
        duration_sec: float = 1.0,
        ended_at: datetime | None = None,
    ) -> EventRecord:
        """Hard stop without artifacts: an `error` event for `stage`, iteration and run `failed`.

        Raises:
            StateConflict: the run is already failed or complete.
        """
        stage = normalize_stage(stage, where="mark_failed")
        if iter_label is not None:
            iteration_number(iter_label)
        seconds = duration_to_int(duration_sec)
        line = _one_line(message) or f"{stage} failed"
        ts = _ts(ended_at)
        event: dict[str, Any] = {}

        def apply(doc: dict[str, Any]) -> dict[str, Any]:
            if doc["status"] != "in_progress":
                raise StateConflict(
                    f"{self.state_path}: run is already '{doc['status']}'; it cannot be marked failed again.",
                    hint="Start a new run (deftpipe run / deftpipe deft without --resume).",
                )
            label = iter_label
            if label is None:
                expected = next_stage(doc)
                label = expected[0] if expected else iteration_label(latest_iteration(doc))
            rec = doc["iterations"].setdefault(label, {"status": "pending"})
            rec["status"] = "failed"
            rec["error"] = line
            doc["status"] = "failed"
            doc["failure"] = {"iter": label, "stage": stage, "message": line}
            event.update(_event(doc, ts, label, stage, "error", line, seconds))
            doc["events"].append(dict(event))
            return event

        self._mutate(apply)
        return EventRecord.model_validate(event)

    def set_halt(
        self,
        *,
        reason: str,
        iter_label: str,
        value: float | None,
        best: float | None,
        margin: float | None,
        resume_command: str | None = None,
    ) -> None:
        """Record the regression gate's halt (status stays `in_progress`; no `loop_stop`)."""
        iteration_number(iter_label)
        cmd = resume_command or f"deftpipe deft --resume {self.results_dir} --accept-regression"

        def apply(doc: dict[str, Any]) -> None:
            _require_open(doc, self.results_dir, where="set_halt")
            doc["halt"] = {
                "reason": reason,
                "iter": iter_label,
                "value": value,
                "best": best,
                "margin": margin,
                "resume_command": cmd,
            }

        self._mutate(apply)

    def clear_halt(self, *, note: str = "accepted on resume (--accept-regression)") -> bool:
        """Lift a halt (kept in `halt_history` with the time it was cleared); False when none was set."""
        cleared: list[bool] = []

        def apply(doc: dict[str, Any]) -> None:
            halt = doc.get("halt")
            if not halt:
                return
            history = doc.setdefault("halt_history", [])
            history.append({**halt, "cleared_at": utc_now_iso(), "note": note})
            doc["halt"] = None
            cleared.append(True)

        self._mutate(apply)
        return bool(cleared)

    def update_config(self, **changes: Any) -> list[dict[str, Any]]:
        """Apply parameter changes made on resume; each is recorded in `config_changes` (SPEC §9).

        A change applies to stages not yet committed only: committed stages are never redone.
        Nested sections (`sdg`, `mining_filter`, `history_aware`) merge key by key.

        Returns:
            The recorded changes `{ts, key, old, new, applies_from}` (unchanged values are not recorded).

        Raises:
            ConfigError: an unknown config key (the closest is suggested) or an invalid value.
        """
        recorded: list[dict[str, Any]] = []

        def apply(doc: dict[str, Any]) -> None:
            _require_open(doc, self.results_dir, where="update_config")
            cfg = doc.setdefault("config", {})
            expected = next_stage(doc)
            applies = "/".join(expected) if expected else None
            ts = utc_now_iso()
            for key, old, new in _merge_changes(cfg, to_plain(changes), prefix=""):
                recorded.append({"ts": ts, "key": key, "old": old, "new": new, "applies_from": applies})
            doc.setdefault("config_changes", []).extend(copy.deepcopy(recorded))

        try:
            self._mutate(apply, source_hint="config")
        except ContractError as exc:
            raise ConfigError(exc.message, hint=exc.hint) from exc
        return recorded

    def record_input_digests(self, digests: Mapping[str | Path, str]) -> None:
        """Store the sha256 of every approved input file (absolute path -> hex digest)."""
        clean = {str(Path(p).resolve()): str(d) for p, d in digests.items()}

        def apply(doc: dict[str, Any]) -> None:
            doc.setdefault("input_digests", {}).update(clean)

        self._mutate(apply)

    def check_input_digests(self) -> None:
        """Hard stop when an input file changed (or vanished) since approval; changes nothing on disk.

        Raises:
            StageFailed: names the first changed file, its recorded and current digest.
        """
        recorded: Mapping[str, str] = self.document.get("input_digests") or {}
        for path, digest in recorded.items():
            if not os.path.exists(path):
                now = "missing"
            else:
                now = sha256_file(path)
            if now != digest:
                raise StageFailed(
                    "resume",
                    f"input file {path} changed since approval (sha256 {digest[:12]}… recorded, "
                    f"{now[:12] + '…' if now != 'missing' else 'file missing'} now); a run's inputs are frozen.",
                    hint="Restore the original file and resume "
                    f"(`{resume_command(self.results_dir)}`), or start a new run on the changed data.",
                )

    # --- internals ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _writer_lock(self) -> Iterator[None]:
        key = str(self.results_dir)
        with _REGISTRY_LOCK:
            tlock = _THREAD_LOCKS.setdefault(key, threading.RLock())
        with tlock:
            if _HELD.get(key):
                yield
                return
            lock = RunLock(self.lock_path).acquire()
            try:
                if lock.took_over_from is not None:
                    self.took_over_lock_from = lock.took_over_from
                    log.warning("%s: took over the stale run lock of dead process %d",
                                self.results_dir, lock.took_over_from)
                yield
            finally:
                lock.release()

    def _mutate(self, apply: Callable[[dict[str, Any]], Any], *, source_hint: str = "",
                fault_site: str | None = None) -> None:
        """Re-read, apply to a copy, validate, write the snapshot, then append the event (if any)."""
        with self._writer_lock():
            doc, _ = _read_snapshot(self.results_dir)
            self._reconcile_journal(doc)
            new = copy.deepcopy(doc)
            event = apply(new)
            if new == doc:
                self._doc, self._view = doc, DeftState.model_validate(doc)
                return
            canon, view = parse_state(new, source=f"{self.state_path} (update{' ' + source_hint if source_hint else ''})")
            write_json_atomic(self.state_path, canon, fault_site=fault_site)
            self._doc, self._view = canon, view
            if event:
                try:
                    append_jsonl(self.journal_path, event)
                except OSError as exc:
                    # The snapshot already holds the event; the next load or commit re-appends it.
                    log.warning("%s: journal append failed (%s); it will be reconciled", self.journal_path, exc)
                _publish_committed(canon, event)

    def _reconcile_journal(self, doc: Mapping[str, Any]) -> None:
        events: list[dict[str, Any]] = list(doc.get("events") or [])
        path = self.journal_path
        raw = path.read_bytes() if path.exists() else b""
        lines = raw.decode("utf-8", errors="replace").split("\n")
        complete_lines, tail = lines[:-1], lines[-1]  # text after the last newline is a torn write
        parsed: list[dict[str, Any]] = []
        bad = bool(tail.strip())
        for text in complete_lines:
            if not text.strip():
                continue
            try:
                parsed.append(json.loads(text))
            except json.JSONDecodeError:
                bad = True
                break
        if not bad and parsed == events:
            return
        if not bad and parsed == events[: len(parsed)]:
            for ev in events[len(parsed):]:
                append_jsonl(path, ev)
            return
        keep = 0
        for a, b in zip(parsed, events):
            if a != b:
                break
            keep += 1
        dropped = [json.dumps(p) for p in parsed[keep:]]
        if tail.strip():
            dropped.append(tail)
        if dropped:
            with open(self.results_dir / ORPHANED_JOURNAL_FILE, "a", encoding="utf-8") as fh:
                fh.write("\n".join(dropped) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            log.warning("%s: %d journal line(s) not in the snapshot moved to %s",
                        path, len(dropped), ORPHANED_JOURNAL_FILE)
        payload = b"".join(
            (json.dumps(ev, allow_nan=False) + "\n").encode("utf-8") for ev in events
        )
        write_atomic(path, payload)


def read_state(results_dir: Path | str) -> DeftState:
    """The validated state of a run, read-only (no lock, no journal reconciliation).

    Raises:
        ContractError: no state file or a malformed one (the field is named).
    """
    return _read_snapshot(Path(results_dir).expanduser().resolve())[1]


# Parsed snapshots keyed by (path, inode, mtime, size): every atomic replace makes a new inode,
# so a hit is the same bytes; callers never mutate the cached document (changes work on a deep copy).
_PARSED: dict[str, tuple[tuple[int, int, int], dict[str, Any], DeftState]] = {}


def _read_snapshot(rd: Path) -> tuple[dict[str, Any], DeftState]:
    path = rd / STATE_FILE
    try:
        st = path.stat()
    except FileNotFoundError:
        st = None
    key = (st.st_ino, st.st_mtime_ns, st.st_size) if st is not None else None
    cached = _PARSED.get(str(path))
    if key is not None and cached is not None and cached[0] == key:
        return cached[1], cached[2]
    canon, view = _parse_snapshot(rd, path)
    if key is not None:
        with _REGISTRY_LOCK:
            _PARSED[str(path)] = (key, canon, view)
    return canon, view


def _parse_snapshot(rd: Path, path: Path) -> tuple[dict[str, Any], DeftState]:
    if not path.exists():
        raise ContractError(
            f"{path} does not exist: {rd} is not a deftpipe run directory (or its state was deleted).",
            hint="Pass the run folder (results/run_<TS>) or start a new run without --resume.",
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ContractError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "deftpipe replaces this file atomically, so it was edited or damaged outside deftpipe.",
            hint=f"Restore it from a backup; the event history is in {rd / JOURNAL_FILE}.",
        ) from exc
    canon, view = parse_state(raw, source=str(path))
    recorded = os.path.realpath(view.results_dir)
    if recorded != os.path.realpath(rd):
        raise ContractError(
            f"{path}: field 'results_dir' is '{view.results_dir}' but the file lives in '{rd}'; the run was "
            "moved and the absolute artifact paths inside it point to the old place.",
            hint=f"Move the run back to {view.results_dir} to resume it.",
        )
    return canon, view


def _config_doc(config: Mapping[str, Any] | ConfigRecord, *, source: str) -> dict[str, Any]:
    if isinstance(config, ConfigRecord):
        return config.model_dump(mode="json")
    try:
        return ConfigRecord.model_validate(to_plain(config)).model_dump(mode="json")
    except ValidationError as exc:
        raise ContractError(format_validation_error(exc, source=f"{source} config")) from exc


def _require_open(doc: Mapping[str, Any], rd: Path, *, where: str, allow_complete: bool = False) -> None:
    status = doc["status"]
    if status == "failed":
        raise StateConflict(
            f"{where}: the run in {rd} has failed; failed runs are never resumed.",
            hint="Fix the cause reported in DEFT_Loop_Report.html and start a new run (without --resume).",
        )
    if status == "complete" and not allow_complete:
        raise StateConflict(f"{where}: the run in {rd} is already complete.",
                            hint="Start a new run to train again.")
    if doc.get("halt"):
        halt = doc["halt"]
        raise StateConflict(
            f"{where}: the run in {rd} is halted by the regression gate ({halt.get('reason')} at "
            f"{halt.get('iter')}).",
            hint=f"Resume with `{halt.get('resume_command')}` to accept the regression and continue.",
        )


def _loop_stopped(doc: Mapping[str, Any]) -> bool:
    return any((rec or {}).get("stage_completed") == LOOP_STOP for rec in (doc.get("iterations") or {}).values())


def _publish_committed(doc: Mapping[str, Any], event: Mapping[str, Any]) -> None:
    """A committed event as a `stage_end` run event (`--json`), with the iteration's metric once evaluated."""
    from deftpipe.ui import events

    if not events.active():
        return
    fields = {k: event.get(k) for k in ("seq", "iter", "stage", "status", "summary", "duration_sec")}
    fields["committed_ts"] = event.get("ts")
    rec = (doc.get("iterations") or {}).get(str(event.get("iter"))) or {}
    mr = rec.get("metric_result") if isinstance(rec, Mapping) else None
    if event.get("stage") == "evaluate" and isinstance(mr, Mapping):
        fields["metric"] = {k: mr.get(k) for k in ("name", "value", "unit", "passed")}
    events.publish("stage_end", **fields)


def _ts(ended_at: datetime | None) -> str:
    if ended_at is None:
        return utc_now_iso()
    if ended_at.tzinfo is None:
        raise ContractError("ended_at must be timezone-aware (events carry a UTC offset).")
    return ended_at.astimezone(timezone.utc).isoformat(timespec="seconds")


def _event(doc: Mapping[str, Any], ts: str, label: str, stage: str, status: str, summary: str,
           seconds: int) -> dict[str, Any]:
    events = doc.get("events") or []
    seq = (int(events[-1]["seq"]) if events else 0) + 1
    return {"seq": seq, "ts": ts, "iter": label, "stage": stage, "status": status,
            "summary": summary, "duration_sec": seconds}


_NESTED = {"sdg", "mining_filter", "history_aware"}


def _merge_changes(cfg: dict[str, Any], changes: Mapping[str, Any], *, prefix: str) -> list[tuple[str, Any, Any]]:
    out: list[tuple[str, Any, Any]] = []
    for key, new in changes.items():
        dotted = f"{prefix}{key}"
        if key not in cfg and not _known_config_key(prefix, key):
            known = sorted(cfg)
            near = difflib.get_close_matches(key, known, n=1)
            tip = f" Did you mean '{prefix}{near[0]}'?" if near else ""
            raise ConfigError(f"config: unknown key '{dotted}'; known: {known}.{tip}")
        old = cfg.get(key)
        if key in _NESTED and isinstance(new, Mapping):
            section = cfg.setdefault(key, {})
            if not isinstance(section, dict):
                raise ConfigError(f"config: '{dotted}' is not a section.")
            out.extend(_merge_changes(section, new, prefix=f"{dotted}."))
            continue
        if old != new:
            cfg[key] = copy.deepcopy(new)
            out.append((dotted, copy.deepcopy(old), copy.deepcopy(new)))
    return out


def _known_config_key(prefix: str, key: str) -> bool:
    from deftpipe.state.records import HistoryAwareRecord, MiningFilterRecord, SdgConfigRecord

    model = {
        "": ConfigRecord,
        "sdg.": SdgConfigRecord,
        "mining_filter.": MiningFilterRecord,
        "mining_filter.history_aware.": HistoryAwareRecord,
    }.get(prefix)
    return model is not None and key in model.model_fields


__all__ = [
    "LOCK_FILE",
    "StateStore",
    "digest_files",
    "duration_to_int",
    "read_state",
    "resume_command",
]
