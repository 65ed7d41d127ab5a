"""FAR / recall / AUROC: hand-computed cases of SPEC §3 and hypothesis invariants."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deftpipe.errors import ContractError
from deftpipe.metrics.far import (
    auroc,
    candidate_thresholds,
    confusion_at,
    far_at_recall,
    far_curve,
    required_tp,
    threshold_for_far,
)


def arr(*xs: float) -> np.ndarray:
    return np.asarray(xs, dtype=np.float64)


def test_candidates_are_unique_scores_plus_one_below_the_lowest() -> None:
    c = candidate_thresholds(arr(0.5, 0.1, 0.5, 0.9))
    assert c[0] == np.nextafter(0.1, -np.inf)
    assert list(c[1:]) == [0.1, 0.5, 0.9]


def test_hand_computed_docstring_case() -> None:
    s = arr(0.1, 0.2, 0.9, 0.5, 0.8)
    d = np.array([False, False, False, True, True])
    r = far_at_recall(s, d)
    assert r.threshold == 0.2  # largest candidate still keeping both defects (0.5 > 0.2)
    assert (r.tp, r.fp, r.tn, r.fn, r.n_pass, r.n_defect) == (2, 1, 2, 0, 3, 2)
    assert r.far_pct == 1 / 3 * 100
    assert r.recall_pct == 100.0


def test_lowest_score_defect_gives_threshold_just_below_it() -> None:
    s = arr(0.0, 1.0, 2.0, 3.0)
    d = np.array([True, False, False, True])
    r = far_at_recall(s, d)
    assert r.threshold == np.nextafter(0.0, -np.inf)
    assert r.far_pct == 100.0 and r.recall_pct == 100.0


def test_strict_threshold_rule_score_equal_threshold_is_not_flagged() -> None:
    s = arr(1.0, 2.0, 2.0, 3.0)
    d = np.array([False, False, True, True])
    c = confusion_at(s, d, 2.0)
    assert (c.tp, c.fp) == (1, 0)  # the two rows at exactly 2.0 are not flagged
    c = confusion_at(s, d, np.nextafter(2.0, -np.inf))
    assert (c.tp, c.fp) == (2, 1)


def test_ties_across_classes_flag_the_tied_pass_row() -> None:
    # PASS and defect both at 0.7: keeping the defect flags the PASS too (no way to split a tie).
    s = arr(0.1, 0.7, 0.7, 0.9)
    d = np.array([False, False, True, True])
    r = far_at_recall(s, d)
    assert r.threshold == 0.1
    assert (r.fp, r.tn) == (1, 1) and r.far_pct == 50.0
    assert auroc(s, d) == (1 + 0.5 + 1 + 1) / 4  # the tie counts 1/2


def test_recorded_threshold_is_the_largest_candidate_reaching_recall() -> None:
    rng = np.random.default_rng(0)
    s = rng.normal(size=200)
    d = rng.random(200) < 0.3
    r = far_at_recall(s, d)
    cands = candidate_thresholds(s)
    ok = [t for t in cands if (s[d] > t).sum() == d.sum()]
    assert r.threshold == max(ok)


def test_recall_99_on_100_defects_allows_exactly_one_miss() -> None:
    defects = np.arange(100, dtype=np.float64) + 10.0  # 10 .. 109
    passes = arr(0.0, 5.0, 10.5, 50.0)
    s = np.concatenate([defects, passes])
    d = np.concatenate([np.ones(100, bool), np.zeros(4, bool)])
    r99 = far_at_recall(s, d, recall_pct=99.0)
    assert r99.tp == 99 and r99.fn == 1 and r99.recall_pct == 99.0
    assert r99.threshold == 10.5  # largest candidate below the 2nd-lowest defect (11.0)
    assert r99.fp == 1 and r99.far_pct == 25.0
    r100 = far_at_recall(s, d)
    assert r100.threshold == 5.0 and r100.fp == 2
    assert required_tp(100, 99.0) == 99 and required_tp(1000, 99.9) == 999


def test_all_pass_is_unreachable() -> None:
    with pytest.raises(ContractError, match="unreachable: no defect rows"):
        far_at_recall(arr(0.1, 0.2), np.array([False, False]))


def test_no_pass_rows_far_undefined() -> None:
    with pytest.raises(ContractError, match="FAR undefined: no PASS rows"):
        far_at_recall(arr(0.1, 0.2), np.array([True, True]))
    with pytest.raises(ContractError, match="FAR undefined"):
        threshold_for_far(arr(0.1), np.array([True]), max_far_pct=5.0)


def test_non_finite_score_names_the_first_bad_row() -> None:
    with pytest.raises(ContractError, match=r"non-finite siamese_score nan at score #2 .*2 non-finite in all"):
        far_at_recall(arr(0.1, 0.2, np.nan, np.inf), np.array([False, True, False, True]))
    with pytest.raises(ContractError, match="at line 9"):
        far_at_recall(arr(np.inf, 0.2), np.array([False, True]), row_names=["line 9", "line 10"])


def test_bad_recall_pct_and_length_mismatch() -> None:
    with pytest.raises(ContractError, match=r"recall_pct must be within \[0, 100\]"):
        far_at_recall(arr(0.1, 0.2), np.array([False, True]), recall_pct=101.0)
    with pytest.raises(ContractError, match="differ in length"):
        far_at_recall(arr(0.1, 0.2), np.array([False]))


def test_confusion_at_one_class_gives_nan_rate() -> None:
    c = confusion_at(arr(0.1, 0.9), np.array([False, False]), 0.5)
    assert c.fp == 1 and c.far_pct == 50.0 and np.isnan(c.recall_pct)


def test_threshold_for_far_is_the_smallest_meeting_target() -> None:
    s = arr(0.1, 0.2, 0.3, 0.4, 0.5, 0.9)
    d = np.array([False, False, False, False, True, True])
    # FAR at candidate t: below 0.1 -> 100, 0.1 -> 75, 0.2 -> 50, 0.3 -> 25, 0.4 -> 0
    assert threshold_for_far(s, d, max_far_pct=50.0) == 0.2
    assert threshold_for_far(s, d, max_far_pct=0.0) == 0.4
    assert threshold_for_far(s, d, max_far_pct=100.0) == np.nextafter(0.1, -np.inf)


def test_auroc_perfect_and_inverted() -> None:
    d = np.array([False, False, True, True])
    assert auroc(arr(0, 1, 2, 3), d) == 1.0
    assert auroc(arr(3, 2, 1, 0), d) == 0.0
    assert auroc(arr(1, 1, 1, 1), d) == 0.5


def test_bit_exact_against_a_direct_loop() -> None:
    """The vectorised rule equals a literal reading of SPEC §3 to the last digit."""
    rng = np.random.default_rng(3)
    s = np.round(rng.normal(size=300), 2)  # many ties
    d = rng.random(300) < 0.2
    best = None
    for t in candidate_thresholds(s):
        tp = int(((s > t) & d).sum())
        if tp / (tp + int(((s <= t) & d).sum())) * 100 >= 100:
            best = t
    fp = int(((s > best) & ~d).sum())
    r = far_at_recall(s, d)
    assert r.threshold == best and r.far_pct == fp / (fp + int(((s <= best) & ~d).sum())) * 100


scores_st = st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=2, max_size=60)


@settings(max_examples=25, deadline=None)
@given(scores=scores_st, data=st.data(), recall=st.sampled_from([100.0, 99.0, 90.0, 50.0]))
def test_properties(scores: list[float], data: st.DataObject, recall: float) -> None:
    n = len(scores)
    flags = data.draw(st.lists(st.booleans(), min_size=n, max_size=n).filter(lambda f: any(f) and not all(f)))
    s = np.asarray(scores, dtype=np.float64)
    d = np.asarray(flags)
    r = far_at_recall(s, d, recall_pct=recall)
    assert 0.0 <= r.far_pct <= 100.0 and 0.0 <= r.recall_pct <= 100.0
    assert r.recall_pct >= recall - 1e-9  # recall reached at the recorded threshold
    assert r.tp + r.fn == d.sum() and r.fp + r.tn == (~d).sum()
    nxt = [t for t in candidate_thresholds(s) if t > r.threshold]
    if nxt:  # the next larger candidate no longer reaches the recall
        assert confusion_at(s, d, nxt[0]).recall_pct < recall - 1e-9
    thr, far, rec = far_curve(s, d)
    assert np.all(np.diff(far) <= 0) and np.all(np.diff(rec) <= 0)  # raising t never increases FAR
    a = auroc(s, d)
    assert 0.0 <= a <= 1.0
    t_far = threshold_for_far(s, d, max_far_pct=5.0)
    assert confusion_at(s, d, t_far).far_pct <= 5.0


@settings(max_examples=30, deadline=None)
@given(n_pass=st.integers(1, 20), n_def=st.integers(1, 20), gap=st.floats(0.01, 100))
def test_perfect_separation_auroc_one_far_zero(n_pass: int, n_def: int, gap: float) -> None:
    s = np.concatenate([np.linspace(0, 1, n_pass), 1 + gap + np.linspace(0, 1, n_def)])
    d = np.concatenate([np.zeros(n_pass, bool), np.ones(n_def, bool)])
    assert auroc(s, d) == 1.0
    assert far_at_recall(s, d).far_pct == 0.0
