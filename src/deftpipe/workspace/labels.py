"""The label rule of SPEC §2: `PASS` exactly; every other label stripped and lowercased."""
from __future__ import annotations

import unicodedata

import pandas as pd

from deftpipe.workspace.layout import PASS_LABEL


def normalize_label(label: str) -> str:
    """`PASS` stays `PASS`; defect names are stripped and lowercased.

    A PASS spelled another way (`pass`, ` Pass `) is not silently turned into a
    defect called "pass": callers check `is_miscased_pass` first and reject it.
    """
    if label == PASS_LABEL:
        return label
    return label.strip().lower()


def is_miscased_pass(label: str) -> bool:
    """True for PASS spelled any other way, full-width `ＰＡＳＳ` included (NFKC): a typo, never a defect name."""
    return label != PASS_LABEL and unicodedata.normalize("NFKC", label).strip().upper() == PASS_LABEL


def miscased_pass_mask(labels: pd.Series) -> pd.Series:
    """Vectorized `is_miscased_pass` (a million-row CSV is checked without a Python call per row)."""
    text = labels.astype(str)
    bad = [u for u in text.unique() if is_miscased_pass(u)]  # few distinct labels even in a huge CSV
    return text.isin(bad)


def normalize_labels(labels: pd.Series) -> pd.Series:
    out = labels.astype(str)
    keep = out == PASS_LABEL
    return out.where(keep, out.str.strip().str.lower())


def is_defect(labels: pd.Series) -> pd.Series:
    """Boolean Series: True where the (normalized) label is a defect."""
    return labels.astype(str) != PASS_LABEL
