"""Fixtures for the state store tests: a FAR contract, a fresh run directory, a stage driver."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from deftpipe.state.store import StateStore

FAR_CONTRACT: dict[str, Any] = {
    "name": "far_pct",
    "display_name": "FAR at 100% recall",
    "operator": "<",
    "target": 5.0,
    "unit": "%",
    "evaluator": {"type": "builtin", "id": "far_at_recall"},
    "constraints": [{"name": "recall_pct", "display_name": "Recall", "operator": ">=", "target": 100.0, "unit": "%"}],
}

# the artifact each stage writes in these tests (iteration field -> file name)
STAGE_ARTIFACTS: dict[str, dict[str, str]] = {
    "train": {"best_ckpt_path": "train/model_epoch_001_step_001.pth"},
    "evaluate": {"inference_csv": "inference/best_val/inference.csv"},
    "rca": {"rca_gaps_parquet": "rca_results/T/kpi_gaps.parquet"},
    "routing": {"routing_mining_parquet": "routing_results/T/mining_gaps.parquet",
                "routing_sdg_parquet": "routing_results/T/sdg_gaps.parquet"},
    "sdg": {"sdg_result_csv": "sdg/SDG_result.csv"},
    "data_mining": {"mining_pool_csv": "mining_filter/mining_pool.csv"},
    "data_merge": {"combined_training_csv": "dataset/train_combined.csv"},
    "loop_stop": {},
}


def write_file(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def stage_artifacts(rd: Path, label: str, stage: str) -> dict[str, Path]:
    return {key: write_file(rd / label / rel) for key, rel in STAGE_ARTIFACTS[stage].items()}


def stage_fields(stage: str, *, passed: bool = False) -> dict[str, Any]:
    if stage != "evaluate":
        return {}
    value = 2.0 if passed else 20.0
    return {"threshold": 0.5, "far_pct": value,
            "metric_result": {"name": "far_pct", "value": value, "unit": "%", "passed": passed,
                              "constraints": {"recall_pct": 100.0}}}


def run_next(store: StateStore, *, passed: bool = False, duration: float = 1.2) -> tuple[str, str]:
    """Commit whatever `next_stage()` says, with its artifacts; returns (iter_label, stage)."""
    nxt = store.next_stage()
    assert nxt is not None
    label, stage = nxt
    store.commit(label, stage, artifacts=stage_artifacts(store.results_dir, label, stage),
                 fields=stage_fields(stage, passed=passed), summary=f"{stage} done", duration_sec=duration)
    return label, stage


def new_store(rd: Path, *, max_iterations: int = 2) -> StateStore:
    return StateStore.create(
        rd,
        kpi_target="FAR < 5% at Recall=100%",
        metric_contract=FAR_CONTRACT,
        max_iterations=max_iterations,
        config={"images_dir": str(rd.parent / "images"), "batch_size": 8, "num_epochs": 2, "device": "cpu"},
    )


@pytest.fixture
def rd(tmp_path: Path) -> Path:
    run = tmp_path / "ws" / "results" / "run_20260504_065500"
    run.mkdir(parents=True)
    return run.resolve()


@pytest.fixture
def store(rd: Path) -> StateStore:
    return new_store(rd)
