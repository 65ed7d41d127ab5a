"""`best_model.json`, the handoff to deployment (SPEC §4): exactly its keys, validated, written atomically.

Keys: checkpoint, threshold, metric_contract, metric_result, iteration, backbone,
backbone_container_path (null natively), backbone_type, backbone_frozen, images_dir,
training_spec; plus far_pct for the FAR contract and holdout_result when a holdout exists.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from deftpipe.errors import ContractError
from deftpipe.state._artifacts import check_artifact
from deftpipe.state.records import (
    MetricContractRecord,
    MetricResultRecord,
    format_validation_error,
    non_finite_field,
    to_plain,
)
from deftpipe.state.stages import is_iteration_label
from deftpipe.workspace.io import write_json_atomic

BEST_MODEL_FILE = "best_model.json"
REQUIRED_KEYS: tuple[str, ...] = (
    "checkpoint",
    "threshold",
    "metric_contract",
    "metric_result",
    "iteration",
    "backbone",
    "backbone_container_path",
    "backbone_type",
    "backbone_frozen",
    "images_dir",
    "training_spec",
)
OPTIONAL_KEYS: tuple[str, ...] = ("far_pct", "holdout_result")


def is_far_contract(metric_contract: Mapping[str, Any]) -> bool:
    """The default KPI family (FAR at a required recall): its primary metric is `far_pct`."""
    evaluator = metric_contract.get("evaluator") or {}
    return metric_contract.get("name") == "far_pct" or (
        isinstance(evaluator, Mapping) and evaluator.get("id") == "far_at_recall"
    )


class BestModelRecord(BaseModel):
    """The validated document; unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    checkpoint: str
    threshold: float
    metric_contract: MetricContractRecord
    metric_result: MetricResultRecord
    iteration: str
    backbone: str | None
    backbone_container_path: str | None
    backbone_type: str
    backbone_frozen: bool
    images_dir: str
    training_spec: str
    far_pct: float | None = None
    holdout_result: dict[str, Any] | None = None

    @field_validator("checkpoint", "images_dir", "training_spec")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not Path(v).is_absolute():
            raise ValueError(f"'{v}' must be an absolute path")
        return v

    @field_validator("threshold")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("threshold must be finite")
        return v

    @field_validator("iteration")
    @classmethod
    def _label(cls, v: str) -> str:
        if not is_iteration_label(v):
            raise ValueError(f"'{v}' is not an iteration label (baseline, iter<N>, final_automl)")
        return v


def _validate(doc: Mapping[str, Any], *, source: str) -> BestModelRecord:
    missing = [k for k in REQUIRED_KEYS if k not in doc]
    extra = [k for k in doc if k not in REQUIRED_KEYS + OPTIONAL_KEYS]
    if missing or extra:
        raise ContractError(
            f"{source}: keys must be exactly {list(REQUIRED_KEYS)} (+ far_pct for the FAR contract, "
            f"holdout_result with a holdout set); missing {missing}, unexpected {extra}."
        )
    try:
        rec = BestModelRecord.model_validate(dict(doc))
    except ValidationError as exc:
        raise ContractError(format_validation_error(exc, source=source)) from exc
    if is_far_contract(doc["metric_contract"]) and doc.get("far_pct") is None:
        raise ContractError(f"{source}: field 'far_pct' is required for the FAR metric contract.")
    return rec


def write_best_model(
    results_dir: Path | str,
    *,
    checkpoint: Path | str,
    threshold: float,
    metric_contract: Mapping[str, Any],
    metric_result: Mapping[str, Any],
    iteration: str,
    backbone_type: str,
    backbone_frozen: bool,
    images_dir: Path | str,
    training_spec: Path | str,
    backbone: Path | str | None = None,
    backbone_container_path: str | None = None,
    far_pct: float | None = None,
    holdout_result: Mapping[str, Any] | None = None,
) -> Path:
    """Validate and atomically write `RESULTS_DIR/best_model.json`; returns its path.

    `far_pct` defaults to `metric_result.value` under the FAR contract and is omitted otherwise.

    Raises:
        ContractError: the checkpoint or training spec is missing, empty or outside RESULTS_DIR,
            `images_dir` is not a folder, or a value breaks the schema.
    """
    rd = Path(results_dir).expanduser().resolve()
    where = str(rd / BEST_MODEL_FILE)
    ckpt = check_artifact(rd, "checkpoint", checkpoint, where=where)
    spec = check_artifact(rd, "training_spec", training_spec, where=where)
    images = Path(images_dir).expanduser()
    if not images.is_absolute() or not images.is_dir():
        raise ContractError(f"{where}: images_dir '{images_dir}' must be an existing absolute folder.")
    contract = to_plain(metric_contract)
    result = to_plain(metric_result)
    doc: dict[str, Any] = {
        "checkpoint": ckpt,
        "threshold": float(threshold),
        "metric_contract": contract,
        "metric_result": result,
        "iteration": iteration,
        "backbone": None if backbone is None else os.path.abspath(backbone),
        "backbone_container_path": backbone_container_path,
        "backbone_type": backbone_type,
        "backbone_frozen": backbone_frozen,
        "images_dir": str(images.resolve()),
        "training_spec": spec,
    }
    if is_far_contract(contract):
        doc["far_pct"] = far_pct if far_pct is not None else result.get("value")
    elif far_pct is not None:
        raise ContractError(f"{where}: far_pct is written only for the FAR metric contract "
                            f"(this contract's primary metric is '{contract.get('name')}').")
    if holdout_result is not None:
        doc["holdout_result"] = to_plain(holdout_result)
    bad = non_finite_field(doc)
    if bad is not None:
        raise ContractError(f"{where}: field '{bad}' is NaN or infinite; JSON holds finite numbers only.")
    _validate(doc, source=where)
    path = rd / BEST_MODEL_FILE
    write_json_atomic(path, doc)
    return path


def read_best_model(path: Path | str) -> BestModelRecord:
    """Read and validate a `best_model.json` (exact keys).

    Raises:
        ContractError: missing file, invalid JSON, or keys/values that break the contract.
    """
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ContractError(f"{p}: not found; finalize writes it before loop_stop.") from exc
    except json.JSONDecodeError as exc:
        raise ContractError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno}).") from exc
    if not isinstance(doc, dict):
        raise ContractError(f"{p}: expected a JSON object.")
    return _validate(doc, source=str(p))
