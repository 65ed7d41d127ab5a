from __future__ import annotations

import json
from pathlib import Path

import pytest

from deftpipe.errors import ContractError
from deftpipe.state.best_model import read_best_model, write_best_model

from .conftest import FAR_CONTRACT, write_file

BASE_KEYS = {"checkpoint", "threshold", "metric_contract", "metric_result", "iteration", "backbone",
             "backbone_container_path", "backbone_type", "backbone_frozen", "images_dir", "training_spec"}


def _write(rd: Path, **over):
    ckpt = write_file(rd / "iter1/train/model_epoch_002_step_010.pth")
    spec = write_file(rd / "specs/iter1_spec.yaml", b"train: {}\n")
    images = rd.parent.parent
    kwargs = dict(checkpoint=ckpt, threshold=0.25, metric_contract=FAR_CONTRACT,
                  metric_result={"name": "far_pct", "value": 3.5, "unit": "%", "passed": True,
                                 "constraints": {"recall_pct": 100.0}, "evidence_path": None},
                  iteration="iter1", backbone_type="resnet_18", backbone_frozen=False,
                  images_dir=images, training_spec=spec)
    kwargs.update(over)
    return write_best_model(rd, **kwargs)


def test_keys_exact_for_far_contract(rd: Path) -> None:
    path = _write(rd)
    doc = json.loads(path.read_text())
    assert set(doc) == BASE_KEYS | {"far_pct"}
    assert doc["far_pct"] == 3.5 and doc["backbone"] is None and doc["backbone_container_path"] is None
    assert Path(doc["checkpoint"]).is_absolute()
    assert read_best_model(path).iteration == "iter1"


def test_holdout_and_non_far_contract(rd: Path) -> None:
    contract = {**FAR_CONTRACT, "name": "quality_score", "operator": ">=", "target": 0.9, "unit": "",
                "evaluator": {"type": "command", "path": "/bin/true", "args": []}, "constraints": []}
    path = _write(rd, metric_contract=contract,
                  metric_result={"name": "quality_score", "value": 0.95, "unit": "", "passed": True},
                  holdout_result={"name": "quality_score", "value": 0.93})
    assert set(json.loads(path.read_text())) == BASE_KEYS | {"holdout_result"}
    with pytest.raises(ContractError, match="far_pct is written only for the FAR metric contract"):
        _write(rd, metric_contract=contract, far_pct=1.0,
               metric_result={"name": "quality_score", "value": 0.95, "unit": "", "passed": True})


def test_checkpoint_checked(rd: Path, tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="checkpoint.*does not exist"):
        _write(rd, checkpoint=rd / "nope.pth")
    with pytest.raises(ContractError, match="checkpoint.*outside RESULTS_DIR"):
        _write(rd, checkpoint=write_file(tmp_path / "x.pth"))
    assert not (rd / "best_model.json").exists()


def test_read_rejects_extra_or_missing_keys(rd: Path) -> None:
    path = _write(rd)
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "note": "x"}))
    with pytest.raises(ContractError, match=r"unexpected \['note'\]"):
        read_best_model(path)
    del doc["far_pct"]
    path.write_text(json.dumps(doc))
    with pytest.raises(ContractError, match="'far_pct' is required"):
        read_best_model(path)
    del doc["threshold"]
    path.write_text(json.dumps(doc))
    with pytest.raises(ContractError, match=r"missing \['threshold'\]"):
        read_best_model(path)
