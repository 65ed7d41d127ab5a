"""Issue #5 acceptance: on a real (native-backend) study, the winner's checkpoint reloads and reproduces its score.

The score in `best_rec.json` is only worth something if a fresh process, given nothing but the
copied checkpoint and the validation CSV, gets the same number back.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from deftpipe.automl import best_rec, run_automl

pytestmark = pytest.mark.slow


def test_winner_checkpoint_reproduces_its_validation_score(tmp_path: Path) -> None:
    from deftpipe.backends import create_backend
    from deftpipe.backends.base import InferRequest
    from deftpipe.demo import make_demo_workspace
    from deftpipe.metrics.contract import default_far_contract
    from deftpipe.metrics.evaluators import evaluate_inference_csv

    ws = tmp_path / "ws"
    make_demo_workspace(ws, scale="tiny", seed=0)
    res = run_automl(ws, algorithm="random", n_trials=2, epochs=2, seed=0, noise_rerun=False,
                     out_dir=tmp_path / "automl", backend="native", progress=False)

    doc = json.loads(res.best_rec_path.read_text())
    assert best_rec.schema_errors(doc) == []
    ckpt = Path(doc["best"]["checkpoint_uri"])
    assert ckpt == res.checkpoint and ckpt.parent.name == "best_checkpoint"

    # A fresh backend, the spec stored in the checkpoint, no shared cache: nothing carried over from the study.
    inf = create_backend("native").infer(InferRequest(
        checkpoint=ckpt, csv=ws / "train" / "base" / "validation_set.csv", images_dir=ws / "images", workspace_root=ws,
        out_csv=tmp_path / "reload" / "inference.csv"))
    metric = evaluate_inference_csv(Path(inf.out_csv), default_far_contract(),
                                    out_json=tmp_path / "reload" / "metric_result.json")
    assert doc["metric_name"] == metric.name and doc["direction"] == "minimize"
    assert metric.value == pytest.approx(doc["best"]["score"], abs=1e-9)
    assert metric.value == pytest.approx(res.score, abs=1e-9)
