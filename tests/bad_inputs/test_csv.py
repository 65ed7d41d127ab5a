"""Messy production CSVs: header problems, encodings, line endings, delimiters, quoting, labels, duplicates.

Each case breaks the training CSV of a valid workspace and checks the one problem
`validate_workspace` reports (file, line, fix) — or that the file is accepted as it should be.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from deftpipe.errors import ContractError
from deftpipe.workspace.tables import read_samples_csv

from .conftest import TRAIN_CSV, assert_user_error, invoke, only_problem, problems, train_lines, write

Edit = Callable[[list[str]], str | bytes]


def _rows(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


# (id, edit of the valid training CSV's lines, exact fragment of the one reported problem)
REJECTED: list[tuple[str, Edit, str]] = [
    ("missing_column",
     lambda ls: _rows([",".join(c for c in ln.split(",") if c not in ("label", "PASS", "missing"))
                       for ln in ls]),
     f"{TRAIN_CSV}: line 1 lacks required column(s) 'label'; the header must contain "
     "input_path, golden_path, label, object_name"),
    ("renamed_column_suggests",
     lambda ls: _rows([ls[0].replace("input_path", "inputpath")] + ls[1:]),
     "lacks required column(s) 'input_path' (found 'inputpath': rename it)"),
    ("renamed_column_case",
     lambda ls: _rows([ls[0].replace("object_name", "Object_Name")] + ls[1:]),
     "lacks required column(s) 'object_name' (found 'Object_Name': rename it)"),
    ("semicolon_delimiter", lambda ls: _rows([ln.replace(",", ";") for ln in ls]),
     f"{TRAIN_CSV}: line 1 is separated by ';', not commas; save the file as comma-separated CSV."),
    ("tab_delimiter", lambda ls: _rows([ln.replace(",", "\t") for ln in ls]),
     f"{TRAIN_CSV}: line 1 is separated by '\\t', not commas"),
    ("empty_file", lambda ls: b"",
     f"{TRAIN_CSV}: the file is empty; it needs a header line 'input_path,golden_path,label,object_name'"),
    ("blank_lines_only", lambda ls: b"\n \r\n\n",
     f"{TRAIN_CSV}: no header line found (only blank lines)"),
    ("header_only", lambda ls: _rows(ls[:1]),
     f"{TRAIN_CSV}: has a header but no rows; add at least one sample row."),
    # pandas would silently make column 1 the index and shift every value one column left
    ("extra_field_on_first_row", lambda ls: _rows(ls[:1] + [ls[1] + ",oops"] + ls[2:]),
     f"{TRAIN_CSV} line 2: 6 fields but the header (line 1) names 5 columns"),
    ("extra_field_later", lambda ls: _rows(ls[:4] + [ls[4] + ",oops"] + ls[5:]),
     "not a well-formed CSV (Error tokenizing data. C error: Expected 5 fields in line 5, saw 6)"),
    ("unterminated_quote", lambda ls: _rows(ls[:2] + ['"' + ls[2]] + ls[3:]),
     "not a well-formed CSV (Error tokenizing data. C error: EOF inside string"),
    ("duplicate_column", lambda ls: _rows([ls[0] + ", label"] + [ln + ",PASS" for ln in ls[1:]]),
     f"{TRAIN_CSV} line 1: column(s) 'label' appear more than once"),
    ("latin1_bytes", lambda ls: _rows(ls[:2] + [ls[2].replace("PASS", "brïdge")] + ls[3:]).encode("latin-1"),
     f"{TRAIN_CSV}: not UTF-8 text (invalid continuation byte"),
    ("latin1_header", lambda ls: _rows([ls[0] + ",Qualität"] + [ln + ",x" for ln in ls[1:]]).encode("latin-1"),
     f"{TRAIN_CSV} line 1: not UTF-8 text"),
    ("utf16", lambda ls: _rows(ls).encode("utf-16"), "line 1: not UTF-8 text (it looks like UTF-16)"),
    ("empty_label", lambda ls: _rows(ls[:3] + [ls[3].replace(",PASS,", ",,")] + ls[4:]),
     f"{TRAIN_CSV} line 4: empty 'label' (1 row(s) in all); fill it in or drop the row."),
    ("too_few_fields", lambda ls: _rows(ls[:2] + [ls[2].rsplit(",", 3)[0]] + ls[3:]),
     f"{TRAIN_CSV} line 3: empty 'label'"),
    ("label_lowercase_pass", lambda ls: _rows(ls[:2] + [ls[2].replace(",PASS,", ",pass,")] + ls[3:]),
     f"{TRAIN_CSV} line 3: label 'pass' looks like PASS but is not spelled exactly 'PASS' (1 row(s) in all); "
     "write PASS in capitals without spaces."),
    ("label_titlecase_pass", lambda ls: _rows(ls[:2] + [ls[2].replace(",PASS,", ",Pass,")] + ls[3:]),
     "line 3: label 'Pass' looks like PASS"),
    ("label_padded_pass", lambda ls: _rows(ls[:2] + [ls[2].replace(",PASS,", ", PASS ,")] + ls[3:]),
     "line 3: label ' PASS ' looks like PASS"),
    ("label_fullwidth_pass", lambda ls: _rows(ls[:2] + [ls[2].replace(",PASS,", ",ＰＡＳＳ,")] + ls[3:]),
     "line 3: label 'ＰＡＳＳ' looks like PASS"),
    ("duplicate_row", lambda ls: _rows(ls + [ls[2]]),
     f"{TRAIN_CSV} line 8: duplicate sample {{'input_path': 'train/test', 'golden_path': 'train/golden', "
     "'object_name': 'TRAIN1@1'} (also on line 3; 1 duplicate row(s) in all); remove the repeated rows."),
    # same pair with two different labels: a conflict, reported as a duplicate sample too
    ("conflicting_label", lambda ls: _rows(ls + [ls[2].replace(",PASS,", ",bridge,")]),
     "line 8: duplicate sample"),
]


@pytest.mark.parametrize(("edit", "fragment"), [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED])
def test_rejected_csv(ws: Path, edit: Edit, fragment: str) -> None:
    # read_samples_csv is what validate_workspace, preflight and every stage call; its message is the problem line
    write(ws, TRAIN_CSV, edit(train_lines(ws)))
    with pytest.raises(ContractError, match=re.escape(fragment)) as info:
        read_samples_csv(ws / TRAIN_CSV, name=TRAIN_CSV)
    assert "\n" not in info.value.message


def test_validate_workspace_reports_the_reader_problem(ws: Path) -> None:
    write(ws, TRAIN_CSV, _rows(train_lines(ws)[:1]))
    assert only_problem(ws) == f"{TRAIN_CSV}: has a header but no rows; add at least one sample row."


ACCEPTED: list[tuple[str, Edit]] = [
    ("utf8_bom", lambda ls: b"\xef\xbb\xbf" + _rows(ls).encode()),
    ("crlf", lambda ls: "\r\n".join(ls) + "\r\n"),
    ("bom_and_crlf", lambda ls: b"\xef\xbb\xbf" + ("\r\n".join(ls) + "\r\n").encode()),
    ("no_final_newline", lambda ls: "\n".join(ls)),
    ("trailing_blank_lines", lambda ls: _rows(ls) + "\n\n"),
    ("padded_header_names", lambda ls: _rows([", ".join(ls[0].split(","))] + ls[1:])),
    ("quoted_comma_in_extra_column",
     lambda ls: _rows([ls[0] + ",note"] + [ln + ',"scratch, left side"' for ln in ls[1:]])),
    ("all_fields_quoted", lambda ls: _rows([",".join(f'"{c}"' for c in ln.split(",")) for ln in ls])),
]


@pytest.mark.parametrize("edit", [c[1] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_accepted_csv(ws: Path, edit: Edit) -> None:
    write(ws, TRAIN_CSV, edit(train_lines(ws)))
    rows = read_samples_csv(ws / TRAIN_CSV)
    assert len(rows) == 6 and rows["object_name"].tolist() == [f"TRAIN{i}@1" for i in range(6)]
    assert set(rows["label"]) == {"PASS", "missing"}


def test_bom_and_crlf_workspace_validates(ws: Path) -> None:
    write(ws, TRAIN_CSV, b"\xef\xbb\xbf" + ("\r\n".join(train_lines(ws)) + "\r\n").encode())
    assert problems(ws) == []


def test_extra_columns_are_kept_with_their_values(ws: Path) -> None:
    lines = train_lines(ws)
    write(ws, TRAIN_CSV, _rows([lines[0] + ",boardname,note"]
                               + [ln + f',B{i},"a, ""quoted"" note"' for i, ln in enumerate(lines[1:])]))
    assert problems(ws) == []
    rows = read_samples_csv(ws / TRAIN_CSV)
    assert list(rows.columns) == ["input_path", "golden_path", "label", "object_name", "component_kind",
                                  "boardname", "note"]
    assert rows["boardname"].tolist() == [f"B{i}" for i in range(6)]
    assert set(rows["note"]) == {'a, "quoted" note'}
    assert set(rows["component_kind"]) == {"chip"}


def test_object_names_keep_leading_zeros(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", "input_path,golden_path,label,object_name\na,b,PASS,0012\na,b,PASS,1e3\n")
    assert read_samples_csv(path)["object_name"].tolist() == ["0012", "1e3"]


def test_label_rule_on_odd_labels(ws: Path) -> None:
    """' Bridge ' -> 'bridge'; a unicode defect name such as 'Brïdge' is kept (lowercased) as its own defect.

    Decision: labels are not transliterated or Unicode-normalized beyond strip + lower (SPEC §2), so
    'brïdge' is a defect class distinct from 'bridge'. Only a PASS look-alike is refused, full-width
    'ＰＡＳＳ' included (NFKC), because it would silently become a defect called 'pass'.
    """
    lines = train_lines(ws)
    lines[2] = lines[2].replace(",PASS,", ", Bridge ,")
    lines[3] = lines[3].replace(",PASS,", ",\tBRÏDGE,")
    lines[5] = lines[5].replace(",PASS,", ",short-CIRCUIT,")
    write(ws, TRAIN_CSV, _rows(lines))
    labels = read_samples_csv(ws / TRAIN_CSV)["label"].tolist()
    assert labels == ["missing", "bridge", "brïdge", "missing", "short-circuit", "PASS"]


def test_cli_reports_csv_problem_on_one_line_and_exits_2(ws: Path, cli: object) -> None:
    lines = train_lines(ws)
    write(ws, TRAIN_CSV, _rows([ln.replace(",", ";") for ln in lines]))
    write(ws, "kpi/testing_set.csv", b"")
    code, _, err = invoke(cli, "validate-workspace", str(ws))  # type: ignore[arg-type]
    assert_user_error(code, err, f"error: {TRAIN_CSV}: line 1 is separated by ';'",
                      "error: kpi/testing_set.csv: the file is empty")


def test_direct_reader_raises_contract_error_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "pool.csv", "input_path,golden_path,label\na,b,PASS\n")
    with pytest.raises(ContractError, match=r"pool\.csv: line 1 lacks required column\(s\) 'object_name'"):
        read_samples_csv(path)
    with pytest.raises(ContractError, match=r"missing\.csv: file not found"):
        read_samples_csv(tmp_path / "missing.csv")
    with pytest.raises(ContractError, match="is a folder, expected a CSV file"):
        read_samples_csv(tmp_path)


def test_every_csv_is_checked_in_one_pass(ws: Path) -> None:
    """One problem per broken file, so a user fixes them all at once."""
    write(ws, TRAIN_CSV, b"")
    write(ws, "train/base/validation_set.csv", "input_path;golden_path;label;object_name\n")
    write(ws, "augmentation/mining_pool/mining_pool.csv", "input_path,golden_path,label,object_name\n")
    found = problems(ws)
    assert [p.split(":")[0] for p in found] == [TRAIN_CSV, "train/base/validation_set.csv",
                                               "augmentation/mining_pool/mining_pool.csv"]
