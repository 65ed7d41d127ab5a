"""Split plans of the demo dataset: sizes, PASS share, planted gaps, determinism (no rendering)."""
from __future__ import annotations

import pytest

from deftpipe.demo._plan import allocate_labels, split_table
from deftpipe.demo.catalog import ALLOWED_KINDS, GAP_LABELS, SCALES, SPLITS, resolve_scale
from deftpipe.errors import ConfigError
from deftpipe.workspace.layout import PASS_LABEL

PLANS = {plan.name: plan for plan in SPLITS}


@pytest.mark.parametrize("scale", sorted(SCALES))
def test_every_split_is_pass_dominant_and_sized_by_scale(scale: str) -> None:
    cfg = SCALES[scale]
    for plan in SPLITS:
        counts = allocate_labels(cfg.n_rows(plan.name), plan)
        n = sum(counts.values())
        assert n == cfg.n_rows(plan.name)
        assert 0.85 <= counts[PASS_LABEL] / n <= 0.92, (scale, plan.name, counts)
    assert cfg.n_rows("holdout") == cfg.n_rows("kpi")


def test_scale_sizes_follow_the_spec() -> None:
    got = {name: (c.n_train, c.n_val, c.n_kpi, c.n_pool, c.image_size) for name, c in SCALES.items()}
    assert got["tiny"] == (120, 40, 60, 60, 32)
    assert got["small"] == (400, 120, 200, 300, 64)
    assert got["medium"] == (1500, 400, 600, 2000, 64)
    assert got["large"] == (15000, 4000, 6000, 20000, 64)


@pytest.mark.parametrize("scale", sorted(SCALES))
def test_planted_gaps_are_rare_in_base_data_and_present_in_kpi_holdout_pool(scale: str) -> None:
    cfg = SCALES[scale]
    for name in ("train", "val"):
        counts = allocate_labels(cfg.n_rows(name), PLANS[name])
        n = sum(counts.values())
        assert counts["bridge"] == 0
        for label in GAP_LABELS:
            assert counts[label] <= 0.01 * n, (scale, name, label, counts[label])
    for name in ("kpi", "holdout", "pool"):
        counts = allocate_labels(cfg.n_rows(name), PLANS[name])
        for label in GAP_LABELS:
            assert counts[label] >= 1, (scale, name, label)
    pool = allocate_labels(cfg.n_rows("pool"), PLANS["pool"])
    defects = sum(pool.values()) - pool[PASS_LABEL]
    assert sum(pool[label] for label in GAP_LABELS) >= 0.5 * defects  # the pool is rich in the gap labels


def test_small_base_training_covers_every_non_gap_defect() -> None:
    counts = allocate_labels(400, PLANS["train"])
    for label in ("missing", "shift", "tombstone", "excess_solder", "insufficient_solder", "scratch"):
        assert counts[label] >= 5, label


def test_split_table_is_deterministic_and_seed_dependent() -> None:
    cfg = SCALES["tiny"]
    a = split_table(cfg, PLANS["kpi"], 0)
    b = split_table(cfg, PLANS["kpi"], 0)
    c = split_table(cfg, PLANS["kpi"], 1)
    assert a.equals(b)
    assert not a.equals(c)


def test_split_rows_are_unique_named_by_split_and_physically_possible() -> None:
    cfg = SCALES["tiny"]
    boards: dict[str, set[str]] = {}
    for plan in SPLITS:
        table = split_table(cfg, plan, 3)
        assert not table.duplicated(["input_path", "golden_path", "object_name"]).any()
        assert table["input_path"].str.startswith(f"{plan.name}/").all()
        assert table["object_name"].str.fullmatch(r"[RCQU]\d{4}@1").all()
        for label, kind in zip(table["label"], table["component_kind"]):
            assert kind in ALLOWED_KINDS[label]
        boards[plan.name] = set(table["boardname"])
    names = list(boards)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not boards[a] & boards[b]


def test_unknown_scale_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'small'"):
        resolve_scale("smal")


def test_medium_spec_trains_2_epochs_so_make_demo_fits_8_minutes() -> None:
    import yaml

    from deftpipe.demo.workspace import spec_text

    assert SCALES["medium"].num_epochs == 2
    assert {name: c.num_epochs for name, c in SCALES.items() if name != "medium"} == dict.fromkeys(
        ("tiny", "small", "large"))  # the template's 10 epochs
    spec = yaml.safe_load(spec_text(64, num_epochs=2))
    assert spec["train"]["num_epochs"] == 2 and spec["dataset"]["classify"]["image_width"] == 64
    assert yaml.safe_load(spec_text(64))["train"]["num_epochs"] == 10
