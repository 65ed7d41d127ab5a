from __future__ import annotations

import numpy as np
import pytest

from deftpipe.errors import ConfigError
from deftpipe.importers._splits import allocate, assign_splits, parse_splits, select_split

DEFAULT = "train=0.4,validation=0.15,kpi=0.15,holdout=0.1,pool=0.2"


def test_parse_splits_keeps_order_and_drops_zero_optional_splits() -> None:
    assert list(parse_splits(DEFAULT)) == ["train", "validation", "kpi", "holdout", "pool"]
    assert parse_splits("kpi=0.2, train=0.6,validation=0.2,holdout=0") == pytest.approx(
        {"train": 0.6, "validation": 0.2, "kpi": 0.2})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train=0.5,validaton=0.3,kpi=0.2", r"unknown split 'validaton'.*Did you mean 'validation'"),
        ("train=0.5,validation=0.5", r"kpi must have a fraction above 0"),
        ("train=0.5,validation=0.3,kpi=0.4", r"add up to 1\.2, not 1"),
        ("train=half,validation=0.5,kpi=0.5", r"needs a number after '='"),
        ("train,validation=0.5,kpi=0.5", r"'train' has no '='"),
    ],
)
def test_parse_splits_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_splits(text)


def test_allocate_gives_every_split_at_least_one_image() -> None:
    counts = allocate(5, parse_splits(DEFAULT), where="t")
    assert sum(counts.values()) == 5 and min(counts.values()) == 1
    assert allocate(100, parse_splits(DEFAULT), where="t") == {
        "train": 40, "validation": 15, "kpi": 15, "holdout": 10, "pool": 20}
    with pytest.raises(ConfigError, match=r"4 image\(s\) cannot fill 5 splits"):
        allocate(4, parse_splits(DEFAULT), where="t")


def _images(groups: dict[str, int]) -> dict[str, str]:
    return {f"{g}_{k:03d}": g for g, n in groups.items() for k in range(n)}


def test_groups_seen_in_training_never_reach_kpi_or_holdout() -> None:
    group_of = _images({"g1": 40, "g2": 30, "g3": 20, "g4": 10})
    plan = assign_splits(group_of, parse_splits(DEFAULT), seed=3)
    assert plan.strategy == "groups"
    train_side = {group_of[i] for i, s in plan.split_of.items() if s in ("train", "validation", "pool")}
    test_side = {group_of[i] for i, s in plan.split_of.items() if s in ("kpi", "holdout")}
    assert train_side and test_side and not (train_side & test_side)
    assert set(plan.split_of) == set(group_of)  # every image exactly once
    assert set(plan.split_of.values()) == {"train", "validation", "kpi", "holdout", "pool"}


def test_one_group_splits_by_image_and_seed_is_deterministic() -> None:
    group_of = _images({"g1": 50})
    a = assign_splits(group_of, parse_splits(DEFAULT), seed=0)
    assert a.strategy == "images"
    assert a == assign_splits(group_of, parse_splits(DEFAULT), seed=0)
    assert a.split_of != assign_splits(group_of, parse_splits(DEFAULT), seed=1).split_of


def test_too_few_images_per_side_falls_back_to_image_split() -> None:
    # one image per group: no group subset can feed both kpi and holdout
    plan = assign_splits(_images({"g1": 4, "g2": 1}), parse_splits(DEFAULT), seed=0)
    assert plan.strategy == "images"


def _crops(n_images: int, n_def: int, n_pass: int) -> tuple[dict, dict]:
    defects = {f"i{k}": [(f"i{k}", j, 0, "open") for j in range(n_def)] for k in range(n_images)}
    passes = {f"i{k}": [(f"i{k}", j, 1, "PASS") for j in range(n_pass)] for k in range(n_images)}
    return defects, passes


def test_select_split_reaches_the_pass_ratio_and_keeps_every_defect() -> None:
    defects, passes = _crops(4, 5, 100)
    sel = select_split(defects, passes, pass_ratio=0.9, max_per_split=8000, rng=np.random.default_rng(0))
    labels = [c[3] for c in sel.crops]
    assert labels.count("open") == 20 and labels.count("PASS") == 180
    # PASS drawn evenly: 45 from each image
    assert {sum(1 for c in sel.crops if c[0] == f"i{k}" and c[3] == "PASS") for k in range(4)} == {45}


def test_select_split_caps_rows_and_reports_dropped_defects() -> None:
    defects, passes = _crops(4, 50, 1000)
    sel = select_split(defects, passes, pass_ratio=0.9, max_per_split=500, rng=np.random.default_rng(0))
    assert len(sel.crops) == 500
    assert sum(c[3] == "open" for c in sel.crops) == 50 and sel.n_defect_capped == 150


def test_select_split_with_few_pass_keeps_defects() -> None:
    defects, passes = _crops(2, 10, 3)
    sel = select_split(defects, passes, pass_ratio=0.9, max_per_split=8000, rng=np.random.default_rng(0))
    assert sum(c[3] == "open" for c in sel.crops) == 20 and sum(c[3] == "PASS" for c in sel.crops) == 6
