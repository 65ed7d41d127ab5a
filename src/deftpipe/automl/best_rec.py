"""`best_rec.json` (SPEC §6): build it, validate it against TAO's schema, write it atomically.

The schema below is a verbatim copy of `reference/tao/best_rec.schema.json` (a test
keeps them equal); `validate` implements the JSON-Schema constructs it uses, with
additional properties rejected. Nothing is written unless the document validates.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deftpipe.automl.space import BUDGET_KEYS
from deftpipe.errors import ContractError
from deftpipe.workspace.io import write_json_atomic

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "tao://artifacts/best_rec.schema.json",
    "title": "TAO AutoML best_rec",
    "description": "The read side of the AutoML -> downstream (e.g. DEFT warm-start) seam, emitted by tao-run-automl's "
                   "best_rec adapter after AutoMLRunner (separate nvidia-tao-automl wheel) finishes. DEFT's own loop "
                   "state stays in deft_state.json.",
    "type": "object",
    "required": ["schema_version", "experiment_id", "metric_name", "direction", "best", "all_recs"],
    "additionalProperties": False,
    "properties": {
        "schema_version": {"const": 1},
        "experiment_id": {"type": "string", "minLength": 1},
        "metric_name": {
            "type": "string", "minLength": 1,
            "description": "Explicit metric identity (e.g. far_at_100_recall, val_loss) — a bare number without "
                           "name+direction is a contract violation.",
        },
        "direction": {"enum": ["maximize", "minimize"]},
        "best": {
            "type": "object",
            "required": ["rec_id", "score", "specs", "observed_budget", "checkpoint_uri"],
            "additionalProperties": False,
            "properties": {
                "rec_id": {"type": "string", "minLength": 1},
                "score": {"type": "number"},
                "specs": {
                    "type": "object",
                    "propertyNames": {"pattern": "^[^.]+$"},
                    "description": "The winning HPs as a NESTED dict with budget keys (num_epochs etc.) STRIPPED — "
                                   "ASHA/hyperband mutate the budget per rung, and a rung budget deep-merged into a "
                                   "baseline spec silently overwrites the real epoch count.",
                },
                "observed_budget": {
                    "type": "object",
                    "description": "The budget the winning trial actually ran at (e.g. {\"num_epochs\": 10}), kept "
                                   "SEPARATE from specs.",
                },
                "checkpoint_uri": {"type": "string", "minLength": 1},
                "checkpoint_epoch": {"type": "integer", "minimum": 0},
                "checkpoint_step": {"type": "integer", "minimum": 0},
            },
        },
        "all_recs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["rec_id", "score"],
                "additionalProperties": False,
                "properties": {
                    "rec_id": {"type": "string", "minLength": 1},
                    "score": {"type": ["number", "null"]},
                    "job_id": {"type": "string", "description": "Links to .tao/jobs/<id>.json via parent_job."},
                },
            },
        },
    },
}

_TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, Mapping),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def schema_errors(doc: Any, schema: Mapping[str, Any] = SCHEMA, path: str = "$") -> list[str]:
    """Every violation of `schema` in `doc` (type, const, enum, required, properties, additionalProperties,
    propertyNames.pattern, items, minLength, minimum), as 'path: problem' strings."""
    errs: list[str] = []
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](doc) for t in types):
            return [f"{path}: expected {' or '.join(types)}, got {type(doc).__name__} {doc!r}"]
    if "const" in schema and not (doc == schema["const"] and type(doc) is type(schema["const"])):
        errs.append(f"{path}: must be {schema['const']!r}, got {doc!r}")
    if "enum" in schema and doc not in schema["enum"]:
        errs.append(f"{path}: must be one of {schema['enum']}, got {doc!r}")
    if isinstance(doc, str) and len(doc) < schema.get("minLength", 0):
        errs.append(f"{path}: shorter than {schema['minLength']} character(s)")
    if "minimum" in schema and _TYPES["number"](doc) and doc < schema["minimum"]:
        errs.append(f"{path}: {doc} is below the minimum {schema['minimum']}")
    if isinstance(doc, Mapping):
        for key in schema.get("required", ()):
            if key not in doc:
                errs.append(f"{path}: missing required key '{key}'")
        props = schema.get("properties", {})
        for key, value in doc.items():
            if key in props:
                errs.extend(schema_errors(value, props[key], f"{path}.{key}"))
            elif schema.get("additionalProperties") is False:
                errs.append(f"{path}: unexpected key '{key}' (additional properties are rejected)")
            pattern = schema.get("propertyNames", {}).get("pattern")
            if pattern is not None and not re.search(pattern, str(key)):
                errs.append(f"{path}: key '{key}' does not match {pattern}")
    if isinstance(doc, list) and "items" in schema:
        for i, item in enumerate(doc):
            errs.extend(schema_errors(item, schema["items"], f"{path}[{i}]"))
    return errs


def validate(doc: Mapping[str, Any]) -> None:
    """Raise ContractError listing every schema violation (and any dotted key inside `best.specs`)."""
    errs = schema_errors(doc)
    specs = doc.get("best", {}).get("specs") if isinstance(doc.get("best"), Mapping) else None
    errs.extend(_dotted_keys(specs, "$.best.specs") if isinstance(specs, Mapping) else [])
    if errs:
        raise ContractError("best_rec.json breaks its schema: " + "; ".join(errs))


def _dotted_keys(tree: Mapping[str, Any], path: str) -> list[str]:
    out = []
    for k, v in tree.items():
        if "." in str(k):
            out.append(f"{path}: key '{k}' contains a dot; specs must be nested")
        if isinstance(v, Mapping):
            out.extend(_dotted_keys(v, f"{path}.{k}"))
    return out


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """{'train.optim.lr': 1e-3} -> {'train': {'optim': {'lr': 1e-3}}}."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def winning_specs(params: Mapping[str, Any], pins: Mapping[str, Any], trial_spec: Mapping[str, Any]) -> dict[str, Any]:
    """Nested winning hyperparameters (swept + non-budget pins), budget keys stripped.

    A list-index parameter (`train.classify.cls_weight.1`) is written as the whole list taken
    from the trial's merged spec, so a deep merge onto a baseline spec yields a valid list.
    """
    from deftpipe.automl.space import get_value

    flat: dict[str, Any] = {}
    for key in [*params, *pins]:
        if key in BUDGET_KEYS:
            continue
        parts = key.split(".")
        cut = next((i for i, p in enumerate(parts) if p.isdigit()), len(parts))
        base = ".".join(parts[:cut])
        if not base or base in BUDGET_KEYS:
            continue
        flat[base] = get_value(trial_spec, base)
    return nest(flat)


def build(*, experiment_id: str, metric_name: str, direction: str, rec_id: str, score: float,
          specs: Mapping[str, Any], observed_budget: Mapping[str, Any], checkpoint_uri: Path,
          checkpoint_epoch: int, checkpoint_step: int, all_recs: list[dict[str, Any]]) -> dict[str, Any]:
    doc = {
        "schema_version": 1, "experiment_id": experiment_id, "metric_name": metric_name, "direction": direction,
        "best": {
            "rec_id": rec_id, "score": float(score), "specs": dict(specs), "observed_budget": dict(observed_budget),
            "checkpoint_uri": str(Path(checkpoint_uri).resolve()), "checkpoint_epoch": int(checkpoint_epoch),
            "checkpoint_step": int(checkpoint_step),
        },
        "all_recs": all_recs,
    }
    validate(doc)
    return doc


def write(path: Path, doc: Mapping[str, Any]) -> Path:
    validate(doc)
    write_json_atomic(path, dict(doc))
    return path


def read(path: Path | str) -> dict[str, Any]:
    """Load and validate a best_rec.json (for Phase 1 -> 2 handoff)."""
    import json

    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ContractError(f"{path}: cannot read best_rec.json ({exc}); rerun `deftpipe automl`.") from exc
    try:
        validate(doc)
    except ContractError as exc:
        raise ContractError(f"{path}: {exc.message}") from exc
    return doc
