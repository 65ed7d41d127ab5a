from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from deftpipe.automl import best_rec
from deftpipe.automl.objective import TrialContext, run_trial
from deftpipe.automl.space import resolve_space
from deftpipe.errors import ContractError
from deftpipe.metrics.contract import default_far_contract
from deftpipe.workspace.spec import load_spec
from tests.conftest import SHARED, require_all
from tests.unit.automl.fake_backend import FakeBackend

REFERENCE = SHARED / "reference" / "tao" / "best_rec.schema.json"


def _doc() -> dict[str, Any]:
    return best_rec.build(
        experiment_id="s", metric_name="far_pct", direction="minimize", rec_id="trial_0003", score=2.5,
        specs={"train": {"optim": {"lr": 1e-3}}}, observed_budget={"num_epochs": 9},
        checkpoint_uri=Path("/x/model_epoch_009_step_090.pth"), checkpoint_epoch=9, checkpoint_step=90,
        all_recs=[{"rec_id": "trial_0003", "score": 2.5}, {"rec_id": "trial_0004", "score": None}])


def test_embedded_schema_equals_the_reference() -> None:
    if not REFERENCE.exists():
        if require_all():
            pytest.fail(f"{REFERENCE} missing")
        pytest.skip(f"{REFERENCE} not present")
    assert best_rec.SCHEMA == json.loads(REFERENCE.read_text())


@pytest.mark.parametrize(("mutate", "pattern"), [
    (lambda d: d.update(extra=1), "unexpected key 'extra'"),
    (lambda d: d["best"].update(threshold=0.1), "unexpected key 'threshold'"),
    (lambda d: d["best"].update(score=None), r"\$\.best\.score: expected number"),
    (lambda d: d["best"].update(specs={"train.optim.lr": 1e-3}), "does not match"),
    (lambda d: d["best"].update(specs={"train": {"optim.lr": 1e-3}}), "contains a dot"),
    (lambda d: d["best"].update(checkpoint_epoch=True), "expected integer"),
    (lambda d: d["best"].update(checkpoint_step=-1), "below the minimum"),
    (lambda d: d.update(direction="down"), "must be one of"),
    (lambda d: d.update(schema_version=2), "must be 1"),
    (lambda d: d["all_recs"].append({"rec_id": "x", "score": 1, "note": "n"}), "unexpected key 'note'"),
])
def test_validator_rejects_what_the_schema_rejects(mutate: Any, pattern: str) -> None:
    doc = copy.deepcopy(_doc())
    mutate(doc)
    with pytest.raises(ContractError, match=pattern):
        best_rec.validate(doc)


def test_winning_specs_are_nested_with_lists_whole_and_budget_stripped() -> None:
    trial_spec = {"train": {"num_epochs": 4, "optim": {"lr": 1e-3}, "classify": {"cls_weight": [1.0, 6.0]}}}
    specs = best_rec.winning_specs({"train.optim.lr": 1e-3, "train.classify.cls_weight.1": 6.0,
                                    "train.num_epochs": 4}, {"train.num_epochs": 4}, trial_spec)
    assert specs == {"train": {"optim": {"lr": 1e-3}, "classify": {"cls_weight": [1.0, 6.0]}}}


def _ctx(ws: Path, backend: FakeBackend, *, warm: Path | None = None) -> TrialContext:
    spec = load_spec(ws / "specs/baseline_spec.yaml")
    return TrialContext(base_spec=spec, space=resolve_space(spec, epochs=3), workspace_root=ws,
                        images_dir=ws / "images", train_csv=ws / "train/base/training_set.csv",
                        val_csv=ws / "train/base/validation_set.csv", contract=default_far_contract(),
                        backend=backend, warm_start=warm)


PARAMS = {"train.optim.lr": 1e-3, "train.optim.weight_decay": 1e-4, "train.optim.optim": "adamw",
          "train.classify.cls_weight.1": 4.0}


def test_trial_scores_both_candidates_and_keeps_the_better(ws: Path, fast_tmp: Path) -> None:
    warm = fast_tmp / "warm.pth"
    warm.write_text("{}")
    fake = FakeBackend()
    out = run_trial(_ctx(ws, fake, warm=warm), trial_dir=fast_tmp / "trial_0000", params=PARAMS, seed=0)
    assert out.state == "complete" and out.eligible
    assert set(out.candidates) == {"best_val", "latest"}
    assert all(Path(fast_tmp / "trial_0000/inference" / k / "metric_result.json").is_file() for k in out.candidates)
    best_kind = min(out.candidates, key=lambda k: out.candidates[k]["score"])
    assert out.score == out.candidates[best_kind]["score"]
    spec = yaml.safe_load((fast_tmp / "trial_0000/spec.yaml").read_text())
    assert spec["train"]["pretrained_model_path"] == str(warm.resolve())
    assert spec["train"]["num_epochs"] == 3 and spec["train"]["classify"]["cls_weight"] == [1.0, 4.0]
    assert out.checkpoint_epoch is not None and out.checkpoint_step == out.checkpoint_epoch * 10


class _LastEpochBest(FakeBackend):
    """Training whose last epoch is also its best: best_val and latest are one file."""

    def train(self, request: Any) -> Any:
        import dataclasses

        res = super().train(request)
        return dataclasses.replace(res, best_val_ckpt=res.latest_ckpt)


def test_when_latest_is_best_val_it_is_scored_once_and_both_candidates_agree(ws: Path, fast_tmp: Path) -> None:
    fake = _LastEpochBest()
    out = run_trial(_ctx(ws, fake), trial_dir=fast_tmp / "t", params=PARAMS, seed=0)
    assert out.state == "complete" and len(fake.infer_requests) == 1  # one validation inference, not two
    assert out.candidates["best_val"]["score"] == out.candidates["latest"]["score"] == out.score
    assert out.candidates["best_val"]["pred_counts"] == out.candidates["latest"]["pred_counts"]
    for kind in ("best_val", "latest"):
        assert (fast_tmp / "t/inference" / kind / "inference.csv").is_file()
        assert (fast_tmp / "t/inference" / kind / "metric_result.json").is_file()


def test_collapsed_predictions_disqualify(ws: Path, fast_tmp: Path) -> None:
    fake = FakeBackend(collapse_if=lambda p: True)
    out = run_trial(_ctx(ws, fake), trial_dir=fast_tmp / "t", params=PARAMS, seed=0)
    assert out.state == "disqualified" and not out.eligible
    assert out.pred_counts["defect"] == 0 and "collapse" in (out.error or "")


def test_exception_makes_the_trial_failed_without_score(ws: Path, fast_tmp: Path) -> None:
    fake = FakeBackend(fail_if=lambda p: True)
    out = run_trial(_ctx(ws, fake), trial_dir=fast_tmp / "t", params=PARAMS, seed=0)
    assert out.state == "failed" and out.score is None and not out.eligible
    assert "diverged" in (out.error or "") and (fast_tmp / "t/error.txt").is_file()


def test_pruning_stops_training_and_skips_scoring(ws: Path, fast_tmp: Path) -> None:
    fake = FakeBackend()
    out = run_trial(_ctx(ws, fake), trial_dir=fast_tmp / "t", params=PARAMS, seed=0,
                    on_epoch=lambda epoch, loss: epoch >= 1)
    assert out.state == "pruned" and out.epochs_run == 1 and out.score is None
    assert fake.infer_requests == []
