"""The `deft_state.json` document of SPEC §4 as frozen, validated records.

`parse_state(doc)` migrates an older document, canonicalizes TAO spellings
(`anomalygen` → `sdg`) and validates it; a malformed file raises a
`ContractError` naming the field. Unknown extra keys are tolerated and kept.
"""
from __future__ import annotations

import copy
import math
import re
from dataclasses import asdict, is_dataclass
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from deftpipe.errors import ContractError
from deftpipe.state.stages import STAGE_ALIASES, is_iteration_label, normalize_stage

SCHEMA_VERSION = 4
FORMAT = "deftpipe/1"
STATE_FILE = "deft_state.json"
JOURNAL_FILE = "loop_log.jsonl"

RunStatus = Literal["in_progress", "complete", "failed"]
IterationStatus = Literal["pending", "in_progress", "complete", "failed"]
EventStatus = Literal["ok", "error"]

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def utc_now_iso() -> str:
    """Now as ISO-8601 with an explicit UTC offset, second precision (`2026-05-04T06:55:00+00:00`)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _check_iso(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"'{value}' is not an ISO-8601 timestamp") from exc
    if parsed.tzinfo is None:
        raise ValueError(f"'{value}' has no UTC offset (write e.g. 2026-05-04T06:55:00+00:00)")
    return value


def _check_abs(value: str | None) -> str | None:
    if value is not None and not Path(value).is_absolute():
        raise ValueError(f"'{value}' must be an absolute path")
    return value


def _stage_value(v: str, *, where: str) -> str:
    try:
        return normalize_stage(v, where=where)
    except ContractError as exc:  # pydantic reports ValueError with the field's location
        raise ValueError(exc.message) from None


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


# --- metric contract / result (owned by metrics/, validated here only as far as state needs) ---------


class ConstraintRecord(_Record):
    name: str
    display_name: str = ""
    operator: Literal["<", "<=", ">", ">="]
    target: float
    unit: str = ""


class MetricContractRecord(_Record):
    name: str
    display_name: str = ""
    operator: Literal["<", "<=", ">", ">="]
    target: float
    unit: str = ""
    evaluator: dict[str, Any] = Field(default_factory=dict)
    constraints: list[ConstraintRecord] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError(f"metric name '{v}' must match [a-z][a-z0-9_]*")
        return v

    @field_validator("target")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("target must be finite")
        return v


class MetricResultRecord(_Record):
    name: str
    value: float | None = None
    unit: str = ""
    passed: bool = False
    constraints: dict[str, Any] | list[Any] = Field(default_factory=dict)
    evidence_path: str | None = None


# --- config -----------------------------------------------------------------------------------------


class SdgConfigRecord(_Record):
    num_sdg: int = Field(default=20, ge=0)
    base: Literal["test", "golden"] = "test"
    generators: list[str] | dict[str, Any] = Field(default_factory=list)


class HistoryAwareRecord(_Record):
    enabled: bool = True
    identity: str = "filepath"
    history_file: str | None = None

    @field_validator("history_file")
    @classmethod
    def _abs_path(cls, v: str | None) -> str | None:
        return _check_abs(v)


class MiningFilterRecord(_Record):
    top_k_per_target: int = Field(default=5, ge=1)
    metric: str = "cosine"
    min_similarity: float = 0.9
    filter_by_label: bool = True
    history_aware: HistoryAwareRecord = Field(default_factory=HistoryAwareRecord)


PATH_CONFIG_KEYS: tuple[str, ...] = (
    "specs_file",
    "training_csv",
    "validation_csv",
    "kpi_test_csv",
    "images_dir",
    "mining_pool_csv",
    "mining_images_root",
)


class ConfigRecord(_Record):
    specs_file: str | None = None
    training_csv: str | None = None
    validation_csv: str | None = None
    kpi_test_csv: str | None = None
    images_dir: str | None = None
    mining_pool_csv: str | None = None
    mining_images_root: str | None = None
    batch_size: int | None = Field(default=None, ge=1)
    num_epochs: int | None = Field(default=None, ge=1)
    num_gpus: int = Field(default=0, ge=0)
    device: str | None = None
    sdg: SdgConfigRecord = Field(default_factory=SdgConfigRecord)
    mining_filter: MiningFilterRecord = Field(default_factory=MiningFilterRecord)
    regression_margin: float | None = None

    @field_validator(*PATH_CONFIG_KEYS)
    @classmethod
    def _abs_paths(cls, v: str | None) -> str | None:
        return _check_abs(v)


# --- iterations, events, halt -----------------------------------------------------------------------

#: Iteration fields that hold a path to an artifact: set through `StateStore.commit(artifacts=…)`,
#: which checks them (exist, non-empty, inside RESULTS_DIR) and stores them absolute.
ARTIFACT_FIELDS: tuple[str, ...] = (
    "best_ckpt_path",
    "inference_csv",
    "training_spec",
    "rca_gaps_parquet",
    "routing_mining_parquet",
    "routing_sdg_parquet",
    "sdg_result_csv",
    "sdg_allocation_json",
    "mining_pool_csv",
    "mining_summary",
    "combined_training_csv",
    "provenance_csv",
    "merge_validation_report",
)

#: Iteration fields holding values (set through `StateStore.commit(fields=…)`).
VALUE_FIELDS: tuple[str, ...] = (
    "best_ckpt_kind",
    "threshold",
    "metric_result",
    "far_pct",
    "val_loss",
    "rca_threshold",
    "rca_target_defects",
    "sdg_skipped",
    "mining_mined_count",
    "data_mining_skipped",
    "source",
    "train_metric",
    "error",
)


class IterationRecord(_Record):
    status: IterationStatus = "pending"
    stage_completed: str | None = None
    best_ckpt_path: str | None = None
    best_ckpt_kind: str | None = None
    threshold: float | None = None
    metric_result: MetricResultRecord | None = None
    far_pct: float | None = None
    val_loss: float | None = None
    inference_csv: str | None = None
    training_spec: str | None = None
    rca_gaps_parquet: str | None = None
    rca_threshold: float | None = None
    rca_target_defects: list[str] | None = None
    routing_mining_parquet: str | None = None
    routing_sdg_parquet: str | None = None
    sdg_result_csv: str | None = None
    sdg_allocation_json: str | None = None
    sdg_skipped: bool | None = None
    mining_pool_csv: str | None = None
    mining_summary: str | None = None
    mining_mined_count: int | None = Field(default=None, ge=0)
    data_mining_skipped: bool | None = None
    combined_training_csv: str | None = None
    provenance_csv: str | None = None
    merge_validation_report: str | None = None
    source: str | None = None
    train_metric: float | None = None
    error: str | None = None

    @field_validator("stage_completed")
    @classmethod
    def _stage(cls, v: str | None) -> str | None:
        return None if v is None else _stage_value(v, where="stage_completed")

    @field_validator(*ARTIFACT_FIELDS)
    @classmethod
    def _abs_paths(cls, v: str | None) -> str | None:
        return _check_abs(v)


class EventRecord(_Record):
    seq: int = Field(ge=1)
    ts: str
    iter: str
    stage: str
    status: EventStatus
    summary: str
    duration_sec: int = Field(ge=0)

    @field_validator("ts")
    @classmethod
    def _ts(cls, v: str) -> str:
        return _check_iso(v) or v

    @field_validator("stage")
    @classmethod
    def _stage(cls, v: str) -> str:
        return _stage_value(v, where="stage")

    @field_validator("iter")
    @classmethod
    def _iter(cls, v: str) -> str:
        if not is_iteration_label(v):
            raise ValueError(f"'{v}' is not an iteration label (baseline, iter<N>, final_automl)")
        return v


class HaltRecord(_Record):
    reason: str
    iter: str
    value: float | None = None
    best: float | None = None
    margin: float | None = None
    resume_command: str


class DeftState(_Record):
    """The whole `deft_state.json` document (frozen view; the store owns every write)."""

    version: int
    format: str = FORMAT
    started_at: str
    status: RunStatus
    kpi_target: str
    metric_contract: MetricContractRecord
    results_dir: str
    max_iterations: int = Field(ge=0)
    current_iteration: int = Field(default=0, ge=0)
    config: ConfigRecord = Field(default_factory=ConfigRecord)
    iterations: dict[str, IterationRecord] = Field(default_factory=dict)
    events: list[EventRecord] = Field(default_factory=list)
    halt: HaltRecord | None = None
    completed_at: str | None = None
    final_artifacts: dict[str, Any] | None = None

    @field_validator("started_at", "completed_at")
    @classmethod
    def _timestamps(cls, v: str | None) -> str | None:
        return _check_iso(v)

    @field_validator("results_dir")
    @classmethod
    def _abs_dir(cls, v: str) -> str:
        return _check_abs(v) or v

    @field_validator("iterations")
    @classmethod
    def _labels(cls, v: dict[str, IterationRecord]) -> dict[str, IterationRecord]:
        for label in v:
            if not is_iteration_label(label):
                raise ValueError(f"'{label}' is not an iteration label (baseline, iter<N>, final_automl)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> DeftState:
        for i, ev in enumerate(self.events, start=1):
            if ev.seq != i:
                raise ValueError(f"events[{i - 1}].seq is {ev.seq}, expected {i} (seq runs 1, 2, … without gaps)")
        if self.status == "complete" and self.completed_at is None:
            raise ValueError("status is 'complete' but completed_at is missing")
        return self

    @property
    def last_seq(self) -> int:
        return self.events[-1].seq if self.events else 0


# --- migrations, canonical form, parsing -------------------------------------------------------------

Migration = Callable[[dict[str, Any]], dict[str, Any]]
#: from-version -> function returning the document at from-version + 1. Register with `register_migration`.
MIGRATIONS: dict[int, Migration] = {}


def register_migration(from_version: int) -> Callable[[Migration], Migration]:
    """Register the step `from_version` → `from_version + 1` (explicit, one step at a time)."""

    def add(fn: Migration) -> Migration:
        if from_version in MIGRATIONS:
            raise ValueError(f"migration from version {from_version} registered twice")
        MIGRATIONS[from_version] = fn
        return fn

    return add


def migrate(doc: Mapping[str, Any], *, source: str = STATE_FILE) -> dict[str, Any]:
    """Bring an older document up to `SCHEMA_VERSION` and `FORMAT`; returns a new dict.

    Raises:
        ContractError: no version, a version newer than this deftpipe reads, or no migration path.
    """
    out = copy.deepcopy(dict(doc))
    version = out.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ContractError(f"{source}: field 'version' is missing or not an integer (got {version!r}); "
                            f"a deftpipe state file has version {SCHEMA_VERSION}.")
    if version > SCHEMA_VERSION:
        raise ContractError(
            f"{source}: schema version {version} is newer than this deftpipe supports ({SCHEMA_VERSION}); "
            "upgrade deftpipe to resume this run."
        )
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise ContractError(
                f"{source}: schema version {version} has no migration to {SCHEMA_VERSION}; "
                "start a new run (deftpipe run / deftpipe deft without --resume)."
            )
        out = step(out)
        if out.get("version") != version + 1:
            raise ContractError(f"{source}: migration from version {version} did not produce version {version + 1}.")
        version += 1
    if "format" not in out:
        out = _from_tao_v4(out)
    elif out["format"] != FORMAT:
        raise ContractError(f"{source}: field 'format' is '{out['format']}', expected '{FORMAT}'; "
                            "this file was not written by deftpipe or by a newer one.")
    return out


def _from_tao_v4(doc: dict[str, Any]) -> dict[str, Any]:
    """A TAO-skill state (version 4, no `format`): map `config.anomalygen` onto `config.sdg`."""
    cfg = doc.get("config")
    if isinstance(cfg, dict) and "anomalygen" in cfg and "sdg" not in cfg:
        ag = cfg["anomalygen"]
        if isinstance(ag, dict):
            cfg["sdg"] = {"num_sdg": ag.get("num_SDG", ag.get("num_sdg", 20)), "base": "golden"}
    doc["format"] = FORMAT
    return doc


def canonicalize(doc: dict[str, Any]) -> dict[str, Any]:
    """Rewrite TAO stage spellings in place (events, stage_completed) so that `sdg` is what gets written."""
    for ev in doc.get("events") or []:
        if isinstance(ev, dict) and ev.get("stage") in STAGE_ALIASES:
            ev["stage"] = STAGE_ALIASES[ev["stage"]]
    for rec in (doc.get("iterations") or {}).values():
        if isinstance(rec, dict) and rec.get("stage_completed") in STAGE_ALIASES:
            rec["stage_completed"] = STAGE_ALIASES[rec["stage_completed"]]
    return doc


def to_plain(obj: Any) -> Any:
    """A JSON-ready deep copy of records, dataclasses (or objects with `to_dict`) and paths."""
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if is_dataclass(obj) and not isinstance(obj, type):
        return to_plain(asdict(obj))
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict) and not isinstance(obj, Mapping):
        return to_plain(to_dict())
    if isinstance(obj, Mapping):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    return copy.deepcopy(obj)


def non_finite_field(obj: Any, prefix: str = "") -> str | None:
    """Dotted path of the first NaN/inf number in `obj` (JSON cannot hold them), else None."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return prefix or "(value)"
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            found = non_finite_field(v, f"{prefix}.{k}" if prefix else str(k))
            if found:
                return found
    if isinstance(obj, list):
        for i, v in enumerate(obj):
            found = non_finite_field(v, f"{prefix}[{i}]")
            if found:
                return found
    return None


def format_validation_error(exc: ValidationError, *, source: str) -> str:
    lines = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(document)"
        got = err.get("input")
        got_s = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
        lines.append(f"field '{loc}': {err['msg']} (got {got_s[:80]})")
    more = f"; and {len(exc.errors()) - 5} more" if len(exc.errors()) > 5 else ""
    return f"{source}: " + "; ".join(lines) + more


def parse_state(doc: Mapping[str, Any], *, source: str = STATE_FILE) -> tuple[dict[str, Any], DeftState]:
    """Migrate, canonicalize and validate a state document.

    Returns:
        The canonical document (what the store keeps and writes) and its frozen `DeftState` view.

    Raises:
        ContractError: the document is malformed; the message names the field and the fix.
    """
    if not isinstance(doc, Mapping):
        raise ContractError(f"{source}: expected a JSON object at top level, got {type(doc).__name__}.")
    canon = canonicalize(migrate(doc, source=source))
    bad = non_finite_field(canon)
    if bad is not None:
        raise ContractError(f"{source}: field '{bad}' is NaN or infinite; state values must be finite numbers "
                            "(or null when unknown).")
    try:
        view = DeftState.model_validate(canon)
    except ValidationError as exc:
        raise ContractError(
            format_validation_error(exc, source=source),
            hint="Restore the file from a backup or fix the named field; deftpipe never edits it by hand.",
        ) from exc
    return canon, view
