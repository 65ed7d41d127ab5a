"""A deterministic, fast `ModelBackend` for AutoML tests: real checkpoint files and inference CSVs, no torch.

Model quality `q` in [0, 1] peaks at lr = 1e-3 (log distance) and grows with epochs;
validation loss falls with `q`. Scores: PASS rows spread over [-1, 1] (fixed per row),
defect rows sit at `-1 + 2 q` and above, so FAR@100 falls as `q` rises.
Hooks: `fail_if(params)` raises inside train, `collapse_if(params)` makes every score
negative (perfect ranking, one predicted class). Usable across processes through
`tests.unit.automl.fake_backend:SlowFakeBackend` (sleeps DEFTPIPE_FAKE_EPOCH_S per epoch).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deftpipe.backends.base import EmbedRequest, InferRequest, InferResult, TrainRequest, TrainResult

Predicate = Callable[[Mapping[str, Any]], bool]


def _u(*parts: Any) -> float:
    h = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def _flat_params(spec: Mapping[str, Any]) -> dict[str, Any]:
    train = spec.get("train", {})
    return {"lr": float(train.get("optim", {}).get("lr", 1e-3)), "optim": train.get("optim", {}).get("optim"),
            "weight_decay": float(train.get("optim", {}).get("weight_decay", 0.0)),
            "cls_weight": list(train.get("classify", {}).get("cls_weight", [1.0, 1.0]))}


class FakeBackend:
    name = "fake"
    backend_ref = "tests.unit.automl.fake_backend:FakeBackend"

    def __init__(self, *, fail_if: Predicate | None = None, collapse_if: Predicate | None = None,
                 epoch_s: float = 0.0, die_on_train: int | None = None) -> None:
        self.fail_if = fail_if
        self.die_on_train = die_on_train  # hard-kill the process (no cleanup) on the N-th train call
        self.collapse_if = collapse_if
        self.epoch_s = epoch_s
        self.train_requests: list[TrainRequest] = []
        self.infer_requests: list[InferRequest] = []

    @staticmethod
    def quality(params: Mapping[str, Any], epoch: int, seed: int) -> float:
        base = math.exp(-((math.log10(params["lr"]) + 3.0) ** 2) / 2.0)
        jitter = 0.08 * (_u("seed", seed, round(params["lr"], 12)) - 0.5)
        return float(min(1.0, max(0.0, base * (1.0 - 0.5 / epoch) + jitter)))

    def train(self, request: TrainRequest) -> TrainResult:
        self.train_requests.append(request)
        spec = request.spec
        if self.die_on_train is not None and len(self.train_requests) >= self.die_on_train:
            os._exit(137)
        params = _flat_params(spec)
        if self.fail_if is not None and self.fail_if(params):
            raise RuntimeError(f"fake training diverged at lr={params['lr']:.3g}")
        n_epochs = int(spec["train"]["num_epochs"])
        out = Path(request.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        history = []
        best: tuple[float, Path] | None = None
        latest: Path | None = None
        stopped = False
        for epoch in range(1, n_epochs + 1):
            if self.epoch_s:
                time.sleep(self.epoch_s)
            q = self.quality(params, epoch, request.seed)
            val_loss = (1.0 - q) + 0.2 / epoch
            ckpt = out / f"model_epoch_{epoch:03d}_step_{epoch * 10:03d}.pth"
            ckpt.write_text(json.dumps({"q": q, "params": params, "epoch": epoch,
                                        "pretrained": spec["train"].get("pretrained_model_path")}))
            latest = ckpt
            if best is None or val_loss < best[0]:
                best = (val_loss, ckpt)
            history.append({"epoch": epoch, "train_loss": val_loss, "val_loss": val_loss})
            if request.on_epoch is not None and request.on_epoch(epoch, val_loss):
                stopped = True
                break
        assert best is not None and latest is not None
        return TrainResult(best_val_ckpt=best[1], latest_ckpt=latest, epochs_run=len(history),
                           best_val_loss=best[0], history=tuple(history), stopped_early=stopped)

    def infer(self, request: InferRequest) -> InferResult:
        self.infer_requests.append(request)
        state = json.loads(Path(request.checkpoint).read_text())
        q = float(state["q"])
        # best_val and latest differ slightly: a later checkpoint is a little sharper
        q = min(1.0, q + 0.01 * (state["epoch"] % 2))
        rows = pd.read_csv(request.csv, dtype=str, keep_default_na=False)
        collapse = self.collapse_if is not None and self.collapse_if(state["params"])
        scores = []
        for _, row in rows.iterrows():
            u = _u(row["object_name"], row["input_path"])
            if row["label"] == "PASS":
                s = -1.0 + 2.0 * u
            else:
                s = -1.0 + 2.0 * (1.0 if collapse else q) + 0.5 * u
            scores.append(s - 10.0 if collapse else s)
        rows["siamese_score"] = np.asarray(scores, dtype=np.float64)
        Path(request.out_csv).parent.mkdir(parents=True, exist_ok=True)
        rows.to_csv(request.out_csv, index=False, float_format="%.17g")
        n_def = int((rows["siamese_score"] > 0).sum())
        return InferResult(out_csv=Path(request.out_csv), n_rows=len(rows),
                           pred_counts={"PASS": len(rows) - n_def, "defect": n_def})

    def embed(self, request: EmbedRequest) -> np.ndarray:
        rows = pd.read_csv(request.csv, dtype=str, keep_default_na=False)
        return np.asarray([[_u(o, k) for k in range(4)] for o in rows["object_name"]], dtype=np.float32)


class SlowFakeBackend(FakeBackend):
    """For multi-process tests: each epoch sleeps DEFTPIPE_FAKE_EPOCH_S seconds (default 1)."""

    backend_ref = "tests.unit.automl.fake_backend:SlowFakeBackend"

    def __init__(self) -> None:
        super().__init__(epoch_s=float(os.environ.get("DEFTPIPE_FAKE_EPOCH_S", "1")))
