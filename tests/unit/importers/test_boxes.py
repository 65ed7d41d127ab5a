from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deftpipe.errors import ContractError
from deftpipe.importers._boxes import (
    Box,
    defect_window,
    grid_positions,
    label_crop,
    label_windows,
    parse_box_line,
    read_boxes,
)

WIN = (100, 100, 164, 164)


def test_box_line_accepts_commas_and_spaces() -> None:
    assert parse_box_line("10,20,30,40,3", where="f") == Box(10, 20, 30, 40, 3)
    assert parse_box_line("10 20 30 40 3", where="f") == Box(10, 20, 30, 40, 3)
    assert parse_box_line(" 10, 20 ,30,40 , 6 ", where="f") == Box(10, 20, 30, 40, 6)
    assert parse_box_line("   ", where="f") is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("10,20,30,40", r"a.txt line 3: expected 5 fields"),
        ("10,20,30,40,9", r"defect type 9 is not a DeepPCB type"),
        ("10,x,30,40,1", r"non-numeric field"),
        ("30,20,10,40,1", r"x2 <= x1"),
    ],
)
def test_bad_box_lines_name_file_and_line(line: str, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        parse_box_line(line, where="a.txt line 3")


def test_read_boxes_clips_to_image_and_reports_line(tmp_path: Path) -> None:
    path = tmp_path / "b.txt"
    path.write_text("0,0,10,10,1\n\n630,630,660,650,2\n")
    assert read_boxes(path, width=640, height=640) == [Box(0, 0, 10, 10, 1), Box(630, 630, 640, 640, 2)]
    path.write_text("1,1,5,5,1\n700,700,720,720,1\n")
    with pytest.raises(ContractError, match=r"b.txt line 2: box lies outside the 640x640 image"):
        read_boxes(path, width=640, height=640)


def test_box_fully_inside_gives_its_type() -> None:
    verdict = label_crop(WIN, [Box(120, 120, 140, 150, 1)])
    assert (verdict.label, verdict.reason) == ("open", "defect")


def test_box_mostly_inside_gives_its_type_and_partly_inside_drops() -> None:
    # 20x20 box; 16 of 20 columns inside = 80 % >= 70 %
    assert label_crop(WIN, [Box(148, 120, 168, 140, 4)]).label == "spur"
    # 10 of 20 columns inside = 50 %
    verdict = label_crop(WIN, [Box(154, 120, 174, 140, 4)])
    assert (verdict.label, verdict.reason) == (None, "partial")


def test_box_touching_within_margin_drops_and_far_box_is_pass() -> None:
    touching = label_crop(WIN, [Box(165, 120, 180, 140, 2)], margin=2)  # 1 px outside the window
    assert (touching.label, touching.reason) == (None, "partial")
    assert label_crop(WIN, [Box(170, 120, 180, 140, 2)], margin=2).label == "PASS"
    assert label_crop(WIN, []).label == "PASS"


def test_two_types_inside_drop_but_two_boxes_of_one_type_keep_it() -> None:
    mixed = label_crop(WIN, [Box(105, 105, 120, 120, 5), Box(140, 140, 155, 155, 6)])
    assert (mixed.label, mixed.reason) == (None, "mixed")
    assert label_crop(WIN, [Box(105, 105, 120, 120, 5), Box(140, 140, 155, 155, 5)]).label == "copper"


def test_vectorised_labels_match_single_window_rule() -> None:
    rng = np.random.default_rng(0)
    boxes = [Box(int(x), int(y), int(x) + int(w), int(y) + int(h), int(t)) for x, y, w, h, t in
             zip(rng.integers(0, 200, 12), rng.integers(0, 200, 12), rng.integers(8, 50, 12),
                 rng.integers(8, 50, 12), rng.integers(1, 7, 12))]
    windows = np.array([(x, y, x + 48, y + 48) for x in range(0, 220, 12) for y in range(0, 220, 12)])
    labels, reasons = label_windows(windows, boxes)
    for win, lab, why in zip(windows, labels, reasons):
        single = label_crop(tuple(int(v) for v in win), boxes)  # type: ignore[arg-type]
        assert (single.label, single.reason) == (lab, why)


def test_grid_positions_cover_the_far_edge() -> None:
    assert grid_positions(640, 64, 64) == list(range(0, 577, 64))
    assert grid_positions(200, 64, 64) == [0, 64, 128, 136]


def test_defect_window_contains_box_and_avoids_a_neighbour_of_another_type() -> None:
    target = Box(100, 100, 120, 120, 3)
    neighbour = Box(72, 100, 90, 120, 1)  # 10 px left of the target: the centred crop would catch it
    boxes = [target, neighbour]
    origin = defect_window(target, boxes, crop=64, height=640, width=640, rng=np.random.default_rng(0))
    assert origin is not None
    x, y = origin
    assert label_crop((x, y, x + 64, y + 64), boxes).label == "mousebite"
    assert x <= 100 and x + 64 >= 120


def test_defect_window_refuses_a_box_too_large_and_clips_at_the_edge() -> None:
    rng = np.random.default_rng(0)
    assert defect_window(Box(0, 0, 150, 40, 2), [Box(0, 0, 150, 40, 2)], crop=64, height=640, width=640,
                         rng=rng) is None
    edge = Box(620, 630, 640, 640, 6)
    x, y = defect_window(edge, [edge], crop=64, height=640, width=640, rng=rng)  # type: ignore[misc]
    assert (x, y) == (576, 576)
