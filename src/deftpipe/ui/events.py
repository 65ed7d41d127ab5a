"""In-process run events — stage start/end, trial start/end, progress milestones, the result — for `--json`.

Producers in any layer or thread call `publish(event, **fields)`; it costs one
list check when nobody listens, so engines need no callback threaded through
their signatures. Each event reaches listeners as one flat JSON-ready dict
with `ts` (ISO-8601, UTC) and `event` first, then the `scope` fields (e.g.
`phase`), then the producer's fields.

Example:
    with listen(JsonLines(sys.stdout)), scope(phase="deft"):
        publish("stage_start", iter="iter1", stage="sdg")
    # {"ts": "2026-11-30T17:01:02.123+00:00", "event": "stage_start", "phase": "deft", "iter": "iter1", "stage": "sdg"}
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from typing import IO, Any

Event = dict[str, Any]
Listener = Callable[[Event], None]

_listeners: list[Listener] = []
_scope: dict[str, Any] = {}
_lock = threading.Lock()
log = logging.getLogger(__name__)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def active() -> bool:
    """True while some listener is attached (lets producers skip building costly fields)."""
    return bool(_listeners)


def publish(event: str, **fields: Any) -> None:
    """Send one event to every listener; a failing listener is logged, never raised into the producer."""
    if not _listeners:
        return
    with _lock:
        payload: Event = {"ts": now_iso(), "event": event, **_scope, **fields}
        targets = list(_listeners)
    for fn in targets:
        try:
            fn(payload)
        except Exception:  # noqa: BLE001 - an event sink must not break a run
            log.debug("event listener failed on %s", event, exc_info=True)


@contextlib.contextmanager
def listen(fn: Listener) -> Iterator[None]:
    """Attach `fn` for the block."""
    with _lock:
        _listeners.append(fn)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(fn)


@contextlib.contextmanager
def scope(**fields: Any) -> Iterator[None]:
    """Add `fields` to every event published inside the block (nested scopes override, then restore)."""
    with _lock:
        saved = dict(_scope)
        _scope.update(fields)
    try:
        yield
    finally:
        with _lock:
            _scope.clear()
            _scope.update(saved)


def _plain(value: Any) -> Any:
    """JSON-safe: non-finite floats -> None (strict JSON has no NaN), paths and others -> str."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


class JsonLines:
    """A listener writing one strict-JSON object per line to `stream`, flushed each time (thread-safe)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        line = json.dumps(_plain(event), allow_nan=False, ensure_ascii=False)
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()


__all__ = ["Event", "JsonLines", "Listener", "active", "listen", "now_iso", "publish", "scope"]
