"""The metric contract of SPEC §3: what is measured, which direction wins, and the selection rule.

A contract is validated once at the boundary (`MetricContract.from_dict`) and is
immutable afterwards. Direction always comes from the operator, never from the
metric's name: a contract `far_pct > 5` prefers larger values.
"""
from __future__ import annotations

import difflib
import math
import operator as _op
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from deftpipe.errors import ConfigError

OPERATORS: dict[str, Callable[[float, float], bool]] = {"<": _op.lt, "<=": _op.le, ">": _op.gt, ">=": _op.ge}
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
EVALUATOR_TYPES = ("builtin", "command", "artifact")


def _check_name(value: Any, *, where: str) -> str:
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise ConfigError(
            f"{where}: name {value!r} must match [a-z][a-z0-9_]* (lowercase letter first, then lowercase "
            "letters, digits or '_'), e.g. 'far_pct'."
        )
    return value


def _check_operator(value: Any, *, where: str) -> str:
    if not isinstance(value, str) or value not in OPERATORS:  # a YAML list or mapping is unhashable
        swapped = [op for op in OPERATORS if sorted(op) == sorted(str(value))]  # '=>' means '>='
        near = swapped or difflib.get_close_matches(str(value), list(OPERATORS), n=1)
        tip = f" Did you mean '{near[0]}'?" if near else ""
        raise ConfigError(f"{where}: unknown operator {value!r}; choose one of {list(OPERATORS)}.{tip}")
    return str(value)


def _check_target(value: Any, *, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ConfigError(f"{where}: target must be a finite number, got {value!r}.")
    return float(value)


def _compare(op: str, value: float, target: float) -> bool:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return False
    return math.isfinite(v) and OPERATORS[op](v, target)


def _fmt_number(x: float) -> str:
    return f"{x:g}"


@dataclass(frozen=True)
class Constraint:
    """A side condition every acceptable candidate must meet, e.g. `recall_pct >= 100`."""

    name: str
    display_name: str
    operator: str
    target: float
    unit: str = ""

    def passes(self, value: float) -> bool:
        return _compare(self.operator, value, self.target)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "display_name": self.display_name, "operator": self.operator,
                "target": self.target, "unit": self.unit}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "metric_contract.constraints") -> Constraint:
        if not isinstance(d, Mapping):
            raise ConfigError(f"{where}: each constraint must be a mapping with name/operator/target, got {d!r}.")
        _require_keys(d, ("name", "operator", "target"), where=where)
        name = _check_name(d["name"], where=where)
        return cls(
            name=name,
            display_name=str(d.get("display_name") or name),
            operator=_check_operator(d["operator"], where=f"{where}.{name}"),
            target=_check_target(d["target"], where=f"{where}.{name}"),
            unit=str(d.get("unit") or ""),
        )

    def describe(self) -> str:
        # "Recall=100%" reads better than "Recall>=100%" for the ceiling of a percentage.
        op = "=" if (self.operator == ">=" and self.unit == "%" and self.target == 100.0) else self.operator
        return f"{self.display_name}{op}{_fmt_number(self.target)}{self.unit}"


def _require_keys(d: Mapping[str, Any], keys: Sequence[str], *, where: str) -> None:
    missing = [k for k in keys if k not in d]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}; present: {sorted(map(str, d))}.")


def _check_evaluator(ev: Any, *, where: str) -> dict[str, Any]:
    if not isinstance(ev, Mapping) or "type" not in ev:
        raise ConfigError(
            f"{where}: evaluator must be a mapping with a 'type' in {list(EVALUATOR_TYPES)}, got {ev!r}; "
            "e.g. {type: builtin, id: far_at_recall}."
        )
    kind = ev["type"]
    if kind not in EVALUATOR_TYPES:
        near = difflib.get_close_matches(str(kind), EVALUATOR_TYPES, n=1)
        tip = f" Did you mean '{near[0]}'?" if near else ""
        raise ConfigError(f"{where}.type: unknown evaluator type {kind!r}; choose one of {list(EVALUATOR_TYPES)}.{tip}")
    need = {"builtin": ("id",), "command": ("path",), "artifact": ("path_template",)}[kind]
    _require_keys(ev, need, where=f"{where} ({kind})")
    if kind == "command":
        args = ev.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, (str, int, float)) for a in args):
            raise ConfigError(f"{where}.args: must be a list of strings (one argv entry each), got {args!r}.")
    return dict(ev)


@dataclass(frozen=True)
class MetricContract:
    """Primary metric + direction + target, how to evaluate it, and constraints.

    Example:
        c = default_far_contract(); c.kpi_target()  # 'FAR < 5% at Recall=100%'
        c.is_better(1.0, 2.0)                       # True: '<' means lower wins
    """

    name: str
    display_name: str
    operator: str
    target: float
    unit: str
    evaluator: dict[str, Any] = field(default_factory=lambda: {"type": "builtin", "id": "far_at_recall"})
    constraints: tuple[Constraint, ...] = ()

    @property
    def lower_is_better(self) -> bool:
        return self.operator in ("<", "<=")

    def is_better(self, a: float, b: float) -> bool:
        """True if `a` is strictly better than `b` in the operator's direction; a non-finite value never wins."""
        fa, fb = float(a), float(b)
        if not math.isfinite(fa):
            return False
        if not math.isfinite(fb):
            return True
        return fa < fb if self.lower_is_better else fa > fb

    def passes(self, value: float) -> bool:
        return _compare(self.operator, value, self.target)

    def constraints_pass(self, values: Mapping[str, float]) -> bool:
        return all(c.name in values and c.passes(values[c.name]) for c in self.constraints)

    def kpi_target(self) -> str:
        head = f"{self.display_name} {self.operator} {_fmt_number(self.target)}{self.unit}"
        if not self.constraints:
            return head
        return head + " at " + ", ".join(c.describe() for c in self.constraints)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "display_name": self.display_name, "operator": self.operator,
            "target": self.target, "unit": self.unit, "evaluator": dict(self.evaluator),
            "constraints": [c.to_dict() for c in self.constraints],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str = "metric_contract") -> MetricContract:
        """Validate and build; raises ConfigError naming `source` and the key at fault."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"{source}: the metric contract must be a mapping, got {type(d).__name__}.")
        _require_keys(d, ("name", "operator", "target"), where=source)
        name = _check_name(d["name"], where=f"{source}.name")
        raw_constraints = d.get("constraints") or []
        if not isinstance(raw_constraints, list):
            raise ConfigError(f"{source}.constraints: must be a list of mappings, got {type(raw_constraints).__name__}.")
        constraints = tuple(Constraint.from_dict(c, where=f"{source}.constraints[{i}]")
                            for i, c in enumerate(raw_constraints))
        names = [c.name for c in constraints]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"{source}.constraints: constraint name(s) {dup} repeated; keep one of each.")
        evaluator = d.get("evaluator") or {"type": "builtin", "id": "far_at_recall"}
        return cls(
            name=name,
            display_name=str(d.get("display_name") or name),
            operator=_check_operator(d["operator"], where=f"{source}.operator"),
            target=_check_target(d["target"], where=f"{source}.target"),
            unit=str(d.get("unit") or ""),
            evaluator=_check_evaluator(evaluator, where=f"{source}.evaluator"),
            constraints=constraints,
        )


def default_far_contract(target_pct: float = 5.0, recall_pct: float = 100.0) -> MetricContract:
    """SPEC §3 default KPI: `far_pct < target_pct` (%) at `recall_pct >= recall_pct`."""
    return MetricContract.from_dict({
        "name": "far_pct", "display_name": "FAR", "operator": "<", "target": target_pct, "unit": "%",
        "evaluator": {"type": "builtin", "id": "far_at_recall", "params": {"recall_pct": recall_pct}},
        "constraints": [{"name": "recall_pct", "display_name": "Recall", "operator": ">=",
                         "target": recall_pct, "unit": "%"}],
    }, source="default_far_contract")


@dataclass(frozen=True)
class MetricResult:
    """One evaluated candidate; `passed` is always computed from the contract, never read from outside."""

    name: str
    value: float
    unit: str
    passed: bool
    constraints: dict[str, float] = field(default_factory=dict)
    threshold: float | None = None
    evidence_path: str | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "value": self.value, "unit": self.unit, "passed": self.passed,
            "constraints": dict(self.constraints), "threshold": self.threshold,
            "evidence_path": self.evidence_path, "diagnostics": dict(self.diagnostics),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], contract: MetricContract, *, source: str = "metric_result") -> MetricResult:
        """Rebuild a stored result, re-deriving `passed` from `contract` (see evaluators.validate_result_json)."""
        from deftpipe.metrics.evaluators import validate_result_json

        return validate_result_json(d, contract, source=source, evidence_path=d.get("evidence_path"))


def select_best(results: Sequence[MetricResult], contract: MetricContract) -> tuple[int, bool]:
    """Index of the chosen candidate and whether it passes (SPEC §3).

    Keep candidates meeting every constraint, then the best primary value by the
    operator's direction (first wins a tie); if none meets the constraints, take
    the direction-best of all and report it as not passing.

    Raises:
        ValueError: `results` is empty (a programming error: callers always have a candidate).
    """
    if not results:
        raise ValueError("select_best needs at least one candidate result")
    ok = [i for i, r in enumerate(results) if contract.constraints_pass(r.constraints)]
    pool = ok if ok else list(range(len(results)))
    best = pool[0]
    for i in pool[1:]:
        if contract.is_better(results[i].value, results[best].value):
            best = i
    passes = bool(ok) and contract.passes(results[best].value)
    return best, passes
