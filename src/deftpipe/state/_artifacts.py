"""Checks that a committed artifact exists, is non-empty and resolves inside RESULTS_DIR."""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from deftpipe.errors import ContractError


def inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def check_artifact(results_dir: Path, key: str, value: str | Path, *, where: str) -> str:
    """The artifact's absolute, symlink-free path; raises a ContractError naming `key` when it is unusable."""
    if not isinstance(value, (str, Path)) or str(value) == "":
        raise ContractError(f"{where}: artifact '{key}' must be a file or folder path, got {value!r}.")
    path = Path(value)
    if not path.is_absolute():
        path = results_dir / path
    real = os.path.realpath(path)
    root = os.path.realpath(results_dir)
    if not inside(real, root):
        raise ContractError(
            f"{where}: artifact '{key}' = '{value}' resolves to '{real}', outside RESULTS_DIR '{root}'; "
            "stages write their outputs under the run directory (copy the file there first)."
        )
    if not os.path.exists(real):
        raise ContractError(
            f"{where}: artifact '{key}' = '{path}' does not exist; the stage must write it before committing."
        )
    if os.path.isdir(real):
        if not any(os.scandir(real)):
            raise ContractError(f"{where}: artifact '{key}' = '{path}' is an empty folder; the stage wrote nothing.")
    elif os.path.getsize(real) == 0:
        raise ContractError(f"{where}: artifact '{key}' = '{path}' is an empty file; the stage's output is incomplete.")
    return real


def check_artifacts(results_dir: Path, artifacts: Mapping[str, str | Path], *, where: str) -> dict[str, str]:
    """Check every artifact before anything is written; returns key -> absolute path."""
    return {key: check_artifact(results_dir, key, value, where=where) for key, value in artifacts.items()}
