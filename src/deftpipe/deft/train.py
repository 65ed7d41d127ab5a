"""Train stage: one backend training run under `<iter>/train/`, initialised from the best checkpoint so far."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deftpipe.backends.base import ModelBackend, ProgressFn, TrainRequest, TrainResult

NAME = "train"


@dataclass(frozen=True)
class TrainStageResult:
    result: TrainResult
    candidates: dict[str, Path]  # best_val / latest


def run(backend: ModelBackend, *, spec: dict[str, Any], train_csv: Path, val_csv: Path, workspace_root: Path,
        out_dir: Path, cache_dir: Path, seed: int, device: str, progress: ProgressFn | None = None) -> TrainStageResult:
    result = backend.train(TrainRequest(spec=spec, train_csv=train_csv, val_csv=val_csv, images_dir=workspace_root,
                                        workspace_root=workspace_root, out_dir=out_dir, cache_dir=cache_dir, seed=seed,
                                        device=device, progress=progress))
    return TrainStageResult(result=result, candidates={"best_val": result.best_val_ckpt, "latest": result.latest_ckpt})


def candidates_from_dir(train_dir: Path) -> dict[str, Path]:
    """Re-read the two candidates of a committed train stage from its status.json (resume path)."""
    status = json.loads((train_dir / "status.json").read_text())
    out: dict[str, Path] = {}
    for kind in ("best_val", "latest"):
        value = status.get(kind) or status.get(f"{kind}_ckpt") or status.get(f"{kind}_path")
        if isinstance(value, dict):
            value = value.get("path")
        if value:
            p = Path(value)
            out[kind] = p if p.is_absolute() else train_dir / p
    return out
