"""Bridge pieces in isolation (SPEC §7): settings validation, the saved run config and its hash, the Phase 1 -> 2
handoff (merged spec, checkpoint copy under the naming rule) and the Phase 2 -> 3 inputs (never final_automl)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from deftpipe.errors import ConfigError, ContractError
from deftpipe.pipeline import handoff
from deftpipe.pipeline.run import CONFIG_FILE, PipelineSettings, load_config, save_config
from deftpipe.workspace.layout import Workspace
from deftpipe.workspace.spec import load_spec
from tests.unit.pipeline.support import sha256

# --- settings and the saved config ---------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"zero_shot_gate": "stop"}, r"--zero-shot-gate is 'stop'; choose warn or halt"),
    ({"max_iterations": -1}, r"--max-iterations must be >= 0, got -1"),
    ({"recommendations": 0}, r"--recommendations must be >= 1, got 0"),
])
def test_bad_settings_are_refused_with_the_flag_named(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        PipelineSettings(workspace=tmp_path, **{"max_iterations": 1, **kwargs})


def test_epochs_pin_the_training_budget_on_top_of_user_overrides(tmp_path: Path) -> None:
    ps = PipelineSettings(workspace=tmp_path, max_iterations=1, epochs=3, overrides=("train.optim.lr=0.01",))
    assert ps.spec_overrides() == ["train.optim.lr=0.01", "train.num_epochs=3", "train.checkpoint_interval=1",
                                   "train.validation_interval=1"]
    assert PipelineSettings(workspace=tmp_path, max_iterations=1).spec_overrides() == []


def test_saved_config_round_trips_and_carries_the_sha256_of_its_settings(tmp_path: Path) -> None:
    ps = PipelineSettings(workspace=tmp_path / "ws", max_iterations=2, recommendations=3, algorithm="random",
                          zero_shot_gate="halt", seed=7, epochs=2, noise_rerun=False, backend="fake_pipeline",
                          overrides=("train.optim.lr=0.01",), phase3_warm_start=False)
    rd = tmp_path / "run"
    digest = save_config(rd, ps)
    doc = json.loads((rd / CONFIG_FILE).read_text())
    assert doc["sha256"] == digest == hashlib.sha256(json.dumps(doc["settings"], sort_keys=True).encode()).hexdigest()
    assert doc["settings"]["workspace"] == str((tmp_path / "ws").resolve())
    back = load_config(rd)
    assert back == PipelineSettings(**{**ps.__dict__, "workspace": (tmp_path / "ws").resolve()})
    assert back.phase3_warm_start is False and back.overrides == ("train.optim.lr=0.01",)


def test_load_config_names_the_folder_when_it_is_not_a_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pipeline_config\.json not found: .* is not a `deftpipe run` directory"):
        load_config(tmp_path)


# --- Phase 1 -> 2 ---------------------------------------------------------------------------------------------


def _best_rec(ckpt: Path, *, epoch: int = 7, step: int = 70) -> dict:
    return {"best": {"rec_id": "trial_0001", "score": 1.5, "checkpoint_uri": str(ckpt), "checkpoint_epoch": epoch,
                     "checkpoint_step": step,
                     "specs": {"train": {"optim": {"lr": 0.0042, "weight_decay": 1e-5}}}}}


def test_merged_spec_overlays_the_winner_and_never_touches_the_user_spec(tiny_ws: Path, tmp_path: Path) -> None:
    ws = Workspace.at(tiny_ws)
    user_spec = tiny_ws / "specs" / "baseline_spec.yaml"
    before = sha256(user_spec)
    original = load_spec(user_spec, ["train.num_epochs=2"])
    spec = handoff.merged_spec(ws, _best_rec(tmp_path / "x.pth"), ["train.num_epochs=2"])
    assert spec["train"]["optim"]["lr"] == 0.0042 and spec["train"]["optim"]["weight_decay"] == 1e-5
    assert spec["train"]["num_epochs"] == 2  # overrides applied, budget not taken from the winner
    # everything the winner does not set is the user's
    assert spec["dataset"] == original["dataset"]
    assert spec["train"]["optim"].get("optim") == original["train"]["optim"].get("optim")
    assert {**spec["train"]["optim"], "lr": None, "weight_decay": None} == \
        {**original["train"]["optim"], "lr": None, "weight_decay": None}
    rd = tiny_ws / "results" / "run_x"
    path = handoff.write_merged_spec(rd, ws, spec)
    assert path == rd / "specs" / "baseline_spec_automl.yaml"
    latest = tiny_ws / "specs" / "baseline_spec_automl.yaml"
    assert path.read_bytes() == latest.read_bytes()
    assert yaml.safe_load(path.read_text())["train"]["optim"]["lr"] == 0.0042
    assert sha256(user_spec) == before


def test_winner_checkpoint_is_copied_under_the_naming_rule(tmp_path: Path) -> None:
    src = tmp_path / "automl_phase1" / "best_checkpoint" / "model_epoch_7_step_70.pth"
    src.parent.mkdir(parents=True)
    src.write_bytes(b"weights" * 100)
    dest = handoff.copy_winner_checkpoint(_best_rec(src), tmp_path / "run")
    assert dest == tmp_path / "run" / "baseline" / "train" / "model_epoch_007_step_070.pth"
    assert dest.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]  # no .partial left behind


@pytest.mark.parametrize("content", [None, b""])
def test_missing_or_empty_winner_checkpoint_is_refused(tmp_path: Path, content: bytes | None) -> None:
    src = tmp_path / "model_epoch_001_step_010.pth"
    if content is not None:
        src.write_bytes(content)
    with pytest.raises(ContractError, match=r"Phase 1 winner checkpoint .*model_epoch_001_step_010\.pth is missing "
                                            r"or empty"):
        handoff.copy_winner_checkpoint(_best_rec(src), tmp_path / "run")
    assert not (tmp_path / "run" / "baseline").exists()


# --- Phase 2 -> 3 ---------------------------------------------------------------------------------------------


def _doc(rd: Path, *, best: str, combined: tuple[str, ...]) -> dict:
    its: dict = {"baseline": {"best_ckpt_path": str(rd / "baseline/train/b.pth")}}
    for k in (1, 2):
        its[f"iter{k}"] = {"best_ckpt_path": str(rd / f"iter{k}/train/c.pth")}
        if f"iter{k}" in combined:
            its[f"iter{k}"]["combined_training_csv"] = str(rd / f"iter{k}/dataset/train_combined_iter{k}.csv")
    its["final_automl"] = {"best_ckpt_path": str(rd / "final_automl/best_checkpoint/f.pth")}
    (rd / "best_model.json").parent.mkdir(parents=True, exist_ok=True)
    (rd / "best_model.json").write_text(json.dumps({"iteration": best}))
    return {"iterations": its, "final_artifacts": {"best_model_json": str(rd / "best_model.json")}}


def test_phase3_trains_on_the_last_combined_csv_from_the_best_iteration(tmp_path: Path) -> None:
    doc = _doc(tmp_path, best="iter1", combined=("iter1", "iter2"))
    train_csv, warm, label = handoff.phase3_inputs(doc, tmp_path)
    assert train_csv == tmp_path / "iter2/dataset/train_combined_iter2.csv"  # the augmented set, not the best's
    assert (warm, label) == (tmp_path / "iter1/train/c.pth", "iter1")


def test_phase3_uses_the_base_csv_when_the_baseline_met_the_kpi(tmp_path: Path) -> None:
    train_csv, warm, label = handoff.phase3_inputs(_doc(tmp_path, best="baseline", combined=()), tmp_path)
    assert train_csv == tmp_path / "inputs" / "training.csv"
    assert (warm, label) == (tmp_path / "baseline/train/b.pth", "baseline")


def test_phase3_never_warm_starts_from_final_automl(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match=r"DEFT finished without a deliverable; Phase 3 needs one"):
        handoff.phase3_inputs(_doc(tmp_path, best="final_automl", combined=("iter1",)), tmp_path)
