from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from deftpipe.errors import ContractError
from deftpipe.workspace.labels import is_miscased_pass, normalize_label, normalize_labels
from deftpipe.workspace.paths import ImageLocator, lights_from_input_map


def _rows(**cols: str) -> pd.DataFrame:
    base = {"input_path": "a/test", "golden_path": "a/golden", "label": "PASS", "object_name": "C1@1"}
    base.update(cols)
    return pd.DataFrame([base])


def test_image_path_rule(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    loc = ImageLocator(tmp_path / "images", tmp_path, ("LightA", "LightB"), ".png")
    tests, goldens = loc.row_paths("C1018@1", "b1/test", "b1/golden")
    assert tests[0] == tmp_path.resolve() / "images/b1/test/C1018@1_LightA.png"
    assert goldens[1] == tmp_path.resolve() / "images/b1/golden/C1018@1_LightB.png"


def test_lights_ordered_by_index() -> None:
    assert lights_from_input_map({"B": 1, "A": 0, "C": 2}) == ("A", "B", "C")


@pytest.mark.parametrize("value", ["../outside", "a/../../x", "/etc", "C:\\x"])
def test_escaping_paths_rejected(tmp_path: Path, value: str) -> None:
    (tmp_path / "images").mkdir()
    loc = ImageLocator(tmp_path / "images", tmp_path, ("L",), ".png")
    with pytest.raises(ContractError, match="line 2: input_path"):
        loc.check_folders(_rows(input_path=value), csv_name="x.csv")


def test_symlink_escape_rejected(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    ws = tmp_path / "ws"
    (ws / "images").mkdir(parents=True)
    os.symlink(outside, ws / "images" / "link")
    loc = ImageLocator(ws / "images", ws, ("L",), ".png")
    with pytest.raises(ContractError, match="through a symlink"):
        loc.check_folders(_rows(input_path="link"), csv_name="x.csv")


def test_symlinked_file_escape_rejected(tmp_path: Path) -> None:
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"x")
    ws = tmp_path / "ws"
    (ws / "images").mkdir(parents=True)
    os.symlink(outside, ws / "images" / "C1@1_L.png")
    loc = ImageLocator(ws / "images", ws, ("L",), ".png")
    with pytest.raises(ContractError, match="outside the workspace"):
        loc.check_file_confined(str(ws / "images" / "C1@1_L.png"), where="row 2")


def test_object_name_with_folder_rejected(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    loc = ImageLocator(tmp_path / "images", tmp_path, ("L",), ".png")
    with pytest.raises(ContractError, match="plain file stem"):
        loc.check_folders(_rows(object_name="../C1"), csv_name="x.csv")


def test_images_dir_outside_workspace_rejected(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "ws").mkdir()
    with pytest.raises(ContractError, match="outside the workspace"):
        ImageLocator(tmp_path / "elsewhere", tmp_path / "ws", ("L",), ".png")


def test_label_rule() -> None:
    assert normalize_label("PASS") == "PASS"
    assert normalize_label("  Missing ") == "missing"
    assert normalize_label("Excess_Solder") == "excess_solder"
    assert list(normalize_labels(pd.Series(["PASS", " Bridge"]))) == ["PASS", "bridge"]
    assert is_miscased_pass("pass") and is_miscased_pass(" PASS ") and not is_miscased_pass("PASS")
