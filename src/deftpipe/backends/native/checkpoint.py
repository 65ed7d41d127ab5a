"""Checkpoint files (SPEC §4): naming, atomic save, weights_only load and the architecture check.

A checkpoint is a dict of tensors and plain values only (state dicts, epoch, step,
val_loss, the resolved spec as a plain dict, arch, labels, normalization, version),
so `torch.load(..., weights_only=True)` reads it and a pickle carrying code is refused.
"""
from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from deftpipe import __version__
from deftpipe.workspace.io import write_atomic
from deftpipe.backends.native.model import ArchInfo
from deftpipe.errors import ContractError

FORMAT = "deftpipe-native/1"
CHECKPOINT_RE = re.compile(r"^model_epoch_(\d{3,})_step_(\d{3,})\.pth$")


def checkpoint_name(epoch: int, step: int) -> str:
    """`model_epoch_<EEE>_step_<SSS>.pth`, zero-padded to at least 3 digits."""
    return f"model_epoch_{epoch:03d}_step_{step:03d}.pth"


def parse_checkpoint_name(name: str) -> tuple[int, int] | None:
    """(epoch, step) of a checkpoint file name, or None when it does not follow the rule."""
    m = CHECKPOINT_RE.match(name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def plain(obj: Any) -> Any:
    """A copy made of dict/list/str/int/float/bool/None only (safe for weights_only loading and JSON)."""
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, (str, bool, int, float)) or obj is None:
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def save_checkpoint(path: Path, payload: Mapping[str, Any]) -> None:
    """Serialize in memory, then write atomically (readers never see half a file); checkpoints are small."""
    import io

    buf = io.BytesIO()
    torch.save({"format": FORMAT, "deftpipe_version": __version__, **payload}, buf)
    write_atomic(path, buf.getvalue(), fault_site="checkpoint_save")


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Load a native checkpoint with `weights_only=True` on CPU.

    Raises:
        ContractError: missing file, a pickle that needs code to load, a corrupt file, or not a native checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise ContractError(f"checkpoint '{path}' not found; check the path (train writes model_epoch_<EEE>_step_<SSS>.pth).")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ContractError(
            f"checkpoint '{path}' was refused: it is not weights-only data ({first[:200]}). Only checkpoints written by "
            "deftpipe's native backend (tensors and plain values) are loaded; code inside a pickle is never run.",
            hint="Re-create the checkpoint with `deftpipe train`, or re-save its state_dict from a trusted session.",
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ContractError(f"checkpoint '{path}' is corrupt or truncated ({exc}); re-create it with `deftpipe train`.") from exc
    if not isinstance(payload, dict) or "state_dict" not in payload or "arch" not in payload:
        keys = sorted(payload)[:8] if isinstance(payload, dict) else type(payload).__name__
        raise ContractError(
            f"checkpoint '{path}' is not a deftpipe native checkpoint (expected keys 'state_dict' and 'arch', got {keys})."
        )
    _check_structure(payload, path)
    return payload


def _check_structure(payload: Mapping[str, Any], path: Path) -> None:
    """Someone else's file must fail here with a clear message, not deep inside model building."""
    where = f"checkpoint '{path}' is not a usable deftpipe native checkpoint"
    if not isinstance(payload["state_dict"], Mapping):
        raise ContractError(f"{where}: 'state_dict' is a {type(payload['state_dict']).__name__}, expected a mapping "
                            "of tensors; re-create it with `deftpipe train`.")
    try:
        ArchInfo.from_dict(payload["arch"])
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise ContractError(f"{where}: its 'arch' entry is malformed ({type(exc).__name__}: {exc}); "
                            "re-create it with `deftpipe train`.") from exc


def check_arch(payload: Mapping[str, Any], arch: ArchInfo, *, path: Path | str, purpose: str) -> None:
    """Raise ContractError naming the file and every differing field when `payload` was trained for another arch."""
    theirs = ArchInfo.from_dict(payload["arch"])
    diffs = arch.mismatches(theirs)
    if diffs:
        raise ContractError(
            f"{purpose}: checkpoint '{path}' has another architecture than the spec ({'; '.join(diffs)} "
            "— spec vs checkpoint). Use a checkpoint trained with the same model.backbone.type, "
            "model.classify.difference_module, model.classify.input_mode and lights, or change the spec to match."
        )
