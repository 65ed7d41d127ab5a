"""The numbers of a run folder, flattened to `key -> value`, and their comparison between two runs.

Reads only committed files (deft_state.json, best_model.json, holdout and zero-shot results, AutoML
trials.csv and best_rec.json). Paths are made relative to their run folder, and wall-clock times are left
out, so two runs of the same configuration compare equal exactly when their numbers do.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Per-iteration state fields that are numbers or decisions (paths and timestamps are not compared).
_ITER_FIELDS = ("train_metric", "val_loss", "threshold", "far_pct", "best_ckpt_kind", "stage_completed", "status",
                "mining_mined_count", "sdg_skipped", "data_mining_skipped", "rca_threshold", "rca_target_defects")
_HEADLINE_ITER = {"val_loss", "threshold", "far_pct"}
# trials.csv columns that depend on the clock, not on the computation.
_TRIAL_SKIP = {"number", "rec_id", "duration_s", "error"}
_STUDIES = ("automl_phase1", "final_automl")


@dataclass(frozen=True)
class Comparison:
    """One number of the original run next to the rerun's; `headline` rows are always shown."""

    key: str
    original: Any
    rerun: Any
    headline: bool

    @property
    def match(self) -> bool:
        return _same(self.original, self.rerun)


MISSING = "<missing>"


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _rel(path: Any, rd: Path) -> Any:
    """A path inside the run folder as `<run>/...`, so it compares across run folders."""
    if not isinstance(path, str):
        return path
    try:
        return "<run>/" + Path(path).resolve().relative_to(rd.resolve()).as_posix()
    except ValueError:
        return path


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
    """Scalars of a nested JSON value; absolute paths (evidence files, CSVs) are left out."""
    if isinstance(value, Mapping):
        for k in sorted(value):
            yield from _flatten(f"{prefix}.{k}", value[k])
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _flatten(f"{prefix}[{i}]", v)
    elif not (isinstance(value, str) and value.startswith("/")):
        yield prefix, value


def collect(rd: Path) -> dict[str, tuple[Any, bool]]:
    """Every compared number of run folder `rd`: key -> (value, headline)."""
    rd = Path(rd)
    out: dict[str, tuple[Any, bool]] = {}

    def put(key: str, value: Any, headline: bool = False) -> None:
        out[key] = (value, headline)

    def put_flat(prefix: str, doc: Any, headline_keys: tuple[str, ...] = ()) -> None:
        for key, value in _flatten(prefix, doc):
            put(key, value, key in headline_keys)

    state = _read_json(rd / "deft_state.json")
    if state is not None:
        put("status", state.get("status"), True)
        for label, rec in (state.get("iterations") or {}).items():
            for name in _ITER_FIELDS:
                if name in rec:
                    put(f"{label}.{name}", rec[name], name in _HEADLINE_ITER)
            if rec.get("best_ckpt_path"):
                put(f"{label}.checkpoint", _rel(rec["best_ckpt_path"], rd), True)
            if rec.get("metric_result"):
                put_flat(f"{label}.metric_result", rec["metric_result"], (f"{label}.metric_result.value",))
    best = _read_json(rd / "best_model.json")
    if best is not None:
        put("best_model.iteration", best.get("iteration"), True)
        put("best_model.checkpoint", _rel(best.get("checkpoint"), rd), True)
        put("best_model.threshold", best.get("threshold"), True)
        put_flat("best_model.metric_result", best.get("metric_result"), ("best_model.metric_result.value",))
        put_flat("best_model.holdout_result", best.get("holdout_result"))
    for name, path in (("holdout", rd / "holdout" / "holdout_result.json"),
                       ("zero_shot_kpi", rd / "zero_shot_kpi.json"),
                       ("zero_shot_validation", rd / "automl_phase1" / "zero_shot_validation.json")):
        doc = _read_json(path)
        if doc is not None:
            put_flat(name, doc, (f"{name}.far_at_100_pct",))
    for study in _STUDIES:
        _collect_study(rd, study, put)
    return out


def _collect_study(rd: Path, study: str, put: Any) -> None:
    import pandas as pd

    trials = rd / study / "trials.csv"
    if trials.is_file():
        # read as text: the file's own decimal strings are compared, not a re-parsed float
        frame = pd.read_csv(trials, dtype=str, keep_default_na=False)
        for row in frame.to_dict("records"):
            label = f"{study}.{row.get('rec_id', row.get('number'))}"
            for col, value in row.items():
                if col not in _TRIAL_SKIP:
                    put(f"{label}.{col}", _rel(value, rd) if col == "checkpoint_path" else value, col == "score")
    best_rec = _read_json(rd / study / "best_rec.json")
    if best_rec is not None:
        put(f"{study}.best.rec_id", best_rec["best"].get("rec_id"), True)
        put(f"{study}.best.score", best_rec["best"].get("score"), True)


def compare(original_dir: Path, rerun_dir: Path) -> list[Comparison]:
    """Every number of either run, original order first; a number only one run has is a mismatch."""
    old, new = collect(original_dir), collect(rerun_dir)
    keys = list(old) + [k for k in new if k not in old]
    return [Comparison(key=k, original=old[k][0] if k in old else MISSING,
                       rerun=new[k][0] if k in new else MISSING,
                       headline=(old.get(k) or new.get(k) or (None, False))[1]) for k in keys]
