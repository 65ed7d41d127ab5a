"""Inference and embedding with a native checkpoint: CSV rows in, `siamese_score` (or embeddings) out.

The score is logit(defect) − logit(PASS), written with full precision (`%.17g`)
next to every input column; preprocessing (lights, size, registration, normalization)
is the one stored in the checkpoint, so scores do not depend on the caller's spec.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from deftpipe.backends.base import EmbedRequest, InferRequest, InferResult
from deftpipe.backends.native.checkpoint import load_checkpoint
from deftpipe.backends.native.data import BatchMaker, Normalization, PairTensors, load_pair_tensors
from deftpipe.backends.native.model import ArchInfo, SiameseClassifier, scores_from_logits
from deftpipe.backends.native.train import resolve_device
from deftpipe.errors import ContractError
from deftpipe.workspace.io import write_csv_atomic
from deftpipe.workspace.paths import ImageLocator
from deftpipe.workspace.spec import ImageSettings
from deftpipe.workspace.tables import read_samples_csv

SCORE_COLUMN = "siamese_score"
INFER_BATCH = 128


@dataclass
class LoadedModel:
    """A checkpoint ready to score: the model in eval mode plus what its inputs must look like."""

    model: SiameseClassifier
    arch: ArchInfo
    norm: Normalization
    max_shift_px: int
    spec: Mapping[str, Any]
    path: Path


def load_model(checkpoint: Path | str, *, device: torch.device) -> LoadedModel:
    """Load weights (weights_only) into a freshly built model of the stored architecture."""
    payload = load_checkpoint(checkpoint)
    arch = ArchInfo.from_dict(payload["arch"])
    model = SiameseClassifier(arch)
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, TypeError, KeyError, ValueError) as exc:
        raise ContractError(
            f"checkpoint '{checkpoint}': weights do not fit the architecture it declares ({arch.to_dict()}): "
            f"{str(exc).splitlines()[0]}; re-create it with `deftpipe train`."
        ) from exc
    model.to(device).eval()
    model.to(memory_format=torch.channels_last)  # faster on CPU too (see train._fit)
    pre = payload.get("preprocess") or {}
    try:
        norm = Normalization.from_dict(payload["normalization"])
    except (TypeError, KeyError, ValueError, AttributeError) as exc:
        raise ContractError(f"checkpoint '{checkpoint}' has no usable 'normalization' entry ({type(exc).__name__}: "
                            f"{exc}); re-create it with `deftpipe train`.") from exc
    return LoadedModel(model, arch, norm,
                       int(pre.get("max_shift_px", 3)), payload.get("spec") or {}, Path(checkpoint))


def _load_rows(lm: LoadedModel, csv: Path, images_dir: Path, workspace_root: Path,
               spec: Mapping[str, Any] | None, cache_dir: Path | None, progress: Any
               ) -> tuple[pd.DataFrame, PairTensors]:
    img = ImageSettings.from_spec(spec if spec is not None else lm.spec)
    channels = len(img.lights) * (1 if img.grayscale else 3)
    if channels != lm.arch.in_channels:
        raise ContractError(
            f"checkpoint '{lm.path}' expects {lm.arch.in_channels} input channel(s) but the spec's input_map "
            f"{list(img.lights)} gives {channels}; use the spec the checkpoint was trained with."
        )
    rows = read_samples_csv(csv, name=f"CSV '{csv}'")
    locator = ImageLocator(Path(images_dir), Path(workspace_root), img.lights, img.image_ext)
    data = load_pair_tensors(rows, locator, img, input_mode=lm.arch.input_mode, max_shift=lm.max_shift_px,
                             cache_dir=cache_dir, csv_name=f"CSV '{csv}'", progress=progress)
    return rows, data


@torch.no_grad()
def _run(lm: LoadedModel, data: PairTensors, device: torch.device, *, batch_size: int, what: str,
         progress: Any) -> np.ndarray:
    maker = BatchMaker(lm.norm, has_diff=data.diff is not None, device=device, channels_last=True)
    out: list[np.ndarray] = []
    n = len(data)
    done = 0
    for idx in torch.arange(n).split(batch_size):
        test, golden, diff, _ = maker(data, idx)
        if what == "score":
            val = scores_from_logits(lm.model(test, golden, diff).float())
        else:
            val = lm.model.embed(test, golden, diff).float()
        out.append(val.cpu().numpy())
        done += len(idx)
        if progress is not None:
            progress(done, n, "scoring" if what == "score" else "embedding")
    if not out:
        return np.zeros((0,) if what == "score" else (0, lm.model.embed_dim), dtype=np.float32)
    return np.concatenate(out)


def infer(request: InferRequest) -> InferResult:
    """Score every row; write `out_csv` atomically (all input columns + `siamese_score`)."""
    device = resolve_device(request.device)
    lm = load_model(request.checkpoint, device=device)
    rows, data = _load_rows(lm, Path(request.csv), Path(request.images_dir), Path(request.workspace_root),
                            request.spec, request.cache_dir, request.progress)
    scores = _run(lm, data, device, batch_size=INFER_BATCH, what="score", progress=request.progress)
    frame = rows.copy()
    frame[SCORE_COLUMN] = scores.astype(np.float64)
    write_csv_atomic(request.out_csv, frame, float_format="%.17g")
    n_defect = int((scores > 0).sum())
    return InferResult(out_csv=Path(request.out_csv), n_rows=len(frame),
                       pred_counts={"PASS": len(frame) - n_defect, "defect": n_defect})


def embed(request: EmbedRequest) -> np.ndarray:
    """(N, D) float32 pooled pair features (before the head), in CSV row order."""
    device = resolve_device(request.device)
    lm = load_model(request.checkpoint, device=device)
    _, data = _load_rows(lm, Path(request.csv), Path(request.images_dir), Path(request.workspace_root),
                         None, request.cache_dir, request.progress)
    return _run(lm, data, device, batch_size=request.batch_size, what="embed", progress=request.progress)
