"""Metric contract validation, direction from the operator, the selection rule of SPEC §3."""
from __future__ import annotations

import math

import pytest

from deftpipe.errors import ConfigError
from deftpipe.metrics.contract import Constraint, MetricContract, MetricResult, default_far_contract, select_best


def res(value: float, recall: float = 100.0, name: str = "far_pct") -> MetricResult:
    return MetricResult(name=name, value=value, unit="%", passed=False, constraints={"recall_pct": recall})


def test_default_far_contract_shape_and_kpi_target() -> None:
    c = default_far_contract()
    d = c.to_dict()
    assert (d["name"], d["operator"], d["target"], d["unit"]) == ("far_pct", "<", 5.0, "%")
    assert d["evaluator"]["type"] == "builtin" and d["evaluator"]["id"] == "far_at_recall"
    assert d["constraints"] == [{"name": "recall_pct", "display_name": "Recall", "operator": ">=",
                                 "target": 100.0, "unit": "%"}]
    assert c.kpi_target() == "FAR < 5% at Recall=100%"
    assert default_far_contract(2.5, 99.0).kpi_target() == "FAR < 2.5% at Recall>=99%"
    assert MetricContract.from_dict(d) == c


def test_unknown_operator_lists_choices() -> None:
    d = default_far_contract().to_dict() | {"operator": "=<"}
    with pytest.raises(ConfigError, match=r"unknown operator '=<'; choose one of \['<', '<=', '>', '>='\]"):
        MetricContract.from_dict(d, source="run.yaml:metric_contract")


def test_bad_name_nan_target_bad_constraint() -> None:
    base = default_far_contract().to_dict()
    with pytest.raises(ConfigError, match=r"name 'FAR-pct' must match \[a-z\]\[a-z0-9_\]\*"):
        MetricContract.from_dict(base | {"name": "FAR-pct"})
    with pytest.raises(ConfigError, match="target must be a finite number, got nan"):
        MetricContract.from_dict(base | {"target": math.nan})
    with pytest.raises(ConfigError, match="target must be a finite number"):
        MetricContract.from_dict(base | {"target": True})
    bad_c = base | {"constraints": [{"name": "recall_pct", "operator": "!=", "target": 1}]}
    with pytest.raises(ConfigError, match=r"constraints\[0\].recall_pct: unknown operator"):
        MetricContract.from_dict(bad_c)
    with pytest.raises(ConfigError, match=r"missing key\(s\) \['operator'\]"):
        MetricContract.from_dict({"name": "x", "target": 1})
    with pytest.raises(ConfigError, match="unknown evaluator type 'bultin'.*Did you mean 'builtin'"):
        MetricContract.from_dict(base | {"evaluator": {"type": "bultin", "id": "far_at_recall"}})
    with pytest.raises(ConfigError, match=r"args: must be a list of strings"):
        MetricContract.from_dict(base | {"evaluator": {"type": "command", "path": "/bin/x", "args": "a b"}})
    dup = base | {"constraints": base["constraints"] * 2}
    with pytest.raises(ConfigError, match="repeated"):
        MetricContract.from_dict(dup)


def test_direction_comes_from_operator_never_from_name() -> None:
    c = MetricContract.from_dict(default_far_contract().to_dict() | {"operator": ">"})
    assert c.name == "far_pct"
    assert c.is_better(10.0, 2.0) and not c.is_better(2.0, 10.0)
    assert c.passes(6.0) and not c.passes(5.0)
    idx, ok = select_best([res(2.0), res(10.0)], c)
    assert (idx, ok) == (1, True)
    low = default_far_contract()
    assert low.is_better(2.0, 10.0)
    assert low.passes(4.99) and not low.passes(5.0) and not low.passes(math.nan)
    assert not low.is_better(math.nan, 1.0) and low.is_better(1.0, math.nan)


def test_selection_keeps_constraint_meeting_candidates_first() -> None:
    c = default_far_contract()
    # best FAR (0.5) misses the recall constraint; 3.0 meets it and passes the target
    idx, ok = select_best([res(0.5, recall=99.0), res(3.0), res(4.0)], c)
    assert (idx, ok) == (1, True)
    # constraint met but primary fails the target
    idx, ok = select_best([res(7.0), res(6.0)], c)
    assert (idx, ok) == (1, False)
    # nobody meets the constraints: direction-best over all, not passing
    idx, ok = select_best([res(9.0, 90.0), res(1.0, 95.0)], c)
    assert (idx, ok) == (1, False)
    # a missing constraint value counts as not met; ties keep the first
    missing = MetricResult("far_pct", 1.0, "%", True, {})
    assert select_best([missing, res(2.0), res(2.0)], c) == (1, True)
    with pytest.raises(ValueError, match="at least one candidate"):
        select_best([], c)


def test_constraint_describe_and_passes() -> None:
    k = Constraint("auroc", "AUROC", ">", 0.9, "")
    assert k.describe() == "AUROC>0.9" and k.passes(0.95) and not k.passes(0.9)
