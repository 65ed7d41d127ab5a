"""Hypothesis, extending tests/unit/metrics: tie-heavy scores, recall sweeps, the CSV round trip, contracts."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deftpipe.errors import ConfigError, ContractError
from deftpipe.metrics.contract import MetricContract, default_far_contract, select_best
from deftpipe.metrics.evaluators import evaluate_inference_csv, evaluate_scores, per_label_counts
from deftpipe.metrics.far import confusion_at, far_at_recall, threshold_for_far

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Few distinct values: ties between PASS and defect rows are the hard case of the threshold rule.
_tied = st.lists(st.sampled_from([-1e300, -2.0, 0.0, 5e-324, 0.5, 0.5000000000000001, 3.0, 1e300]),
                 min_size=2, max_size=40)
_any = st.lists(st.floats(-1e300, 1e300, allow_nan=False), min_size=2, max_size=40)  # -max float: own test


def _flags(data: st.DataObject, n: int) -> np.ndarray:
    return np.asarray(data.draw(st.lists(st.booleans(), min_size=n, max_size=n).filter(lambda f: any(f) and not all(f))))


@FUZZ
@given(scores=st.one_of(_tied, _any), data=st.data(),
       recalls=st.lists(st.floats(0, 100), min_size=2, max_size=4))
def test_recall_sweep(scores: list[float], data: st.DataObject, recalls: list[float]) -> None:
    s, d = np.asarray(scores), _flags(data, len(scores))
    results = [far_at_recall(s, d, recall_pct=r) for r in sorted(recalls)]
    for r, res in zip(sorted(recalls), results):
        assert 0.0 <= res.far_pct <= 100.0 and 0.0 <= res.recall_pct <= 100.0
        assert res.recall_pct >= r - 1e-6  # reaches the recall (targets forgive 1e-9 of a row: PCT_TOLERANCE)
        again = confusion_at(s, d, res.threshold)
        assert (again.tp, again.fp) == (res.tp, res.fp)
    # asking for more recall never lowers the threshold's FAR, never raises the threshold
    assert all(a.far_pct <= b.far_pct and a.threshold >= b.threshold for a, b in zip(results, results[1:]))


@FUZZ
@given(scores=st.one_of(_tied, _any), data=st.data(), fars=st.lists(st.floats(0, 100), min_size=2, max_size=4))
def test_threshold_for_far_is_monotone(scores: list[float], data: st.DataObject, fars: list[float]) -> None:
    s, d = np.asarray(scores), _flags(data, len(scores))
    ts = [threshold_for_far(s, d, max_far_pct=f) for f in sorted(fars)]
    assert all(a >= b for a, b in zip(ts, ts[1:]))  # a looser FAR budget never needs a higher threshold
    for f, t in zip(sorted(fars), ts):
        assert confusion_at(s, d, t).far_pct <= f + 1e-9


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scores=st.one_of(_tied, _any), data=st.data())
def test_csv_round_trip_equals_in_memory_to_the_last_digit(scores: list[float], data: st.DataObject) -> None:
    d = _flags(data, len(scores))
    labels = ["PASS" if not x else data.draw(st.sampled_from(["open", " Short ", "brïdge"])) for x in d]
    contract = default_far_contract()
    mem = evaluate_scores(np.asarray(scores), d, contract, labels=pd.Series(labels).str.strip().str.lower()
                          .where(~pd.Series(labels).eq("PASS"), "PASS"))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "inference.csv"
        pd.DataFrame({"label": labels, "siamese_score": scores}).to_csv(path, index=False, float_format="%.17g")
        disk = evaluate_inference_csv(path, contract)
    assert (disk.value, disk.threshold, disk.constraints, disk.passed) == (mem.value, mem.threshold,
                                                                           mem.constraints, mem.passed)
    counts = per_label_counts(np.asarray(labels, dtype=object), np.asarray(scores), disk.threshold)
    assert sum(c["n"] for c in counts.values()) == len(scores)


@FUZZ
@given(values=st.lists(st.tuples(st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 100)),
                       min_size=1, max_size=6),
       op=st.sampled_from(["<", "<=", ">", ">="]))
def test_selection_never_prefers_a_non_finite_value(values: list[tuple[float, float]], op: str) -> None:
    from deftpipe.metrics.contract import MetricResult

    contract = MetricContract.from_dict(default_far_contract().to_dict() | {"operator": op})
    results = [MetricResult("far_pct", v, "%", False, {"recall_pct": r}) for v, r in values]
    best, passes = select_best(results, contract)
    meets = [i for i, (_, r) in enumerate(values) if r >= 100]
    pool = meets or list(range(len(values)))  # SPEC §3: constraints first, then the direction-best
    assert best in pool
    if any(np.isfinite(values[i][0]) for i in pool):
        assert np.isfinite(values[best][0])
    if passes:
        assert best in meets and contract.passes(values[best][0])


@FUZZ
@given(contract=st.dictionaries(st.sampled_from(["name", "display_name", "operator", "target", "unit", "evaluator",
                                                 "constraints"]),
                                st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=4),
                                             lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c,
                                                                                                 max_size=3),
                                             max_leaves=6)))
def test_contract_from_anything_raises_only_config_error(contract: dict) -> None:
    try:
        c = MetricContract.from_dict(contract)
    except ConfigError:
        return
    assert np.isfinite(c.target) and c.operator in ("<", "<=", ">", ">=")


def test_lowest_float_score_is_refused_not_turned_into_an_infinite_threshold(tmp_path: Path) -> None:
    lowest = -np.finfo(np.float64).max
    with pytest.raises(ContractError, match=r"is the most negative float; no finite threshold lies below it"):
        far_at_recall(np.array([lowest, 0.0]), np.array([True, False]))
    csv = tmp_path / "inference.csv"
    pd.DataFrame({"label": ["open", "PASS"], "siamese_score": [lowest, 0.0]}).to_csv(csv, index=False,
                                                                                    float_format="%.17g")
    with pytest.raises(ContractError, match="most negative float"):
        evaluate_inference_csv(csv, default_far_contract(), out_json=tmp_path / "metric_result.json")
    assert not (tmp_path / "metric_result.json").exists()


def test_tied_defect_and_pass_at_the_threshold_is_flagged_conservatively() -> None:
    # the only defect ties a PASS: reaching 100 % recall flags both (FAR counts the tied PASS)
    res = far_at_recall(np.array([0.5, 0.5, 0.1]), np.array([True, False, False]))
    assert (res.tp, res.fp, res.far_pct) == (1, 1, 50.0)
    with pytest.raises(ContractError, match="non-finite siamese_score"):
        far_at_recall(np.array([0.5, np.inf]), np.array([True, False]))
