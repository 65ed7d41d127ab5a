"""The two-method-plus-one seam every model backend implements (SPEC §1).

Requests and results are frozen records of paths and plain values, so a stage
can hand them across processes and write them into state unchanged.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

# progress(done, total, message) — called from long loops; must be cheap.
ProgressFn = Callable[[int, int, str], None]


@dataclass(frozen=True)
class TrainRequest:
    """Train on `train_csv`, validate on `val_csv`, write checkpoints under `out_dir`.

    `spec` is the resolved spec dict; `train.pretrained_model_path` loads weights with
    a fresh epoch counter, `train.resume_training_checkpoint_path` continues a run.
    """

    spec: Mapping[str, Any]
    train_csv: Path
    val_csv: Path
    images_dir: Path
    workspace_root: Path
    out_dir: Path
    cache_dir: Path | None = None
    seed: int = 0
    device: str = "auto"
    progress: ProgressFn | None = None
    # Epoch-level hook for pruning: called as on_epoch(epoch, val_loss); return True to stop early.
    on_epoch: Callable[[int, float], bool] | None = None


@dataclass(frozen=True)
class TrainResult:
    best_val_ckpt: Path
    latest_ckpt: Path
    epochs_run: int
    best_val_loss: float
    history: tuple[Mapping[str, float], ...] = field(default_factory=tuple)  # per epoch: epoch, train_loss, val_loss
    stopped_early: bool = False


@dataclass(frozen=True)
class InferRequest:
    """Score every row of `csv` with `checkpoint`; write `out_csv` = rows + `siamese_score`."""

    checkpoint: Path
    csv: Path
    images_dir: Path
    workspace_root: Path
    out_csv: Path
    spec: Mapping[str, Any] | None = None  # None: the spec stored in the checkpoint
    cache_dir: Path | None = None
    device: str = "auto"
    progress: ProgressFn | None = None


@dataclass(frozen=True)
class InferResult:
    out_csv: Path
    n_rows: int
    pred_counts: Mapping[str, int]  # predictions at score > 0: {"PASS": n, "defect": m}


@dataclass(frozen=True)
class EmbedRequest:
    """L2-normalizable pair embeddings for rows of `csv` (mining's k-NN space)."""

    checkpoint: Path
    csv: Path
    images_dir: Path
    workspace_root: Path
    cache_dir: Path | None = None
    device: str = "auto"
    batch_size: int = 256
    progress: ProgressFn | None = None


@runtime_checkable
class ModelBackend(Protocol):
    """What the pipeline needs from a model: train, infer, embed. Nothing AOI-specific beyond CSV rows."""

    name: str

    def train(self, request: TrainRequest) -> TrainResult: ...

    def infer(self, request: InferRequest) -> InferResult: ...

    def embed(self, request: EmbedRequest) -> np.ndarray: ...
