"""A report-only cache under `RESULTS_DIR/cache/report/`: derived artifact data keyed by file signature, figures
by data hash, the rendered page by the hash of its view and template.

Nothing here is a source of truth: deleting the folder only makes the next render slower.
A read-only run directory disables the cache instead of failing the render.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deftpipe.workspace.io import write_atomic

log = logging.getLogger(__name__)

CACHE_SUBDIR = ("cache", "report")
_DATA_FILE = "data.json"
# Bump when a reader's output shape or a figure's look changes: old entries then miss.
CACHE_VERSION = 1


def data_hash(obj: Any) -> str:
    payload = json.dumps([CACHE_VERSION, obj], sort_keys=True, default=str, allow_nan=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:24]


def file_signature(path: Path) -> list[Any] | None:
    """(path, size, mtime_ns) — atomic replaces change it; None when the file is missing."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [str(path), st.st_size, st.st_mtime_ns]


class ReportCache:
    """Derived data (`derived`) and PNG figures (`figure`); saved once by `flush`."""

    def __init__(self, results_dir: Path, *, enabled: bool = True) -> None:
        self.dir = results_dir.joinpath(*CACHE_SUBDIR)
        self.enabled = enabled
        self._data: dict[str, Any] = {}
        self._used: set[str] = set()
        self._dirty = False
        if enabled:
            try:
                self._data = json.loads((self.dir / _DATA_FILE).read_text(encoding="utf-8"))
                if not isinstance(self._data, dict):
                    self._data = {}
            except (OSError, ValueError):
                self._data = {}

    def derived(self, kind: str, path: Path, read: Callable[[Path], Any], *, extra: Any = None) -> Any:
        """`read(path)`, reused while the file's signature (and `extra`) is unchanged; None if missing."""
        sig = file_signature(path)
        if sig is None:
            return None
        key = data_hash([kind, sig, extra])
        self._used.add(key)
        if key in self._data:
            return self._data[key]
        value = read(path)
        self._data[key] = value
        self._dirty = True
        return value

    def figure(self, name: str, data: Any, draw: Callable[[Any], bytes]) -> bytes:
        """PNG bytes of `draw(data)`, cached by the hash of `data`."""
        path = self.dir / f"{name}_{data_hash(data)}.png"
        self._used.add(path.name)
        if self.enabled:
            try:
                return path.read_bytes()
            except OSError:
                pass
        png = draw(data)
        if self.enabled:
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
                write_atomic(path, png)
            except OSError as exc:
                log.warning("report cache disabled (%s): %s", self.dir, exc)
                self.enabled = False
        return png

    def page(self, view: Any, render: Callable[[], str], *, template: Path) -> str:
        """`render()`, reused while `view` and the template file are unchanged (a cold process then skips Jinja)."""
        path = self.dir / f"page_{data_hash(['page', file_signature(template), view])}.html"
        self._used.add(path.name)
        if self.enabled:
            try:
                return path.read_text(encoding="utf-8")
            except OSError:
                pass
        html = render()
        if self.enabled:
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
                write_atomic(path, html.encode("utf-8"))
            except OSError as exc:
                log.warning("report cache disabled (%s): %s", self.dir, exc)
                self.enabled = False
        return html

    def flush(self) -> None:
        """Save derived data; drop entries, figures and pages this render did not use (stale generations)."""
        if not self.enabled:
            return
        try:
            for old in (*self.dir.glob("*.png"), *self.dir.glob("page_*.html")):
                if old.name not in self._used:
                    old.unlink(missing_ok=True)
        except OSError:
            pass
        if not self._dirty:
            return
        keep = {k: v for k, v in self._data.items() if k in self._used}
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            write_atomic(self.dir / _DATA_FILE, json.dumps(keep, allow_nan=True).encode("utf-8"))
        except OSError as exc:
            log.warning("report cache not saved (%s): %s", self.dir, exc)
        self._dirty = False


def env_disabled() -> bool:
    return os.environ.get("DEFTPIPE_REPORT_CACHE", "1") == "0"
