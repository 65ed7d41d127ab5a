"""The leakage content key of SPEC §5: sha256 over a row's test-image bytes, all lights sorted by name.

One definition shared by workspace validation, the data merge and mining's protected sets, so a
row hashed by one is recognized by the others.
"""
from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from deftpipe.workspace.paths import ImageLocator


def content_hashes(rows: pd.DataFrame, locator: ImageLocator, *, missing_ok: bool = False,
                   workers: int = 4) -> pd.Series:
    """Per row: the hex digest; with `missing_ok`, None where a file is missing (else the OSError propagates)."""
    if len(rows) == 0:
        return pd.Series([], index=rows.index, dtype=object)
    order = sorted(range(len(locator.lights)), key=lambda k: locator.lights[k])
    tests, _ = locator.frame_paths(rows)

    def digest(i: int) -> str | None:
        h = hashlib.sha256()
        try:
            for k in order:
                with open(tests[k][i], "rb") as fh:
                    h.update(fh.read())
        except (FileNotFoundError, IsADirectoryError):
            if missing_ok:
                return None
            raise
        return h.hexdigest()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        values = list(pool.map(digest, range(len(rows)), chunksize=256))
    return pd.Series(values, index=rows.index, dtype=object)
