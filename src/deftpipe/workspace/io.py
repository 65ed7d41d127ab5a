"""Atomic file writes, fsynced journals, content hashing and the per-run lock.

Readers always see the old file or the new one, never half of one; the lock
keeps a second process off a run and takes over locks whose owner died.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from deftpipe.errors import StateConflict
from deftpipe.faults import fault_point

_TMP_MARK = ".deftpipe-tmp"


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}{_TMP_MARK}")


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: Path | str, payload: bytes, *, fault_site: str | None = None) -> None:
    """Write `payload` to `path` through a same-folder temp file, fsync and rename.

    `fault_site` names the `deftpipe.faults` point hit between the fsync and the rename, the instant
    that leaves an orphan temp file and the old content behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        if fault_site is not None:
            fault_point(fault_site)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def write_text_atomic(path: Path | str, text: str, *, fault_site: str | None = None) -> None:
    write_atomic(path, text.encode("utf-8"), fault_site=fault_site)


def to_json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=False, default=_json_default, allow_nan=False) + "\n").encode()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json_atomic(path: Path | str, obj: Any, *, fault_site: str | None = None) -> None:
    write_atomic(path, to_json_bytes(obj), fault_site=fault_site)


def write_csv_atomic(path: Path | str, frame: Any, **kwargs: Any) -> None:
    """Write a pandas DataFrame as CSV atomically (index off by default)."""
    kwargs.setdefault("index", False)
    kwargs.setdefault("float_format", "%.17g")
    write_atomic(path, frame.to_csv(**kwargs).encode("utf-8"))


def write_parquet_atomic(path: Path | str, frame: Any) -> None:
    import io

    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    write_atomic(path, buf.getvalue())


def append_jsonl(path: Path | str, record: dict[str, Any]) -> None:
    """Append one JSON line and fsync; a torn last line is tolerated by `read_jsonl`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, default=_json_default, allow_nan=False) + "\n"
    with open(path, "ab") as fh:
        fh.write(line.encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


def read_jsonl(path: Path | str) -> list[dict[str, Any]]:
    """Read a JSONL journal; a torn (unparseable) last line is skipped, a torn middle line is an error."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[dict[str, Any]] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise
    return out


def sha256_file(path: Path | str, *, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_files(paths: Iterable[Path | str]) -> str:
    """One digest over several files' bytes, in the order given."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    return h.hexdigest()


def orphan_temp_files(root: Path | str) -> list[Path]:
    """Temp files left by an interrupted atomic write (for chaos checks and cleanup)."""
    return sorted(Path(root).rglob(f"*{_TMP_MARK}"))


def pid_alive(pid: int) -> bool:
    """True when a process with `pid` exists on this host (a permission error still means it exists)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


class RunLock:
    """One lock file per run; a live owner makes a second process fail, a dead one is taken over.

    Example:
        with RunLock(results_dir / ".lock") as lock:
            if lock.took_over_from: print("took over stale lock of", lock.took_over_from)
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.took_over_from: int | None = None
        self._held = False

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._read_owner()
                pid = int(owner.get("pid", -1))
                same_host = owner.get("host", socket.gethostname()) == socket.gethostname()
                if pid == os.getpid():
                    self._held = True
                    return self
                if same_host and pid_alive(pid):
                    raise StateConflict(
                        f"{self.path.parent}: another deftpipe process (PID {pid}) is running on this run.",
                        hint="Wait for it to finish, or stop it first; two processes must never write one run.",
                    ) from None
                if not same_host:
                    raise StateConflict(
                        f"{self.path.parent}: locked by PID {pid} on host {owner.get('host')}.",
                        hint=f"If that process is gone, delete {self.path} and retry.",
                    ) from None
                self.took_over_from = pid
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
                fh.flush()
                os.fsync(fh.fileno())
            self._held = True
            return self
        raise StateConflict(f"{self.path}: could not take the run lock after 3 tries; retry.")

    def _read_owner(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, json.JSONDecodeError):
            return {}

    def release(self) -> None:
        if self._held:
            with contextlib.suppress(FileNotFoundError):
                if int(self._read_owner().get("pid", -1)) == os.getpid():
                    self.path.unlink()
            self._held = False

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def cleared_dir(path: Path) -> Iterator[Path]:
    """Yield `path` emptied first: a stage interrupted mid-way restarts from a clean folder."""
    import shutil

    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    yield path
