"""Merge this iteration's new rows into the training set (SPEC §5 Data merge).

Growth is monotonic: iter1 = base rows (re-rooted to the workspace once) + new
rows; iter N = previous combined CSV + new rows, never re-adding base rows.
Validation refuses missing files and any leakage into validation / KPI / holdout,
by row key or by identical test-image bytes.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from deftpipe.errors import StageFailed
from deftpipe.workspace.paths import ImageLocator
from deftpipe.workspace.tables import REQUIRED_COLUMNS, row_keys
from deftpipe.workspace.content_hash import content_hashes
from deftpipe.workspace.validate import MAX_LISTED_ROWS, find_missing

NAME = "data_merge"


@dataclass(frozen=True)
class MergeConfig:
    iteration: int
    images_rel: str = "images"  # base CSV paths are relative to <ws>/<images_rel>


@dataclass(frozen=True)
class MergeResult:
    combined: pd.DataFrame
    provenance: pd.DataFrame
    n_added: int


def rebase(rows: pd.DataFrame, images_rel: str) -> pd.DataFrame:
    """Base-CSV rows in workspace-root coordinates: the image-root prefix added exactly once."""
    out = rows.copy()
    prefix = images_rel.strip("/") + "/"
    for col in ("input_path", "golden_path"):
        values = out[col].astype(str).str.replace("\\", "/", regex=False).str.lstrip("/")
        already = values.str.startswith(prefix)
        out[col] = values.where(already, prefix + values)
    return out


def run(previous: pd.DataFrame, previous_provenance: pd.DataFrame | None, new_rows: pd.DataFrame,
        cfg: MergeConfig) -> MergeResult:
    """Combined table + row-aligned provenance (`source` in TAO's vocabulary, `origin` base/sdg/mined)."""
    if cfg.iteration == 1:
        base = rebase(previous, cfg.images_rel)
        prev_prov = pd.DataFrame({"source": "base_train", "origin": "base"}, index=range(len(base)))
    else:
        base = previous.reset_index(drop=True)
        if previous_provenance is None or len(previous_provenance) != len(base):
            raise StageFailed(NAME, "the previous provenance CSV is missing or not row-aligned with the previous "
                                    "combined CSV; the run directory was edited by hand — start a new run.")
        prev_prov = pd.DataFrame({"source": "previous_iter_train",
                                  "origin": previous_provenance["origin"].to_numpy()})
    new = new_rows.reset_index(drop=True).copy()
    origin = new["origin"] if "origin" in new.columns else pd.Series("mined", index=new.index)
    new_prov = pd.DataFrame({"source": "mining_pool", "origin": origin.to_numpy()})
    columns = list(dict.fromkeys([*REQUIRED_COLUMNS, *base.columns, *new.columns]))
    drop = {"origin", "similarity", "target_filepath", "target_label", "filepath", "siamese_score", "weakness",
            "is_miss", "is_false_alarm"}
    columns = [c for c in columns if c not in drop or c in REQUIRED_COLUMNS]
    combined = pd.concat([base.reindex(columns=columns), new.reindex(columns=columns)], ignore_index=True)
    combined = combined.fillna("")
    provenance = pd.concat([prev_prov, new_prov], ignore_index=True)
    provenance.insert(0, "object_name", combined["object_name"].to_numpy())
    provenance.insert(0, "input_path", combined["input_path"].to_numpy())
    return MergeResult(combined=combined, provenance=provenance, n_added=len(new))


def validate(combined: pd.DataFrame, *, workspace_root: Path, lights: tuple[str, ...], image_ext: str,
             protected: Mapping[str, pd.DataFrame], images_rel: str = "images",
             training_csv: str = "", validation_csv: str = "") -> dict[str, Any]:
    """`merge_validation.json` content; status "ok" only with no missing file and zero leakage."""
    locator = ImageLocator(workspace_root, workspace_root, lights, image_ext)
    tests, goldens = locator.frame_paths(combined, csv_name="combined training CSV")
    missing = find_missing(tests + goldens)
    report: dict[str, Any] = {
        "status": "ok", "training_csv": training_csv, "validation_csv": validation_csv,
        "rows_checked": int(len(combined)), "missing_file_count": len(missing),
        "train_val_leakage_overlap_count": 0, "train_kpi_leakage_overlap_count": 0,
        "train_holdout_leakage_overlap_count": 0, "problems": [],
    }
    if missing:
        report["status"] = "error"
        report["problems"].append(
            f"{len(missing)} row(s) with missing files, e.g. '{tests[0][missing[0]]}'")
        return report
    keys = row_keys(combined)
    hashes = content_hashes(combined, locator)
    images_locator = ImageLocator(workspace_root / images_rel, workspace_root, lights, image_ext)
    for name, rows in protected.items():
        if rows is None or rows.empty:
            continue
        prot_keys = set(row_keys(rows, prefix=images_rel.strip("/") + "/"))
        prot_hashes = set(content_hashes(rows, images_locator))
        leak = keys.isin(prot_keys) | hashes.isin(prot_hashes)
        n = int(leak.sum())
        report[f"train_{name}_leakage_overlap_count"] = n
        if n:
            report["status"] = "error"
            offenders = combined.loc[leak, ["input_path", "object_name"]].head(MAX_LISTED_ROWS)
            listed = "; ".join(f"{r.input_path}/{r.object_name}" for r in offenders.itertuples())
            report["problems"].append(f"{n} training row(s) leak into the {name} set: {listed}")
    return report
