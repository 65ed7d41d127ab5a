"""Every validation error of the foundation issue, with its message asserted."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from deftpipe.workspace.validate import validate_workspace

TRAIN = "train/base/training_set.csv"


def _problems(ws: Path, overrides: tuple[str, ...] = ()) -> str:
    report = validate_workspace(ws, overrides)
    return "\n".join(report.problems)


def _edit_csv(ws: Path, rel: str, fn) -> None:  # noqa: ANN001
    p = ws / rel
    p.write_text(fn(p.read_text()))


def test_valid_workspace_passes(tiny_ws: Path) -> None:
    report = validate_workspace(tiny_ws)
    assert report.ok, report.problems
    assert report.lights == ("LightA", "LightB")
    assert report.tables[0].labels == {"PASS": 8, "missing": 4}
    assert report.overlaps == {"training<->validation": 0, "training<->kpi": 0}


def test_missing_column(tiny_ws: Path) -> None:
    _edit_csv(tiny_ws, TRAIN, lambda s: s.replace("object_name", "object"))
    assert "lacks required column(s) 'object_name' (found 'object': rename it)" in _problems(tiny_ws)


def test_missing_image(tiny_ws: Path) -> None:
    (tiny_ws / "images/train/test/TRAIN1@1_LightB.png").unlink()
    msg = _problems(tiny_ws)
    assert f"{TRAIN}: 1 row(s) with missing image files (lines 3)" in msg


def test_path_escaping_workspace(tiny_ws: Path) -> None:
    _edit_csv(tiny_ws, TRAIN, lambda s: s.replace("train/test,", "../../etc,", 1))
    assert "line 2: input_path '../../etc' contains '..'" in _problems(tiny_ws)


def test_empty_csv(tiny_ws: Path) -> None:
    (tiny_ws / TRAIN).write_text("")
    assert f"{TRAIN}: the file is empty" in _problems(tiny_ws)


def test_header_only_csv(tiny_ws: Path) -> None:
    (tiny_ws / TRAIN).write_text("input_path,golden_path,label,object_name\n")
    assert f"{TRAIN}: has a header but no rows" in _problems(tiny_ws)


def test_duplicate_rows(tiny_ws: Path) -> None:
    _edit_csv(tiny_ws, TRAIN, lambda s: s + s.splitlines()[1] + "\n")
    assert f"{TRAIN} line 14: duplicate sample" in _problems(tiny_ws)


def test_bad_label_case(tiny_ws: Path) -> None:
    _edit_csv(tiny_ws, TRAIN, lambda s: s.replace(",PASS,", ",pass,", 1))
    assert f"{TRAIN} line 3: label 'pass' looks like PASS" in _problems(tiny_ws)


def test_corrupt_image(tiny_ws: Path) -> None:
    (tiny_ws / "images/kpi/golden/KPI2@1_LightA.png").write_bytes(b"\x89PNG\r\n garbage")
    assert "kpi/testing_set.csv line 4: image" in _problems(tiny_ws)
    assert "corrupt" in _problems(tiny_ws)


def test_zero_byte_image(tiny_ws: Path) -> None:
    (tiny_ws / "images/kpi/golden/KPI2@1_LightA.png").write_bytes(b"")
    assert "is empty (0 bytes)" in _problems(tiny_ws)


def test_golden_test_size_mismatch(tiny_ws: Path) -> None:
    cv2.imwrite(str(tiny_ws / "images/val/golden/VAL1@1_LightA.png"), np.zeros((40, 40), np.uint8))
    assert "differ in size" in _problems(tiny_ws) or "must have the same size" in _problems(tiny_ws)


def test_spec_size_mismatch(tiny_ws: Path) -> None:
    assert "but the spec says 64x64" in _problems(tiny_ws, ("dataset.classify.image_width=64",
                                                           "dataset.classify.image_height=64"))


def test_spec_key_typo(tiny_ws: Path) -> None:
    spec_path = tiny_ws / "specs/baseline_spec.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    spec["train"]["optim"]["learning_rate"] = 0.1
    spec["train"]["optim"]["weigth_decay"] = 0.1
    spec_path.write_text(yaml.safe_dump(spec))
    assert "Did you mean 'train.optim.weight_decay'" in _problems(tiny_ws)


def test_checkpoint_interval_error(tiny_ws: Path) -> None:
    assert "checkpoint_interval (9) > train.num_epochs (2)" in _problems(
        tiny_ws, ("train.num_epochs=2", "train.checkpoint_interval=9"))


def test_wrong_delimiter(tiny_ws: Path) -> None:
    _edit_csv(tiny_ws, TRAIN, lambda s: s.replace(",", ";"))
    assert "separated by ';'" in _problems(tiny_ws)


def test_train_kpi_overlap_by_row_and_by_bytes(tiny_ws: Path) -> None:
    kpi = tiny_ws / "kpi/testing_set.csv"
    train_line = (tiny_ws / TRAIN).read_text().splitlines()[1]
    kpi.write_text(kpi.read_text() + train_line + "\n")
    # An identical test image under another name is a leak too.
    for light in ("LightA", "LightB"):
        src = tiny_ws / f"images/train/test/TRAIN2@1_{light}.png"
        (tiny_ws / f"images/kpi/test/KPI0@1_{light}.png").write_bytes(src.read_bytes())
    report = validate_workspace(tiny_ws)
    assert report.overlaps["training<->kpi"] == 2
    assert "kpi CSV: 2 row(s) also in the training set" in "\n".join(report.problems)


def test_cli_exit_codes_and_no_torch(tiny_ws: Path) -> None:
    code = ("import sys; from deftpipe.cli.main import main; sys.argv=['deftpipe','validate-workspace',"
            f"'{tiny_ws}']\ntry:\n  main()\nexcept SystemExit as e:\n  print('torch' in sys.modules, e.code)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.stdout.strip().endswith("False 0"), out.stdout + out.stderr
    (tiny_ws / TRAIN).write_text("")
    out = subprocess.run([sys.executable, "-m", "deftpipe", "validate-workspace", str(tiny_ws)],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 2
    assert "the file is empty" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("bad", ["missing_dir"])
def test_missing_workspace(tmp_path: Path, bad: str) -> None:
    assert "workspace folder not found" in _problems(tmp_path / bad)
