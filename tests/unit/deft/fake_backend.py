"""A fast, deterministic `ModelBackend` for DEFT loop tests: real files, image-derived scores, no torch.

Score of a row = mean |test − golden| over its lights (defects differ more from
their golden than PASS pairs), scaled by `KNOBS["unseen_scale"]` for a defect
label the checkpoint never trained on and raised by `KNOBS["gain"]` for one it
did — so adding rows of the gap labels (SDG / mining) lowers FAR@100.
Other knobs (set with `monkeypatch.setitem(KNOBS, ...)`, read at call time):

- `mode`: `normal` | `nan` (every score NaN) | `invert` (defects rank lowest);
- `regress_from_iter`: checkpoints trained on `train_combined_iter<N>.csv` with N ≥ it forget what
  they learned (raw |diff| for every row: FAR@100 ≈ 89 % on the tiny demo vs ≈ 21 % at baseline);
- `fail_train`: raise inside `train`.

Checkpoints are small JSON files named like the native ones (`model_epoch_<EEE>_step_<SSS>.pth`),
with `status.json` {"best_val", "latest"} beside them.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from deftpipe.backends.base import EmbedRequest, InferRequest, InferResult, TrainRequest, TrainResult
from deftpipe.workspace.spec import ImageSettings

NAME = "fake_test"
DEFAULT_KNOBS: dict[str, Any] = {"mode": "normal", "gain": 1.0, "unseen_scale": 1.0, "regress_from_iter": None,
                                 "fail_train": False}
KNOBS: dict[str, Any] = dict(DEFAULT_KNOBS)
CALLS: Counter[str] = Counter()  # train / infer / embed calls in this process
_ITER_CSV = re.compile(r"train_combined_iter(\d+)\.csv$")


def ensure_registered() -> str:
    """Register the fake under `fake_test` once per process (the registry refuses a second registration)."""
    from deftpipe.backends.registry import _FACTORIES, register_backend

    if NAME not in _FACTORIES:
        register_backend(NAME)(FakeDeftBackend)
    return NAME


def _settings(spec: Any) -> ImageSettings:
    return ImageSettings.from_spec(spec or {})


def _pair_features(rows: pd.DataFrame, images_dir: Path, lights: tuple[str, ...], ext: str) -> np.ndarray:
    """Per row: mean |diff|, max |diff|, mean test, mean golden (all in [0, 1])."""
    out = np.zeros((len(rows), 4), np.float64)
    for i, row in enumerate(rows.itertuples(index=False)):
        diffs, tests, goldens = [], [], []
        for light in lights:
            t = cv2.imread(str(images_dir / row.input_path / f"{row.object_name}_{light}{ext}"), cv2.IMREAD_GRAYSCALE)
            g = cv2.imread(str(images_dir / row.golden_path / f"{row.object_name}_{light}{ext}"), cv2.IMREAD_GRAYSCALE)
            if t is None or g is None:
                raise FileNotFoundError(f"fake backend: image of row {row.object_name} under {images_dir} is missing")
            d = np.abs(t.astype(np.float64) - g.astype(np.float64)) / 255.0
            diffs.append(d)
            tests.append(t.mean() / 255.0)
            goldens.append(g.mean() / 255.0)
        d = np.stack(diffs)
        out[i] = (d.mean(), d.max(), float(np.mean(tests)), float(np.mean(goldens)))
    return out


class FakeDeftBackend:
    name = NAME

    def __init__(self, **_: Any) -> None:
        pass

    def train(self, request: TrainRequest) -> TrainResult:
        CALLS["train"] += 1
        if KNOBS["fail_train"]:
            raise RuntimeError("fake training failed (KNOBS['fail_train'])")
        spec = request.spec
        rows = pd.read_csv(request.train_csv, dtype=str, keep_default_na=False)
        m = _ITER_CSV.search(str(request.train_csv))
        s = _settings(spec)
        n_epochs = int(spec["train"]["num_epochs"])
        out = Path(request.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        history = []
        paths = []
        for epoch in range(1, n_epochs + 1):
            ckpt = out / f"model_epoch_{epoch:03d}_step_{epoch * 10:03d}.pth"
            ckpt.write_text(json.dumps({
                "epoch": epoch, "label_counts": dict(Counter(rows["label"])), "n_rows": len(rows),
                "trained_iter": int(m.group(1)) if m else 0, "lights": list(s.lights), "image_ext": s.image_ext,
                "pretrained": spec["train"].get("pretrained_model_path"), "seed": request.seed}, sort_keys=True))
            val_loss = 1.0 / (epoch + len(rows) / 100.0)
            history.append({"epoch": epoch, "train_loss": val_loss, "val_loss": val_loss})
            paths.append(ckpt)
        best = paths[max(0, len(paths) - 2)]  # best_val differs from latest when there are 2+ epochs
        (out / "status.json").write_text(json.dumps({"best_val": str(best), "latest": str(paths[-1])}))
        return TrainResult(best_val_ckpt=best, latest_ckpt=paths[-1], epochs_run=n_epochs,
                           best_val_loss=float(history[-1]["val_loss"]), history=tuple(history))

    def infer(self, request: InferRequest) -> InferResult:
        CALLS["infer"] += 1
        state = json.loads(Path(request.checkpoint).read_text())
        rows = pd.read_csv(request.csv, dtype=str, keep_default_na=False)
        feats = _pair_features(rows, Path(request.images_dir), tuple(state["lights"]), state["image_ext"])
        seen = state["label_counts"]
        scores = feats[:, 0].copy()
        is_defect = (rows["label"] != "PASS").to_numpy()
        for i, lab in enumerate(rows["label"]):
            if lab == "PASS":
                continue
            scores[i] = scores[i] + KNOBS["gain"] if seen.get(lab) else scores[i] * KNOBS["unseen_scale"]
        regress = KNOBS["regress_from_iter"]
        if regress is not None and state["trained_iter"] >= regress:
            scores = feats[:, 0].copy()
        if KNOBS["mode"] == "nan":
            scores[:] = np.nan
        elif KNOBS["mode"] == "invert":
            scores = np.where(is_defect, -10.0 - feats[:, 0], 10.0 + feats[:, 0])
        rows["siamese_score"] = scores
        Path(request.out_csv).parent.mkdir(parents=True, exist_ok=True)
        rows.to_csv(request.out_csv, index=False, float_format="%.17g")
        n_def = int((rows["siamese_score"] > 0).sum())
        return InferResult(out_csv=Path(request.out_csv), n_rows=len(rows),
                           pred_counts={"PASS": len(rows) - n_def, "defect": n_def})

    def embed(self, request: EmbedRequest) -> np.ndarray:
        CALLS["embed"] += 1
        state = json.loads(Path(request.checkpoint).read_text())
        rows = pd.read_csv(request.csv, dtype=str, keep_default_na=False)
        feats = _pair_features(rows, Path(request.images_dir), tuple(state["lights"]), state["image_ext"])
        return (feats + 0.05).astype(np.float32)
