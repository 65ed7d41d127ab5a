"""`provenance.json`: what is needed to rerun a run — versions, git SHA, input digests, host, threads, seeds."""
from __future__ import annotations

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


def thread_counts() -> dict[str, Any]:
    out: dict[str, Any] = {"cpu_count": os.cpu_count()}
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        out[var] = os.environ.get(var)
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch_threads"] = torch.get_num_threads()
    return out


def write_provenance(results_dir: Path, *, inputs: Mapping[str, Path | str | None], seed: int,
                     resolved_config: Mapping[str, Any], command: list[str] | None = None) -> Path:
    """Write provenance.json; input digests are sha256 of each named file."""
    digests = {name: {"path": str(p), "sha256": sha256_file(p)} for name, p in inputs.items()
               if p and Path(p).is_file()}
    doc = {
        "packages": {name: _version(name) for name in PACKAGES},
        "python": platform.python_version(),
        "git_sha": git_sha(),
        "host": {"hostname": socket.gethostname(), "platform": platform.platform(), "machine": platform.machine()},
        "threads": thread_counts(),
        "seed": seed,
        "inputs": digests,
        "resolved_config": dict(resolved_config),
        "command": command,
    }
    path = Path(results_dir) / "provenance.json"
    write_json_atomic(path, doc)
    return path
