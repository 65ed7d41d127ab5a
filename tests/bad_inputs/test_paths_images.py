"""Paths that escape the workspace and image files that are missing, empty, truncated, fake, huge or mis-sized."""
from __future__ import annotations

import builtins
import os
import re
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from deftpipe.errors import ContractError
from deftpipe.workspace.images import read_image
from deftpipe.workspace.paths import ImageLocator

from .conftest import TRAIN_CSV, assert_user_error, invoke, only_problem, problems, train_lines, write

IMG = "images/train/test/TRAIN1@1_LightA.png"  # the test image, LightA, of training line 3


def _rows(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


def _set_row(ws: Path, line_no: int, row: str) -> None:
    lines = train_lines(ws)
    lines[line_no - 1] = row
    write(ws, TRAIN_CSV, _rows(lines))


def _png_header(width: int, height: int, idat: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder next to the workspace holding a secret file and a copy of a real image."""
    out = tmp_path / "outside"
    out.mkdir()
    (out / "secret.txt").write_text("do not read me")
    return out


@pytest.fixture
def no_reads_outside(outside: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every open()/np.fromfile/cv2.imread of a file that resolves into `outside`."""
    seen: list[str] = []
    real_open, real_fromfile = builtins.open, np.fromfile

    def hit(target: object) -> None:
        if isinstance(target, (str, os.PathLike)) and os.path.realpath(target).startswith(str(outside)):
            seen.append(str(target))

    def spy_open(file: object, *a: object, **k: object) -> object:
        hit(file)
        return real_open(file, *a, **k)  # type: ignore[call-overload]

    def spy_fromfile(file: object, *a: object, **k: object) -> object:
        hit(file)
        return real_fromfile(file, *a, **k)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(np, "fromfile", spy_fromfile)
    return seen


# ------------------------------------------------------------------ paths escaping the workspace

ESCAPES = [
    ("dotdot", "../../outside", "input_path '../../outside' contains '..' and would leave the image root"),
    ("dotdot_inside_path", "train/../../..", "contains '..'"),
    ("absolute", "/etc", "input_path '/etc' is an absolute path; write it relative to the images folder"),
    ("windows_drive", "C:\\\\boards", "is an absolute path"),
    ("windows_backslash_dotdot", "train\\\\..\\\\..\\\\x", "contains '..'"),
]


@pytest.mark.parametrize(("value", "fragment"), [e[1:] for e in ESCAPES], ids=[e[0] for e in ESCAPES])
def test_escaping_csv_path_is_rejected_before_any_open(ws: Path, value: str, fragment: str,
                                                      no_reads_outside: list[str]) -> None:
    _set_row(ws, 3, f"{value},train/golden,PASS,TRAIN1@1,chip")
    msg = only_problem(ws)
    assert fragment in msg and msg.startswith(f"{TRAIN_CSV} line 3: ")
    assert no_reads_outside == []


def test_symlinked_folder_escaping_is_rejected(ws: Path, outside: Path, no_reads_outside: list[str]) -> None:
    (ws / "images/evil").symlink_to(outside, target_is_directory=True)
    _set_row(ws, 3, "evil,train/golden,PASS,TRAIN1@1,chip")
    msg = only_problem(ws)
    assert f"{TRAIN_CSV} line 3: input_path 'evil' resolves to '{outside}' (through a symlink)" in msg
    assert "copy the images into the workspace instead of linking" in msg
    assert no_reads_outside == []


def test_symlinked_image_file_escaping_is_never_read(ws: Path, outside: Path, no_reads_outside: list[str]) -> None:
    (outside / "x.png").write_bytes((ws / IMG).read_bytes())
    (ws / IMG).unlink()
    (ws / IMG).symlink_to(outside / "x.png")
    msg = only_problem(ws)
    assert f"{TRAIN_CSV} line 3: image '{ws.resolve() / IMG}' is a symlink to '{outside / 'x.png'}'" in msg
    # neither decoded nor hashed for the leakage check
    assert no_reads_outside == []


def test_symlinked_csv_escaping_is_rejected(ws: Path, outside: Path, no_reads_outside: list[str]) -> None:
    (outside / "kpi.csv").write_bytes((ws / "kpi/testing_set.csv").read_bytes())
    (ws / "kpi/testing_set.csv").unlink()
    (ws / "kpi/testing_set.csv").symlink_to(outside / "kpi.csv")
    assert only_problem(ws) == (
        f"kpi/testing_set.csv: resolves to '{outside / 'kpi.csv'}' (through a symlink), outside the workspace "
        f"'{ws.resolve()}'; copy the CSV into the workspace instead of linking."
    )
    assert no_reads_outside == []


def test_images_dir_symlinked_outside_is_rejected(ws: Path, outside: Path) -> None:
    os.rename(ws / "images", outside / "images")
    (ws / "images").symlink_to(outside / "images", target_is_directory=True)
    assert re.search(r"images_dir '.*/ws/images' resolves to '.*/outside/images', outside the workspace",
                     only_problem(ws))


def test_object_name_with_a_folder_is_rejected(ws: Path) -> None:
    _set_row(ws, 4, "train/test,train/golden,PASS,../../outside/secret,chip")
    assert f"{TRAIN_CSV} line 4: object_name '../../outside/secret' must be a plain file stem" in only_problem(ws)


def test_locator_refuses_escapes_directly(ws: Path) -> None:
    import pandas as pd

    loc = ImageLocator(ws / "images", ws, ("LightA",), ".png")
    rows = pd.DataFrame({"input_path": ["ok", "../x"], "golden_path": ["ok", "ok"], "object_name": ["a", "b"]})
    with pytest.raises(ContractError, match=r"pool line 3: input_path '\.\./x' contains '\.\.'"):
        loc.frame_paths(rows, csv_name="pool")


# ------------------------------------------------------------------ bad image files

def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


IMAGES = [
    ("missing", lambda p: p.unlink(),
     f"{TRAIN_CSV}: 1 row(s) with missing image files (lines 3); e.g. line 3 expects"),
    ("folder_instead_of_file", lambda p: (p.unlink(), p.mkdir()), "1 row(s) with missing image files (lines 3)"),
    ("zero_bytes", lambda p: p.write_bytes(b""), "is empty (0 bytes); replace it with a valid image."),
    ("truncated", _truncate, "is corrupt or not an image format OpenCV reads; re-export it."),
    ("text_named_png", lambda p: p.write_text("this is not a png\n"), "is corrupt or not an image format"),
    ("huge_declared_size", lambda p: p.write_bytes(_png_header(20000, 20000, zlib.compress(b"\0" * 64))),
     "declares 20000x20000 pixels, more than the 64,000,000 this tool decodes"),
    ("one_light_other_size", lambda p: cv2.imwrite(str(p), np.zeros((16, 16), np.uint8)),
     "line 3: the lights of one sample differ in size (TRAIN1@1_LightA.png 16x16, TRAIN1@1_LightB.png 32x32); "
     "all must match."),
    ("rgb_instead_of_grey", lambda p: cv2.imwrite(str(p), np.zeros((32, 32, 3), np.uint8)), None),
]


@pytest.mark.parametrize(("damage", "fragment"), [c[1:] for c in IMAGES], ids=[c[0] for c in IMAGES])
def test_bad_image_file(ws: Path, damage: object, fragment: str | None) -> None:
    damage(ws / IMG)  # type: ignore[operator]
    if fragment is None:  # decoded as grey like every other image: accepted
        assert problems(ws) == []
        return
    msg = only_problem(ws)
    assert fragment in msg and f"{TRAIN_CSV}" in msg
    if "missing" not in fragment:
        assert f"line 3: image '{ws.resolve() / IMG}'" in msg or "TRAIN1@1_LightA.png 16x16" in msg


def test_images_of_another_size_than_the_spec(ws: Path) -> None:
    found = problems(ws, "dataset.classify.image_width=64", "dataset.classify.image_height=64")
    assert len(found) == 12  # one per row of the three CSVs
    msg = found[0]
    assert msg.startswith(f"{TRAIN_CSV} line 2: images are 32x32 but the spec says 64x64 "
                          "(dataset.classify.image_width/height); fix the spec or resize the images.")


def test_test_and_golden_differ_in_size(ws: Path) -> None:
    for light in ("LightA", "LightB"):
        cv2.imwrite(str(ws / f"images/train/test/TRAIN1@1_{light}.png"), np.zeros((16, 16), np.uint8))
    assert only_problem(ws) == (f"{TRAIN_CSV} line 3: test image is 16x16 but golden is 32x32; "
                                "test and golden must have the same size.")


def test_many_missing_files_list_first_twenty_lines(ws: Path) -> None:
    lines = train_lines(ws)
    extra = [f"nowhere/test,nowhere/golden,PASS,X{i},chip" for i in range(30)]
    write(ws, TRAIN_CSV, _rows(lines + extra))
    msg = only_problem(ws)
    listed = ", ".join(str(n) for n in range(8, 28))
    assert f"{TRAIN_CSV}: 30 row(s) with missing image files (lines {listed} and 10 more)" in msg


def test_decompression_bomb_refused_before_decoding(tmp_path: Path) -> None:
    """A 250 KB PNG of 16000x16000 zeros would decode to 256 MB; the header is enough to refuse it."""
    w = h = 16000
    bomb = write(tmp_path, "bomb.png", _png_header(w, h, zlib.compress(b"\0" * ((w + 1) * 64), 9)))
    with pytest.raises(ContractError, match=r"bomb\.png' declares 16000x16000 pixels"):
        read_image(bomb, where="CSV line 2")


def test_cli_bad_images_exit_2(ws: Path, cli: object) -> None:
    (ws / IMG).write_bytes(b"")
    code, _, err = invoke(cli, "validate-workspace", str(ws))  # type: ignore[arg-type]
    assert_user_error(code, err, f"error: {TRAIN_CSV} line 3: image", "is empty (0 bytes)")
