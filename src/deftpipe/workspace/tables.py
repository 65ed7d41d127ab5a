"""Reading sample CSVs (SPEC §2) with one clear error per problem.

Every value is read as a string (object names like `0012` keep their zeros);
labels follow the label rule; the row numbers in messages are file line numbers.
"""
from __future__ import annotations

import csv
import difflib
from pathlib import Path

import pandas as pd

from deftpipe.errors import ContractError
from deftpipe.workspace.labels import miscased_pass_mask, normalize_labels
from deftpipe.workspace.layout import REQUIRED_COLUMNS

# Rows are identified by these columns for duplicate and leakage checks.
KEY_COLUMNS: tuple[str, ...] = ("input_path", "golden_path", "object_name")


def _line(index: int) -> int:
    """File line number of DataFrame row `index` (1 header line, 1-based)."""
    return int(index) + 2


def _sniff_delimiter(header: str) -> str | None:
    for delim in (";", "\t", "|"):
        if delim in header and "," not in header:
            return delim
    return None


def _header_names(header: str) -> list[str]:
    try:
        return [c.strip() for c in next(csv.reader([header]), [])]
    except csv.Error:
        return []


def read_samples_csv(path: Path | str, *, name: str | None = None, allow_empty: bool = False) -> pd.DataFrame:
    """Load a sample CSV, check its columns and labels, return it with normalized labels.

    Raises:
        ContractError: naming the file, the line and the fix.
    """
    path = Path(path)
    label = name or str(path)
    if not path.exists():
        raise ContractError(f"{label}: file not found; create it with columns {', '.join(REQUIRED_COLUMNS)}.")
    if path.is_dir():
        raise ContractError(f"{label}: is a folder, expected a CSV file.")
    if path.stat().st_size == 0:
        raise ContractError(
            f"{label}: the file is empty; it needs a header line '{','.join(REQUIRED_COLUMNS)}' and at least one row."
        )
    # The header is decoded on its own: a text-mode readline would decode a whole buffer and fail on a later line.
    with open(path, "rb") as fh:
        raw_header = fh.readline(1 << 20)
    try:
        header = raw_header.decode("utf-8-sig").strip("\r\n")
    except UnicodeDecodeError as exc:
        utf16 = " (it looks like UTF-16)" if raw_header.startswith((b"\xff\xfe", b"\xfe\xff")) else ""
        raise ContractError(
            f"{label} line 1: not UTF-8 text{utf16} ({exc.reason} at byte {exc.start}); re-save the file as UTF-8."
        ) from exc
    delim = _sniff_delimiter(header)
    if delim is not None:
        raise ContractError(
            f"{label}: line 1 is separated by {delim!r}, not commas; save the file as comma-separated CSV."
        )
    try:
        frame = pd.read_csv(
            path, dtype=str, keep_default_na=False, encoding="utf-8-sig", quoting=csv.QUOTE_MINIMAL,
            skipinitialspace=False,
        )
    except pd.errors.ParserError as exc:
        detail = " ".join(str(exc).split())
        raise ContractError(
            f"{label}: not a well-formed CSV ({detail}); check quoting and the number of fields per line."
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise ContractError(
            f"{label}: no header line found (only blank lines); the first line must be "
            f"'{','.join(REQUIRED_COLUMNS)}', followed by at least one row."
        ) from exc
    except UnicodeDecodeError as exc:
        raise ContractError(f"{label}: not UTF-8 text ({exc.reason} at byte {exc.start}); re-save the file as UTF-8.") from exc
    if not isinstance(frame.index, pd.RangeIndex):
        # pandas silently turns the first column into the index when line 2 has one field more than the
        # header: every value would shift one column to the left.
        raise ContractError(
            f"{label} line 2: {len(frame.columns) + 1} fields but the header (line 1) names {len(frame.columns)} "
            "columns; remove the extra field, quote values that contain commas, or name the column in the header."
        )
    names = _header_names(header)
    repeated = sorted({n for n in names if n and names.count(n) > 1})
    if repeated:
        raise ContractError(
            f"{label} line 1: column(s) {', '.join(map(repr, repeated))} appear more than once; keep one of each "
            "(which one holds the data is ambiguous)."
        )
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        tips = []
        for col in missing:
            near = difflib.get_close_matches(col, list(frame.columns), n=1, cutoff=0.6)
            tips.append(f"'{col}'" + (f" (found '{near[0]}': rename it)" if near else ""))
        raise ContractError(
            f"{label}: line 1 lacks required column(s) {', '.join(tips)}; the header must contain "
            f"{', '.join(REQUIRED_COLUMNS)} (found {', '.join(map(repr, frame.columns))})."
        )
    if len(frame) == 0 and not allow_empty:
        raise ContractError(f"{label}: has a header but no rows; add at least one sample row.")
    for col in REQUIRED_COLUMNS:
        blank = frame.index[frame[col].str.strip() == ""]
        if len(blank):
            raise ContractError(
                f"{label} line {_line(blank[0])}: empty '{col}' ({len(blank)} row(s) in all); fill it in or drop the row."
            )
    miscased = frame.index[miscased_pass_mask(frame["label"]).to_numpy()]
    if len(miscased):
        raw = frame.at[miscased[0], "label"]
        raise ContractError(
            f"{label} line {_line(miscased[0])}: label {raw!r} looks like PASS but is not spelled exactly 'PASS' "
            f"({len(miscased)} row(s) in all); write PASS in capitals without spaces."
        )
    frame["label"] = normalize_labels(frame["label"])
    dup = frame.duplicated(subset=list(KEY_COLUMNS), keep="first")
    if dup.any():
        first_dup = frame.index[dup][0]
        key = tuple(frame.loc[first_dup, list(KEY_COLUMNS)])
        same = frame.index[(frame[list(KEY_COLUMNS)] == pd.Series(key, index=list(KEY_COLUMNS))).all(axis=1)]
        raise ContractError(
            f"{label} line {_line(first_dup)}: duplicate sample {dict(zip(KEY_COLUMNS, key))} (also on line "
            f"{_line(same[0])}; {int(dup.sum())} duplicate row(s) in all); remove the repeated rows."
        )
    return frame.reset_index(drop=True)


def row_keys(frame: pd.DataFrame, *, prefix: str = "") -> pd.Series:
    """Normalized identity of each row for leakage checks: (input_path, golden_path, label, object_name[, boardname]).

    `prefix` puts paths into one coordinate system (e.g. 'images/' for base rows compared with loop CSVs).
    """
    def norm(col: pd.Series) -> pd.Series:
        return (prefix + col.astype(str).str.replace("\\", "/", regex=False).str.strip("/")).str.replace(
            "//", "/", regex=False
        )

    parts = [norm(frame["input_path"]), norm(frame["golden_path"]), normalize_labels(frame["label"]),
             frame["object_name"].astype(str)]
    if "boardname" in frame.columns:
        parts.append(frame["boardname"].astype(str))
    out = parts[0]
    for p in parts[1:]:
        out = out + "|" + p
    return out
