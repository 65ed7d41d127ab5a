"""`provenance.json`: what is needed to rerun a run — versions, git SHA, input digests, host, threads, seeds."""
from __future__ import annotations

import importlib
import os
import platform
import socket
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from deftpipe.workspace.io import sha256_file, write_json_atomic

PACKAGES = ("deftpipe", "torch", "numpy", "pandas", "optuna", "faiss-cpu", "opencv-python-headless", "omegaconf")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def git_sha() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def thread_counts(*, with_torch: bool = False) -> dict[str, Any]:
    """CPU count, thread variables and torch's intra-op threads (importing torch only when `with_torch`)."""
    out: dict[str, Any] = {"cpu_count": os.cpu_count()}
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        out[var] = os.environ.get(var)
    import sys

    if with_torch:
        importlib.import_module("torch")
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch_threads"] = torch.get_num_threads()
    return out


def environment(*, with_torch: bool = False) -> dict[str, Any]:
    """What provenance.json records about this machine and its software (everything but the run's own inputs)."""
    return {
        "packages": {name: _version(name) for name in PACKAGES},
        "python": platform.python_version(),
        "git_sha": git_sha(),
        "host": {"hostname": socket.gethostname(), "platform": platform.platform(), "machine": platform.machine()},
        "threads": thread_counts(with_torch=with_torch),
    }


def environment_differences(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """One line per recorded fact that differs now (package, python, code, host, thread count).

    A fact missing on either side is not a difference: older runs recorded less, and `torch_threads`
    exists only once torch was imported.
    """
    out: list[str] = []

    def differ(what: str, old: Any, new: Any) -> None:
        if old is not None and new is not None and old != new:
            out.append(f"{what}: recorded {old!r}, now {new!r}")

    for name, old in (recorded.get("packages") or {}).items():
        new = (current.get("packages") or {}).get(name)
        if name in (current.get("packages") or {}) and old != new:
            out.append(f"package {name}: recorded {old!r}, now {new!r}")
    differ("python", recorded.get("python"), current.get("python"))
    differ("code (git SHA)", recorded.get("git_sha"), current.get("git_sha"))
    for key, old in (recorded.get("host") or {}).items():
        differ(f"host {key}", old, (current.get("host") or {}).get(key))
    rec_threads, cur_threads = recorded.get("threads") or {}, current.get("threads") or {}
    for key in sorted(set(rec_threads) & set(cur_threads)):
        if rec_threads[key] != cur_threads[key]:
            out.append(f"threads {key}: recorded {rec_threads[key]!r}, now {cur_threads[key]!r}")
    return out


def write_provenance(results_dir: Path, *, inputs: Mapping[str, Path | str | None], seed: int,
                     resolved_config: Mapping[str, Any], command: list[str] | None = None,
                     with_torch: bool = False) -> Path:
    """Write provenance.json; input digests are sha256 of each named file.

    `with_torch`: record torch's thread count even before torch is imported (a run that trains with torch
    needs it for `deftpipe rerun`; callers that never touch torch skip the import).
    """
    digests = {name: {"path": str(p), "sha256": sha256_file(p)} for name, p in inputs.items()
               if p and Path(p).is_file()}
    doc = {
        **environment(with_torch=with_torch),
        "seed": seed,
        "inputs": digests,
        "resolved_config": dict(resolved_config),
        "command": command,
    }
    path = Path(results_dir) / "provenance.json"
    write_json_atomic(path, doc)
    return path
