"""A fast fake `ModelBackend` for bridge tests, registered as `fake_pipeline`: the DEFT fake plus what AutoML needs.

Built on `tests.unit.deft.fake_backend.FakeDeftBackend` (image-derived scores; rows of a label the
checkpoint trained on score higher, so DEFT's added rows lower FAR@100) with three additions:

- every `train` call is logged in `TRAIN_LOG` (output folder, `train.pretrained_model_path` of the
  request's spec), every `infer` call in `INFER_LOG` (input and output CSV); `train` calls `on_epoch`
  like a real backend, so AutoML's pruning hook runs;
- scores are centred on each CSV's median score (FAR / AUROC are unchanged by a shift), so the
  `pred_counts` at score > 0 hold both classes and AutoML does not disqualify every trial;
- `KNOBS["bad_under"]` (a folder name such as `final_automl`): checkpoints trained under a folder of
  that name forget what they learned (raw mean |diff|: FAR@100 far above the loop's), which forces
  a Phase 3 regression or a Phase 1 that loses to the zero-shot scorer.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from deftpipe.backends.base import InferRequest, InferResult, TrainRequest, TrainResult
from tests.unit.deft import fake_backend as deft_fake

NAME = "fake_pipeline"
DEFAULT_KNOBS: dict[str, Any] = {"bad_under": None}
KNOBS: dict[str, Any] = dict(DEFAULT_KNOBS)


@dataclass(frozen=True)
class TrainCall:
    out_dir: Path
    pretrained: str | None

    def under(self, folder: str) -> bool:
        return folder in self.out_dir.parts


TRAIN_LOG: list[TrainCall] = []
INFER_LOG: list[tuple[Path, Path]] = []  # (input CSV, output CSV) of every infer call


def ensure_registered() -> str:
    """Register `fake_pipeline` once per process (the registry refuses a second registration)."""
    from deftpipe.backends.registry import _FACTORIES, register_backend

    if NAME not in _FACTORIES:
        register_backend(NAME)(FakePipelineBackend)
    return NAME


def reset() -> None:
    KNOBS.clear()
    KNOBS.update(DEFAULT_KNOBS)
    deft_fake.KNOBS.clear()
    deft_fake.KNOBS.update(deft_fake.DEFAULT_KNOBS)
    deft_fake.CALLS.clear()
    TRAIN_LOG.clear()
    INFER_LOG.clear()


class FakePipelineBackend(deft_fake.FakeDeftBackend):
    name = NAME

    def train(self, request: TrainRequest) -> TrainResult:
        pretrained = (request.spec.get("train") or {}).get("pretrained_model_path")
        TRAIN_LOG.append(TrainCall(Path(request.out_dir).resolve(), str(pretrained) if pretrained else None))
        result = super().train(request)
        bad = KNOBS["bad_under"]
        if bad and bad in Path(request.out_dir).parts:
            for ckpt in Path(request.out_dir).glob("model_epoch_*.pth"):
                state = json.loads(ckpt.read_text())
                ckpt.write_text(json.dumps({**state, "forgot": True}, sort_keys=True))
        stopped = False
        if request.on_epoch is not None:
            for row in result.history:
                if request.on_epoch(int(row["epoch"]), float(row["val_loss"])):
                    stopped = True
                    break
        return TrainResult(best_val_ckpt=result.best_val_ckpt, latest_ckpt=result.latest_ckpt,
                           epochs_run=result.epochs_run, best_val_loss=result.best_val_loss,
                           history=result.history, stopped_early=stopped)

    def infer(self, request: InferRequest) -> InferResult:
        INFER_LOG.append((Path(request.csv).resolve(), Path(request.out_csv).resolve()))
        state = json.loads(Path(request.checkpoint).read_text())
        if state.get("forgot"):
            # the same scores the DEFT fake gives a model that regressed: raw |diff| for every row
            saved = deft_fake.KNOBS["regress_from_iter"]
            deft_fake.KNOBS["regress_from_iter"] = -1
            try:
                super().infer(request)
            finally:
                deft_fake.KNOBS["regress_from_iter"] = saved
        else:
            super().infer(request)
        rows = pd.read_csv(request.out_csv, dtype=str, keep_default_na=False)
        scores = pd.to_numeric(rows["siamese_score"], errors="coerce")
        centred = scores - float(scores.median()) if scores.notna().any() else scores
        rows["siamese_score"] = centred.to_numpy()
        rows.to_csv(request.out_csv, index=False, float_format="%.17g")
        n_def = int((centred > 0).sum())
        return InferResult(out_csv=Path(request.out_csv), n_rows=len(rows),
                           pred_counts={"PASS": len(rows) - n_def, "defect": n_def})
