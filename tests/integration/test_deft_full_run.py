"""A complete two-iteration DEFT run on the tiny demo (fast fake backend) checked against SPEC §4 file by file
and field by field: run-directory layout, state fields, events, best_model.json and the growth of the
combined training CSV with its row-aligned provenance."""
from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from tests.unit.deft.loop_support import (
    demo_template,  # noqa: F401
    journal,
    read_rows,
    reference_run,
    state,
)

BEST_MODEL_KEYS = {"checkpoint", "threshold", "metric_contract", "metric_result", "iteration", "backbone",
                   "backbone_container_path", "backbone_type", "backbone_frozen", "images_dir", "training_spec",
                   "far_pct", "holdout_result"}  # far_pct: FAR contract; holdout_result: the demo has a holdout set
CKPT = re.compile(r"^model_epoch_\d{3,}_step_\d{3,}\.pth$")
STAGE_ORDER = [("baseline", "train"), ("baseline", "evaluate"), ("baseline", "rca"),
               *[("iter1", s) for s in ("routing", "sdg", "data_mining", "data_merge", "train", "evaluate", "rca")],
               *[("iter2", s) for s in ("routing", "sdg", "data_mining", "data_merge", "train", "evaluate")],
               ("iter2", "loop_stop")]


@pytest.fixture(scope="module")
def run2(demo_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    return reference_run(demo_template, tmp_path_factory.mktemp("full"), max_iterations=2)


def _one(folder: Path, pattern: str) -> Path:
    hits = sorted(folder.glob(pattern))
    assert len(hits) == 1, f"{folder}: expected one {pattern}, found {[h.name for h in hits]}"
    return hits[0]


def _nonempty(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 0, f"{path} missing or empty"


def test_run_completes_with_max_iterations(run2: Path) -> None:
    doc = state(run2)
    assert doc["status"] == "complete"
    assert doc["current_iteration"] == 2
    assert doc["events"][-1]["stage"] == "loop_stop"
    assert "max_iterations" in doc["events"][-1]["summary"]
    assert "halt" not in doc and "failure" not in doc


def test_run_directory_matches_spec_layout(run2: Path) -> None:
    for name in ("deft_state.json", "loop_log.jsonl", "best_model.json", "best_model_inference_spec.yaml",
                 "provenance.json", "iter1_summary.md", "iter2_summary.md", "DEFT_Loop_Report.html"):
        _nonempty(run2 / name)
    assert (run2 / "specs" / "baseline_spec.yaml").is_file()
    for label in ("baseline", "iter1", "iter2"):
        train = run2 / label / "train"
        names = sorted(p.name for p in train.iterdir())
        assert "status.json" in names
        assert [n for n in names if n != "status.json"] and all(CKPT.match(n) for n in names if n != "status.json")
        for kind in ("best_val", "latest"):
            _nonempty(run2 / label / "inference" / kind / "inference.csv")
        assert (run2 / "specs" / f"{label}_train_spec.yaml").is_file()
    for label in ("baseline", "iter1"):  # RCA feeds the next iteration: none after the last one
        rca = _one(run2 / label / "rca_results", "*")
        assert re.fullmatch(r"\d{8}_\d{6}", rca.name)
        for name in ("kpi_gaps.parquet", "threshold.txt", "metrics.json", "weak_samples_breakdown.txt"):
            _nonempty(rca / name)
    assert not (run2 / "iter2" / "rca_results").exists()
    for n in (1, 2):
        it = run2 / f"iter{n}"
        routing = _one(it / "routing_results", "*")
        for name in ("mining_gaps.parquet", "sdg_gaps.parquet", "routing_summary.txt"):
            assert (routing / name).is_file()
        for name in ("SDG_result.csv", "allocation.json"):
            _nonempty(it / "sdg" / name)
        for name in ("mining_pool.csv", "knn_summary.csv", "source_embeddings.parquet", "target_embeddings.parquet",
                     "mining_summary.txt"):
            _nonempty(it / "mining_filter" / name)
        for name in (f"train_combined_iter{n}.csv", f"train_combined_iter{n}_provenance.csv", "merge_validation.json"):
            _nonempty(it / "dataset" / name)
        ng, ok = it / "dataset" / "images" / f"synthetic_iter{n}_ng", it / "dataset" / "images" / f"synthetic_iter{n}_ok"
        ng_names, ok_names = sorted(p.name for p in ng.iterdir()), sorted(p.name for p in ok.iterdir())
        assert ng_names and ng_names == ok_names  # golden under the same name as its test image
        sdg = read_rows(it / "mining_filter" / "mining_pool.csv")
        sdg = sdg[sdg["origin"] == "sdg"]
        expected = {f"{obj}_{light}.png" for obj in sdg["object_name"] for light in ("LightA", "LightB")}
        assert set(ng_names) == expected
        assert set(sdg["input_path"]) == {f"results/{run2.name}/iter{n}/dataset/images/synthetic_iter{n}_ng"}
        assert set(sdg["golden_path"]) == {f"results/{run2.name}/iter{n}/dataset/images/synthetic_iter{n}_ok"}
        summary = (run2 / f"iter{n}_summary.md").read_text()
        assert len(summary.split()) <= 300 and "rows added" in summary


def test_state_top_level_and_config_fields(run2: Path) -> None:
    doc = state(run2)
    assert doc["version"] == 4 and doc["format"] == "deftpipe/1"
    for key in ("started_at", "completed_at"):
        assert datetime.fromisoformat(doc[key]).utcoffset() is not None
    assert doc["kpi_target"] == "FAR < 0% at Recall=100%"
    assert doc["metric_contract"]["name"] == "far_pct" and doc["metric_contract"]["operator"] == "<"
    assert Path(doc["results_dir"]) == run2 and doc["max_iterations"] == 2
    cfg = doc["config"]
    for key in ("specs_file", "training_csv", "validation_csv", "kpi_test_csv", "images_dir", "mining_pool_csv",
                "mining_images_root"):
        assert Path(cfg[key]).is_absolute() and Path(cfg[key]).exists(), key
    assert cfg["num_epochs"] == 2 and isinstance(cfg["batch_size"], int) and cfg["num_gpus"] == 0
    assert cfg["device"] == "auto"
    assert cfg["sdg"]["num_sdg"] == 8 and cfg["sdg"]["base"] == "test" and "generators" in cfg["sdg"]
    mf = cfg["mining_filter"]
    assert (mf["top_k_per_target"], mf["metric"], mf["min_similarity"], mf["filter_by_label"]) == (5, "cosine", 0.9, True)
    assert set(mf["history_aware"]) == {"enabled", "identity", "history_file"}
    assert "regression_margin" in cfg
    final = doc["final_artifacts"]
    assert Path(final["best_model_json"]) == run2 / "best_model.json"
    for path in final.values():
        assert Path(path).is_file() and Path(path).resolve().is_relative_to(run2)


def _check_paths_inside(run2: Path, rec: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        p = Path(rec[key])
        assert p.is_absolute() and p.exists() and p.resolve().is_relative_to(run2), (key, p)


def test_iteration_fields(run2: Path) -> None:
    its = state(run2)["iterations"]
    assert list(its) == ["baseline", "iter1", "iter2"]
    eval_keys = ("best_ckpt_path", "inference_csv", "training_spec")
    for label, rec in its.items():
        assert rec["status"] == "complete"
        _check_paths_inside(run2, rec, eval_keys)
        assert Path(rec["best_ckpt_path"]).parent == run2 / label / "train"
        assert rec["best_ckpt_kind"] in ("best_val", "latest")
        assert Path(rec["inference_csv"]) == run2 / label / "inference" / rec["best_ckpt_kind"] / "inference.csv"
        mr = rec["metric_result"]
        assert {"name", "value", "unit", "passed", "constraints", "evidence_path"} <= set(mr)
        assert rec["far_pct"] == mr["value"] and isinstance(rec["threshold"], float)
        assert isinstance(rec["val_loss"], float)
    assert its["baseline"]["stage_completed"] == "rca" and its["iter1"]["stage_completed"] == "rca"
    assert its["iter2"]["stage_completed"] == "loop_stop"
    for label in ("baseline", "iter1"):
        rec = its[label]
        _check_paths_inside(run2, rec, ("rca_gaps_parquet",))
        assert isinstance(rec["rca_threshold"], float) and isinstance(rec["rca_target_defects"], list)
    assert "rca_gaps_parquet" not in its["iter2"]
    assert its["baseline"]["rca_target_defects"][:2] == ["bridge", "foreign_material"]  # the demo's planted gaps
    for label in ("iter1", "iter2"):
        rec = its[label]
        _check_paths_inside(run2, rec, ("routing_mining_parquet", "routing_sdg_parquet", "sdg_result_csv",
                                        "sdg_allocation_json", "mining_pool_csv", "mining_summary",
                                        "combined_training_csv", "provenance_csv", "merge_validation_report"))
        assert rec["sdg_skipped"] is False and rec["data_mining_skipped"] is False
        assert isinstance(rec["mining_mined_count"], int)
    assert its["iter1"]["mining_mined_count"] > 0
    # the fake model learns the gap labels once they are in the training set: the loop must show it
    assert its["iter1"]["metric_result"]["value"] < its["baseline"]["metric_result"]["value"]


def test_events_are_gap_free_ordered_and_journalled(run2: Path) -> None:
    events = state(run2)["events"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [(e["iter"], e["stage"]) for e in events] == STAGE_ORDER
    for e in events:
        assert e["status"] == "ok" and e["summary"].strip() and "\n" not in e["summary"]
        assert isinstance(e["duration_sec"], int) and not isinstance(e["duration_sec"], bool)
        assert e["duration_sec"] >= 1
        assert datetime.fromisoformat(e["ts"]).utcoffset() is not None
    assert journal(run2) == events


def test_best_model_json_has_exactly_the_spec_keys(run2: Path) -> None:
    doc = state(run2)
    bm = json.loads((run2 / "best_model.json").read_text())
    assert set(bm) == BEST_MODEL_KEYS
    best = bm["iteration"]
    rec = doc["iterations"][best]
    assert best in ("iter1", "iter2")  # both beat the baseline; the contract picks, not "the latest"
    assert bm["checkpoint"] == rec["best_ckpt_path"] and bm["threshold"] == rec["threshold"]
    assert bm["metric_result"]["value"] == rec["metric_result"]["value"] == bm["far_pct"]
    assert bm["metric_contract"] == doc["metric_contract"]
    assert bm["backbone_container_path"] is None and bm["images_dir"] == doc["config"]["workspace_root"]
    assert bm["training_spec"] == rec["training_spec"]
    inf = yaml.safe_load((run2 / "best_model_inference_spec.yaml").read_text())
    assert inf["inference"]["checkpoint"] == bm["checkpoint"]
    aug = inf["dataset"]["classify"]["augmentation_config"]
    assert all(v == 0.0 for k, v in aug.items() if k.endswith("_probability"))


def test_iteration_specs_init_from_best_so_far_and_use_workspace_root(run2: Path) -> None:
    doc = state(run2)
    its = doc["iterations"]
    for label, init in (("baseline", None), ("iter1", its["baseline"]["best_ckpt_path"]),
                        ("iter2", its["iter1"]["best_ckpt_path"])):
        spec = yaml.safe_load(Path(its[label]["training_spec"]).read_text())
        assert spec["train"]["pretrained_model_path"] == init, label
        assert spec["dataset"]["classify"]["images_dir"] == doc["config"]["workspace_root"]
        if label != "baseline":
            assert spec["dataset"]["classify"]["train_dataset"]["csv_path"] == its[label]["combined_training_csv"]


def test_combined_csv_grows_monotonically_with_aligned_provenance(run2: Path) -> None:
    doc = state(run2)
    base = read_rows(doc["config"]["training_csv"])
    rebased = base.copy()
    for col in ("input_path", "golden_path"):
        rebased[col] = "images/" + rebased[col]
    c1 = read_rows(run2 / "iter1/dataset/train_combined_iter1.csv")
    c2 = read_rows(run2 / "iter2/dataset/train_combined_iter2.csv")
    p1 = read_rows(run2 / "iter1/dataset/train_combined_iter1_provenance.csv")
    p2 = read_rows(run2 / "iter2/dataset/train_combined_iter2_provenance.csv")
    cols = list(base.columns)
    pd.testing.assert_frame_equal(c1[cols].iloc[: len(base)].reset_index(drop=True), rebased[cols])
    pd.testing.assert_frame_equal(c2[list(c1.columns)].iloc[: len(c1)], c1)
    assert len(c1) > len(base) and len(c2) > len(c1)
    assert not c1["input_path"].str.startswith("images/images/").any()
    for combined, prov, n_prev, first in ((c1, p1, len(base), "base_train"), (c2, p2, len(c1), "previous_iter_train")):
        assert len(prov) == len(combined)
        assert (prov["input_path"] == combined["input_path"]).all()
        assert (prov["object_name"] == combined["object_name"]).all()
        assert set(prov["source"].iloc[:n_prev]) == {first} and set(prov["source"].iloc[n_prev:]) == {"mining_pool"}
    assert set(p1["origin"].iloc[: len(base)]) == {"base"}
    assert (p2["origin"].iloc[: len(c1)].to_numpy() == p1["origin"].to_numpy()).all()
    for n, combined, prov, n_prev in ((1, c1, p1, len(base)), (2, c2, p2, len(c1))):
        pool = read_rows(run2 / f"iter{n}/mining_filter/mining_pool.csv")
        added = combined.iloc[n_prev:].reset_index(drop=True)
        assert list(added["object_name"]) == list(pool["object_name"])
        assert list(prov["origin"].iloc[n_prev:]) == list(pool["origin"])
        assert set(pool["origin"]) == {"sdg", "mined"}
    validation = json.loads((run2 / "iter1/dataset/merge_validation.json").read_text())
    assert validation["status"] == "ok" and validation["rows_checked"] == len(c1)
    for key in ("training_csv", "validation_csv", "missing_file_count", "train_val_leakage_overlap_count",
                "train_kpi_leakage_overlap_count"):
        assert key in validation
    assert validation["missing_file_count"] == validation["train_kpi_leakage_overlap_count"] == 0
