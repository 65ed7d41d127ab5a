"""Budget split: largest remainder by routed-row share, at least one per label while the budget lasts."""
from __future__ import annotations

import pytest

from deftpipe.sdg.allocation import allocate, quotas


def test_exact_shares() -> None:
    assert allocate({"missing": 7, "bridge": 2, "PASS": 1}, 20) == {"missing": 14, "bridge": 4, "PASS": 2}


def test_largest_remainder_gets_the_leftover() -> None:
    # quotas 5.56 / 3.33 / 1.11 -> floors 5/3/1, the one leftover goes to the largest remainder (missing)
    assert allocate({"missing": 5, "bridge": 3, "PASS": 1}, 10) == {"missing": 6, "bridge": 3, "PASS": 1}
    # quotas 2.91 / 2.18 / 2.18 / 0.73 -> floors 2/2/2/0; the two leftovers go to a (.91) and d (.73)
    out = allocate({"a": 4, "b": 3, "c": 3, "d": 1}, 8)
    assert out == {"a": 3, "b": 2, "c": 2, "d": 1}


def test_at_least_one_per_label_taken_from_the_largest() -> None:
    out = allocate({"a": 98, "b": 1, "c": 1}, 10)
    assert out == {"a": 8, "b": 1, "c": 1}
    assert sum(out.values()) == 10


def test_budget_smaller_than_labels() -> None:
    out = allocate({"a": 3, "b": 2, "c": 1}, 2)
    assert sum(out.values()) == 2 and out["c"] == 0 and out["a"] == 1 and out["b"] == 1


@pytest.mark.parametrize("num", [1, 3, 7, 20, 33])
def test_sums_to_budget_and_min_one(num: int) -> None:
    counts = {"missing": 11, "shift": 5, "bridge": 1, "PASS": 2}
    out = allocate(counts, num)
    assert sum(out.values()) == num
    if num >= len(counts):
        assert min(out.values()) >= 1
    assert abs(sum(quotas(counts, num).values()) - num) < 1e-9


def test_zero_budget_and_negative() -> None:
    assert allocate({"a": 2}, 0) == {"a": 0}
    with pytest.raises(ValueError, match="num_sdg must be >= 0"):
        allocate({"a": 2}, -1)
