"""Run directories (SPEC §9): creating `run_<UTC YYYYMMDD_HHMMSS>[_k]`, clearing an interrupted
stage's output folder, and deciding whether a run may be resumed.

Invariant: a run directory always resolves inside its workspace and is created by one
atomic `mkdir`, so two processes started in the same second get different folders.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from deftpipe.errors import ContractError, StateConflict
from deftpipe.state._artifacts import inside
from deftpipe.state.records import STATE_FILE, DeftState, HaltRecord
from deftpipe.state.stages import next_stage
from deftpipe.state.store import LOCK_FILE, read_state, resume_command
from deftpipe.workspace.io import pid_alive

RUN_PREFIX = "run_"
_MAX_COLLISIONS = 1000


def run_dir_name(now: datetime | None = None) -> str:
    """`run_<UTC YYYYMMDD_HHMMSS>` for `now` (a naive datetime is taken as UTC)."""
    now = now or datetime.now(timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    return RUN_PREFIX + now.astimezone(timezone.utc).strftime("%Y%m%d_%H%M%S")


def new_run_dir(results_root: Path | str, *, now: datetime | None = None,
                workspace_root: Path | str | None = None) -> Path:
    """Create a fresh run directory under `results_root`; `_1`, `_2` … are appended on a collision.

    Args:
        workspace_root: the workspace the results must stay in (default: `results_root`'s parent).

    Raises:
        ContractError: `results_root` resolves outside the workspace (e.g. a symlink to elsewhere).
    """
    root = Path(results_root).expanduser().absolute()
    ws = Path(workspace_root).expanduser().absolute() if workspace_root is not None else root.parent
    real_root, real_ws = os.path.realpath(root), os.path.realpath(ws)
    if not inside(real_root, real_ws) or real_root == real_ws:
        raise ContractError(
            f"results folder '{root}' resolves to '{real_root}', outside the workspace '{real_ws}'; "
            "run directories must stay inside the workspace (remove the symlink or pick a folder under it)."
        )
    Path(real_root).mkdir(parents=True, exist_ok=True)
    base = run_dir_name(now)
    for k in range(_MAX_COLLISIONS):
        candidate = Path(real_root) / (base if k == 0 else f"{base}_{k}")
        try:
            candidate.mkdir()  # atomic: exactly one process wins each name
        except FileExistsError:
            continue
        return candidate
    raise StateConflict(f"{real_root}: {_MAX_COLLISIONS} run folders named {base}[_k] already exist; "
                        "clean up the results folder.")


def _find_run_root(path: Path) -> Path | None:
    for parent in path.parents:
        if (parent / STATE_FILE).exists():
            return parent
    return None


def clear_stage_dir(path: Path | str, *, results_dir: Path | str | None = None) -> Path:
    """Empty (or create) a stage's output folder so an interrupted stage restarts clean.

    The folder must lie strictly inside a run directory (`results_dir`, or the nearest parent
    holding `deft_state.json`): this never deletes anything outside a run.

    Raises:
        ContractError: `path` is not inside a run directory, or is the run directory itself.
    """
    target = Path(path).expanduser().absolute()
    rd = Path(results_dir).expanduser().absolute() if results_dir is not None else _find_run_root(target)
    if rd is None:
        raise ContractError(
            f"clear_stage_dir: '{target}' is not inside a run directory (no deft_state.json above it); "
            "refusing to delete it."
        )
    real_target, real_rd = os.path.realpath(target), os.path.realpath(rd)
    if not inside(real_target, real_rd) or real_target == real_rd:
        raise ContractError(
            f"clear_stage_dir: '{target}' resolves to '{real_target}', which is not a folder inside the run "
            f"directory '{real_rd}'; refusing to delete it."
        )
    parent = Path(real_target).parent
    name = Path(real_target).name
    for leftover in parent.glob(f".{name}.clearing-*"):  # from a clear that was itself interrupted
        shutil.rmtree(leftover, ignore_errors=True)
    if os.path.islink(target):
        target.unlink()
    elif os.path.exists(real_target):
        if not os.path.isdir(real_target):
            raise ContractError(f"clear_stage_dir: '{target}' is a file, expected a stage output folder.")
        trash = parent / f".{name}.clearing-{os.getpid()}"
        os.replace(real_target, trash)  # the stage folder disappears at once; deletion may take longer
        shutil.rmtree(trash, ignore_errors=True)
    Path(real_target).mkdir(parents=True, exist_ok=True)
    return Path(real_target)


@dataclass(frozen=True)
class ResumePoint:
    """What `find_resumable` learned about a resumable run."""

    results_dir: Path
    state: DeftState
    next_stage: tuple[str, str] | None
    stale_lock_pid: int | None
    halt: HaltRecord | None


def _lock_owner(lock: Path) -> dict[str, Any] | None:
    try:
        text = lock.read_text()
    except FileNotFoundError:
        return None
    try:
        owner = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {}
    return owner if isinstance(owner, dict) else {}



def find_resumable(results_dir: Path | str) -> ResumePoint:
    """Check SPEC §9's resume rules for one run directory.

    Resumable: status `in_progress` and no live lock (a stale lock — dead PID — is reported in
    `stale_lock_pid` and taken over by `StateStore.open`). A regression halt is returned in `halt`;
    the caller continues only with `--accept-regression`.

    Raises:
        ContractError: not a run directory, or its state is malformed.
        StateConflict: the run failed (never auto-resumed), is complete, or another process holds it.
    """
    rd = Path(results_dir).expanduser().resolve()
    owner = _lock_owner(rd / LOCK_FILE)  # read before anything can take a stale lock over
    state = read_state(rd)
    if state.status == "failed":
        failure = (state.model_extra or {}).get("failure") or {}
        where = f" at {failure.get('iter')}/{failure.get('stage')}: {failure.get('message')}" if failure else ""
        raise StateConflict(
            f"{rd}: the run failed{where}; failed runs are never resumed.",
            hint="Fix the cause and start a new run (deftpipe run / deftpipe deft without --resume).",
        )
    if state.status == "complete":
        raise StateConflict(f"{rd}: the run is already complete; there is nothing to resume.",
                            hint="Start a new run to train again.")
    stale: int | None = None
    if owner is not None:
        pid = int(owner.get("pid", -1)) if str(owner.get("pid", "-1")).lstrip("-").isdigit() else -1
        host = owner.get("host", socket.gethostname())
        if host != socket.gethostname():
            raise StateConflict(
                f"{rd}: locked by PID {pid} on host {host}; cannot tell from here whether it still runs.",
                hint=f"If that process is gone, delete {rd / LOCK_FILE} and run `{resume_command(rd)}`.",
            )
        if pid == os.getpid() or pid_alive(pid):
            raise StateConflict(
                f"{rd}: another deftpipe process (PID {pid}) is running this run.",
                hint="Wait for it to finish or stop it; two processes must never write one run.",
            )
        stale = pid
    return ResumePoint(results_dir=rd, state=state, next_stage=next_stage(state),
                       stale_lock_pid=stale, halt=state.halt)

