"""A tiny deliverable for the fast deploy tests: a native checkpoint on `tests.helpers.make_workspace` (32 px,
two lights), the backend's KPI inference CSV, its FAR@100 threshold, and `best_model.json` written by
`deftpipe.state.write_best_model`. The slow end-to-end test uses a real `deftpipe deft` run instead."""
from __future__ import annotations
import json

from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@dataclass(frozen=True)
class TinyRun:
    ws: Path
    results_dir: Path
    checkpoint: Path
    train_csv: Path
    kpi_csv: Path
    kpi_inference_csv: Path
    threshold: float

    @property
    def images_dir(self) -> Path:
        return self.ws / "images"


def _untrained_checkpoint(path: Path, spec: dict) -> Path:
    """A checkpoint as the native trainer writes it, with freshly initialized weights (no optimizer: training
    once costs ~4 s of torch._dynamo imports, which the fast suite cannot afford; the slow suite uses a real run)."""
    import torch

    from deftpipe.backends.native.checkpoint import save_checkpoint
    from deftpipe.backends.native.data import Normalization
    from deftpipe.backends.native.model import LABEL_NAMES, ArchInfo, SiameseClassifier
    from deftpipe.workspace.spec import ImageSettings

    torch.manual_seed(0)
    img = ImageSettings.from_spec(spec)
    arch = ArchInfo("resnet_tiny", "learnable", "registered_diff", len(img.lights))
    model = SiameseClassifier(arch).eval()
    save_checkpoint(path, {
        "spec": spec, "arch": arch.to_dict(), "label_names": list(LABEL_NAMES),
        "normalization": Normalization.from_spec(spec, len(img.lights)).to_dict(),
        "preprocess": {"input_mode": arch.input_mode, "max_shift_px": 3, "tolerance": 1},
        "image": {"lights": list(img.lights), "image_ext": img.image_ext, "height": img.height,
                  "width": img.width, "grayscale": img.grayscale},
        "state_dict": model.state_dict(), "epoch": 1, "step": 2, "val_loss": None,
    })
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    import pandas as pd

    from deftpipe.backends import create_backend
    from deftpipe.backends.base import InferRequest
    from deftpipe.metrics.contract import default_far_contract
    from deftpipe.metrics.far import far_at_recall
    from deftpipe.state import write_best_model
    from deftpipe.workspace.spec import set_key
    from tests.helpers import make_workspace

    ws = make_workspace(tmp_path_factory.mktemp("deploy") / "ws", n_train=3, n_val=3, n_kpi=9)
    rd = ws / "results" / "run_20250101_000000"
    spec = yaml.safe_load((ws / "specs/baseline_spec.yaml").read_text())
    train_csv = ws / "train/base/training_set.csv"
    set_key(spec, "dataset.classify.train_dataset.csv_path", str(train_csv))
    spec_path = rd / "specs" / "baseline_train_spec.yaml"
    spec_path.parent.mkdir(parents=True)
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    checkpoint = _untrained_checkpoint(rd / "baseline/train/model_epoch_001_step_002.pth", spec)
    kpi_csv = ws / "kpi/testing_set.csv"
    inference = rd / "baseline/inference/best_val/inference.csv"
    create_backend("native").infer(InferRequest(checkpoint=checkpoint, csv=kpi_csv, images_dir=ws / "images",
                                                workspace_root=ws, out_csv=inference, device="cpu"))
    scored = pd.read_csv(inference)
    far = far_at_recall(scored["siamese_score"].to_numpy(), (scored["label"] != "PASS").to_numpy())
    contract = default_far_contract().to_dict()
    result = {"name": "far_pct", "value": far.far_pct, "unit": "%", "passed": far.far_pct < 5.0,
              "constraints": {"recall_pct": far.recall_pct}, "threshold": far.threshold}
    # Only what the deliverable reads from the state: where its KPI scores are (for the tie margin).
    (rd / "deft_state.json").write_text(json.dumps({"iterations": {"baseline": {"inference_csv": str(inference)}}}))
    write_best_model(rd, checkpoint=checkpoint, threshold=far.threshold, metric_contract=contract,
                     metric_result=result, iteration="baseline", backbone_type="resnet_tiny", backbone_frozen=False,
                     images_dir=ws / "images", training_spec=spec_path)
    return TinyRun(ws, rd, checkpoint, train_csv, kpi_csv, inference, far.threshold)


@pytest.fixture(scope="session")
def tiny_onnx(tiny_run: TinyRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from deftpipe.deploy import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    export_onnx(tiny_run.results_dir, out)
    return out
