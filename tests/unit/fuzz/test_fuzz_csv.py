"""Hypothesis: any bytes, columns and quoting give either a clean table or a ContractError — nothing else."""
from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deftpipe.errors import ContractError
from deftpipe.workspace.labels import is_miscased_pass
from deftpipe.workspace.layout import PASS_LABEL, REQUIRED_COLUMNS
from deftpipe.workspace.tables import KEY_COLUMNS, read_samples_csv

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Cell text biased toward what breaks CSV readers: separators, quotes, line breaks, BOMs, PASS look-alikes.
_cells = st.one_of(
    st.sampled_from(["PASS", "pass", " PASS ", "Pass", "ＰＡＳＳ", "bridge", " Bridge ", "brïdge", "", " ", "a,b",
                     'x"y', '"', "\r\n", "\n", "\ufeff", ";", "\t", "0012", "nan", "NULL", "..", "/abs", "C1@1"]),
    st.text(max_size=6),
)
_names = st.one_of(st.sampled_from([*REQUIRED_COLUMNS, "Label", " label", "inputpath", "boardname", "", "label"]),
                   st.text(max_size=5))


def _check_clean(frame: object) -> None:
    import pandas as pd

    assert isinstance(frame, pd.DataFrame)
    assert set(REQUIRED_COLUMNS) <= set(frame.columns) and len(frame) >= 1
    assert isinstance(frame.index, pd.RangeIndex)
    for col in REQUIRED_COLUMNS:
        assert (frame[col].astype(str).str.strip() != "").all()
    labels = frame["label"].tolist()
    assert all(lab == PASS_LABEL or (lab == lab.strip().lower() and not is_miscased_pass(lab)) for lab in labels)
    assert not frame.duplicated(subset=list(KEY_COLUMNS)).any()


def _read(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.csv"
        path.write_bytes(data)
        try:
            frame = read_samples_csv(path, name="rows.csv")
        except ContractError as exc:
            assert exc.message.startswith("rows.csv") and "\n" not in exc.message
            return
        _check_clean(frame)


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    _read(data)


@FUZZ
@given(header=st.lists(_names, min_size=1, max_size=7),
       rows=st.lists(st.lists(_cells, min_size=0, max_size=8), max_size=6),
       quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]),
       newline=st.sampled_from(["\n", "\r\n", "\r"]), bom=st.booleans(), delimiter=st.sampled_from([",", ",", ";", "\t"]))
def test_random_tables(header: list[str], rows: list[list[str]], quoting: int, newline: str, bom: bool,
                       delimiter: str) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=quoting, lineterminator=newline, delimiter=delimiter)
    writer.writerow(header)
    writer.writerows(rows)
    _read((b"\xef\xbb\xbf" if bom else b"") + buf.getvalue().encode("utf-8"))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(st.tuples(st.sampled_from(["a", "b/c", "d e"]), st.sampled_from(["g", "h"]),
                               st.sampled_from(["PASS", "open", " Open ", "short"]), st.sampled_from(["1", "2", "3"])),
                     min_size=1, max_size=8),
       extra=st.lists(_cells, min_size=0, max_size=1))
def test_well_formed_tables_keep_every_row_or_name_the_duplicate(rows: list[tuple[str, ...]], extra: list[str]) -> None:
    """No row is ever lost: either all rows come back in order (extra column kept) or a duplicate is named."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*REQUIRED_COLUMNS, *(["note"] if extra else [])])
    writer.writerows([[*r, *extra] for r in rows])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.csv"
        path.write_text(buf.getvalue())
        keys = [(r[0], r[1], r[3]) for r in rows]
        try:
            frame = read_samples_csv(path)
        except ContractError as exc:
            assert len(set(keys)) < len(keys) and "duplicate sample" in exc.message
            return
        assert len(set(keys)) == len(keys)
        assert frame["object_name"].tolist() == [r[3] for r in rows]
        assert frame["label"].tolist() == [r[2] if r[2] == "PASS" else r[2].strip().lower() for r in rows]
        if extra:
            assert frame["note"].tolist() == [extra[0]] * len(rows)
