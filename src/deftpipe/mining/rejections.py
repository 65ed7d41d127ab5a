"""Which pool rows may be mined: one rejection reason per row, in a fixed order, never silent.

Order: missing_file, leak_validation, leak_kpi, leak_holdout, leak_hash, already_mined,
in_training — a row gets the first that applies; keys and hashes are compared in
workspace-root coordinates (SPEC §4–5).
"""
from __future__ import annotations

import pandas as pd

from deftpipe.mining.history import MiningHistory
from deftpipe.mining.layout import MiningLayout, filepath_keys, leakage_keys
from deftpipe.mining.protected import ProtectedSets, missing_files
from deftpipe.workspace.content_hash import content_hashes

REJECTION_REASONS: tuple[str, ...] = (
    "missing_file", "leak_validation", "leak_kpi", "leak_holdout", "leak_hash", "already_mined", "in_training",
)


def classify_pool(pool: pd.DataFrame, *, layout: MiningLayout, history: MiningHistory,
                  protected: ProtectedSets, labels: set[str] | None) -> pd.Series:
    """Per pool row: the first rejection reason (REJECTION_REASONS order) or '' when eligible.

    Rows whose label is outside `labels` are not examined and get 'unsearched'.
    """
    reason = pd.Series("", index=pool.index, dtype=object)
    if labels is not None:
        reason[~pool["label"].isin(labels)] = "unsearched"
    todo = reason == ""
    if not todo.any():
        return reason
    rows = pool[todo]
    locator = layout.locator(layout.pool_dir)
    prefix = layout.pool_prefix
    missing = missing_files(rows, locator)
    reason[missing[missing].index] = "missing_file"
    keys = leakage_keys(rows, prefix=prefix)
    for source, hit in zip(rows.index, protected.leak_source(keys)):
        if hit is not None and reason[source] == "":
            reason[source] = f"leak_{hit}"
    open_rows = rows[reason[rows.index] == ""]
    if protected.hashes and len(open_rows):
        hashes = content_hashes(open_rows, locator, missing_ok=True)
        leaked = hashes.isin(protected.hashes)
        reason[leaked[leaked].index] = "leak_hash"
    open_rows = rows[reason[rows.index] == ""]
    if len(history) and len(open_rows):
        kinds = history.kinds(filepath_keys(open_rows, first_light=layout.lights[0], image_ext=layout.image_ext,
                                            prefix=prefix))
        reason[kinds[kinds == "mined"].index] = "already_mined"
        reason[kinds[kinds == "training"].index] = "in_training"
    return reason
