"""The AutoML search space as data: swept parameters with declared ranges, plus pinned values.

Parses `key=loguniform(1e-5,1e-2)`-style strings (CLI or YAML) into `ParamSpec`s that
map one-to-one onto Optuna distributions. Values never leave their declared range,
booleans are only True/False, and learning rates are always searched on a log scale.
"""
from __future__ import annotations

import copy
import difflib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from deftpipe.errors import ConfigError

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

KINDS: tuple[str, ...] = ("loguniform", "uniform", "int", "logint", "choice", "bool")
# Budget keys: multi-fidelity algorithms vary them per rung, so they never enter best_rec `specs`.
BUDGET_KEYS: tuple[str, ...] = ("train.num_epochs",)
DEFAULT_PIN_KEYS: tuple[str, ...] = ("train.num_epochs", "dataset.classify.batch_size")
DEFAULT_SPACE_TEXT: tuple[str, ...] = (
    "train.optim.lr=loguniform(1e-5,1e-2)",
    "train.optim.weight_decay=loguniform(1e-6,1e-2)",
    "train.optim.optim=choice(adamw,adam,sgd)",
    "train.classify.cls_weight.1=uniform(1,20)",
)
GRID_POINTS = 3  # points per continuous axis when `grid` discretizes the space
_EXPR = re.compile(r"^\s*([A-Za-z_]+)\s*\((.*)\)\s*$", re.DOTALL)
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.([A-Za-z_][A-Za-z0-9_]*|\d+))*$")


def is_learning_rate(key: str) -> bool:
    """`train.optim.lr`, `*.learning_rate`, `*_lr`: keys whose values span decades."""
    leaf = key.rsplit(".", 1)[-1].lower()
    return leaf in ("lr", "learning_rate") or leaf.endswith("_lr")


@dataclass(frozen=True)
class ParamSpec:
    """One swept parameter: a dotted spec key (list indices allowed, e.g. `train.classify.cls_weight.1`)."""

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        where = f"search space '{self.key}'"
        if self.kind not in KINDS:
            near = difflib.get_close_matches(self.kind, KINDS, n=1)
            tip = f" Did you mean '{near[0]}'?" if near else ""
            raise ConfigError(f"{where}: unknown distribution '{self.kind}'; choose one of {list(KINDS)}.{tip}")
        if self.kind in ("loguniform", "uniform", "int", "logint"):
            if self.low is None or self.high is None or not all(map(math.isfinite, (self.low, self.high))):
                raise ConfigError(f"{where}: {self.kind} needs two finite bounds, e.g. {self.kind}(1,10).")
            if not self.low < self.high:
                raise ConfigError(f"{where}: lower bound {self.low:g} must be below upper bound {self.high:g}.")
            if self.kind in ("loguniform", "logint") and self.low <= 0:
                raise ConfigError(f"{where}: {self.kind} needs a positive lower bound, got {self.low:g}.")
            if self.kind in ("int", "logint") and (self.low != int(self.low) or self.high != int(self.high)):
                raise ConfigError(f"{where}: {self.kind} bounds must be whole numbers, got ({self.low:g}, {self.high:g}).")
        if self.kind == "choice":
            if not self.choices:
                raise ConfigError(f"{where}: choice() needs at least one option, e.g. choice(adamw,sgd).")
            if len(set(map(repr, self.choices))) != len(self.choices):
                raise ConfigError(f"{where}: choice{self.choices} repeats an option; list each once.")
        if is_learning_rate(self.key) and self.kind not in ("loguniform", "choice"):
            raise ConfigError(
                f"{where}: a learning rate spans decades and must be searched on a log scale; "
                f"write {self.key}=loguniform({self.low:g},{self.high:g}) instead of {self.kind}(...)."
            )

    @property
    def log(self) -> bool:
        return self.kind in ("loguniform", "logint")

    def distribution(self) -> BaseDistribution:
        """The Optuna distribution; identical for every process that parses the same text."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.kind in ("loguniform", "uniform"):
            return FloatDistribution(float(self.low), float(self.high), log=self.log)  # type: ignore[arg-type]
        if self.kind in ("int", "logint"):
            return IntDistribution(int(self.low), int(self.high), log=self.log)  # type: ignore[arg-type]
        if self.kind == "bool":
            return CategoricalDistribution((False, True))
        return CategoricalDistribution(self.choices)

    def contains(self, value: Any) -> bool:
        if self.kind == "bool":
            return value is True or value is False
        if self.kind == "choice":
            return any(type(value) is type(c) and value == c for c in self.choices)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind in ("int", "logint") and not float(value).is_integer():
            return False
        return float(self.low) <= float(value) <= float(self.high)  # type: ignore[arg-type]

    def grid(self, n_points: int = GRID_POINTS) -> list[Any]:
        """Discretized values for `grid`: ends included, geometric for log scales, never outside the range."""
        if self.kind == "bool":
            return [False, True]
        if self.kind == "choice":
            return list(self.choices)
        lo, hi = float(self.low), float(self.high)  # type: ignore[arg-type]
        if self.log:
            pts = [math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * i / (n_points - 1)) for i in range(n_points)]
        else:
            pts = [lo + (hi - lo) * i / (n_points - 1) for i in range(n_points)]
        pts[0], pts[-1] = lo, hi  # exp/log round trips must not step outside the bounds
        pts = [min(max(p, lo), hi) for p in pts]
        if self.kind in ("int", "logint"):
            return sorted({int(round(p)) for p in pts})
        return pts

    def expression(self) -> str:
        if self.kind == "bool":
            return "bool()"
        if self.kind == "choice":
            return "choice(" + ",".join(str(c) for c in self.choices) + ")"
        fmt = (lambda v: str(int(v))) if self.kind in ("int", "logint") else (lambda v: f"{v:g}")
        return f"{self.kind}({fmt(self.low)},{fmt(self.high)})"

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "low": self.low, "high": self.high, "choices": list(self.choices)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ParamSpec:
        return cls(key=str(d["key"]), kind=str(d["kind"]), low=d.get("low"), high=d.get("high"),
                   choices=tuple(d.get("choices") or ()))


def _scalar(text: str, *, where: str) -> Any:
    raw = text.strip()
    try:
        value = yaml.safe_load(raw) if raw else raw
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: '{raw}' is not a valid value ({exc}).") from exc
    if isinstance(value, str) and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+", value):
        return float(value)  # YAML 1.1 reads 1e-5 as a string
    return value


def _number(text: str, *, where: str) -> float:
    value = _scalar(text, where=where)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: bound '{text.strip()}' is not a number.")
    return float(value)


def parse_expression(key: str, expr: str) -> ParamSpec:
    """`loguniform(1e-5,1e-2)` for `key` -> ParamSpec; ConfigError with a suggestion otherwise."""
    where = f"search space '{key}'"
    m = _EXPR.match(expr)
    if not m:
        raise ConfigError(
            f"{where}: '{expr}' is not a distribution; write e.g. loguniform(1e-5,1e-2), uniform(0,1), int(8,64), "
            "choice(adamw,sgd) or bool()."
        )
    kind, args_text = m.group(1).lower(), m.group(2).strip()
    kind = {"log_uniform": "loguniform", "categorical": "choice", "bool": "bool"}.get(kind, kind)
    if kind not in KINDS:
        near = difflib.get_close_matches(kind, KINDS, n=1)
        tip = f" Did you mean '{near[0]}'?" if near else ""
        raise ConfigError(f"{where}: unknown distribution '{m.group(1)}'; choose one of {list(KINDS)}.{tip}")
    args = [a for a in (s.strip() for s in args_text.split(",")) if a] if args_text else []
    if kind == "bool":
        if args:
            raise ConfigError(f"{where}: bool() takes no arguments (it samples True or False), got bool({args_text}).")
        return ParamSpec(key, "bool")
    if kind == "choice":
        return ParamSpec(key, "choice", choices=tuple(_scalar(a, where=where) for a in args))
    if len(args) != 2:
        raise ConfigError(f"{where}: {kind}() takes two bounds (low,high), got {len(args)}: '{expr}'.")
    return ParamSpec(key, kind, low=_number(args[0], where=where), high=_number(args[1], where=where))


def parse_param(text: str) -> ParamSpec:
    """`train.optim.lr=loguniform(1e-5,1e-2)` -> ParamSpec."""
    if "=" not in text:
        raise ConfigError(f"--param '{text}': expected key=distribution, e.g. train.optim.lr=loguniform(1e-5,1e-2).")
    key, expr = text.split("=", 1)
    key = key.strip()
    if not _KEY.match(key):
        raise ConfigError(f"--param '{text}': '{key}' is not a dotted spec key such as train.optim.lr.")
    return parse_expression(key, expr)


def _flat_keys(tree: Any, prefix: str = "") -> list[str]:
    out: list[str] = []
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            out.append(f"{prefix}{k}")
            out.extend(_flat_keys(v, f"{prefix}{k}."))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out.append(f"{prefix}{i}")
            out.extend(_flat_keys(v, f"{prefix}{i}."))
    return out


def get_value(spec: Mapping[str, Any], key: str) -> Any:
    node: Any = spec
    for part in key.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            raise KeyError(key)
    return node


def set_value(spec: dict[str, Any], key: str, value: Any) -> None:
    """Set a dotted key, indexing into lists for numeric parts (`train.classify.cls_weight.1`)."""
    parts = key.split(".")
    node: Any = spec
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(node, list):
            node = node[int(part)]
        else:
            if part not in node or node[part] is None:
                node[part] = [] if nxt.isdigit() else {}
            node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        idx = int(last)
        if idx >= len(node):
            raise ConfigError(f"'{key}': index {idx} is past the end of a list of {len(node)} item(s).")
        node[idx] = value
    else:
        node[last] = value


@dataclass(frozen=True)
class SearchSpace:
    """Swept parameters (in declaration order) and pinned values.

    Example:
        space = SearchSpace.build(["train.optim.lr=loguniform(1e-5,1e-2)"], pins={"train.num_epochs": 10})
    """

    params: tuple[ParamSpec, ...]
    pins: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def default(cls) -> SearchSpace:
        return cls(tuple(parse_param(t) for t in DEFAULT_SPACE_TEXT))

    @classmethod
    def build(cls, params: Iterable[ParamSpec | str] = (), *, pins: Mapping[str, Any] | None = None) -> SearchSpace:
        specs = tuple(p if isinstance(p, ParamSpec) else parse_param(p) for p in params)
        keys = [p.key for p in specs]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ConfigError(f"search space: parameter(s) {dup} declared twice; keep one declaration each.")
        both = sorted(set(keys) & set(pins or {}))
        if both:
            raise ConfigError(f"search space: {both} are both swept and pinned; drop the --pin or the --param.")
        return cls(specs, dict(pins or {}))

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(p.key for p in self.params)

    def distributions(self) -> dict[str, BaseDistribution]:
        return {p.key: p.distribution() for p in self.params}

    def grid(self, n_points: int = GRID_POINTS) -> dict[str, list[Any]]:
        return {p.key: p.grid(n_points) for p in self.params}

    def grid_size(self, n_points: int = GRID_POINTS) -> int:
        return math.prod(len(v) for v in self.grid(n_points).values()) if self.params else 1

    def check_against(self, spec: Mapping[str, Any], *, source: str = "spec") -> None:
        """Every swept/pinned key must exist in `spec` (typos get a suggestion); list indices must be in range."""
        known = _flat_keys(spec)
        for key in [*self.keys, *self.pins]:
            try:
                get_value(spec, key)
            except KeyError:
                near = difflib.get_close_matches(key, known, n=1, cutoff=0.7)
                tip = f" Did you mean '{near[0]}'?" if near else " Add it to the spec first or fix the key."
                raise ConfigError(f"search space: key '{key}' is not in {source}.{tip}") from None

    def apply(self, spec: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of `spec` with pins, then the trial's `values`, set. Raises ConfigError for out-of-range values."""
        out = copy.deepcopy(dict(spec))
        for key, value in self.pins.items():
            set_value(out, key, value)
        by_key = {p.key: p for p in self.params}
        for key, value in values.items():
            p = by_key.get(key)
            if p is None:
                near = difflib.get_close_matches(key, list(by_key), n=1)
                tip = f" Did you mean '{near[0]}'?" if near else ""
                raise ConfigError(f"trial parameter '{key}' is not in the search space {list(by_key)}.{tip}")
            if not p.contains(value):
                raise ConfigError(f"trial parameter '{key}'={value!r} is outside its declared range {p.expression()}.")
            set_value(out, key, value)
        return out

    def with_lr_scale(self, scale: float) -> SearchSpace:
        """A copy whose learning-rate ranges are multiplied by `scale` (warm-started searches fine-tune, so they
        search the same decades shifted down, like the DEFT fine-tune's `finetune_lr_scale`)."""
        if not scale > 0:
            raise ConfigError(f"learning-rate scale must be > 0, got {scale}.")
        if scale == 1:
            return self
        return SearchSpace(tuple(_lr_scaled(p, scale) if is_learning_rate(p.key) else p for p in self.params),
                           dict(self.pins))

    def to_dict(self) -> dict[str, Any]:
        return {"params": [p.to_dict() for p in self.params], "pins": dict(self.pins)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SearchSpace:
        return cls(tuple(ParamSpec.from_dict(p) for p in d.get("params", [])), dict(d.get("pins") or {}))

    def describe(self) -> list[str]:
        lines = [f"{p.key} ~ {p.expression()}" for p in self.params]
        lines += [f"{k} = {v!r} (pinned)" for k, v in self.pins.items()]
        return lines


def _lr_scaled(p: ParamSpec, scale: float) -> ParamSpec:
    if p.kind == "loguniform" and p.low is not None and p.high is not None:
        return replace(p, low=p.low * scale, high=p.high * scale)
    if p.kind == "choice":
        return replace(p, choices=tuple(c * scale if isinstance(c, (int, float)) and not isinstance(c, bool) else c
                                        for c in p.choices))
    return p


def parse_pin(text: str) -> tuple[str, Any]:
    """`dataset.classify.batch_size=16` -> ('dataset.classify.batch_size', 16)."""
    if "=" not in text:
        raise ConfigError(f"--pin '{text}': expected key=value, e.g. dataset.classify.batch_size=16.")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not _KEY.match(key):
        raise ConfigError(f"--pin '{text}': '{key}' is not a dotted spec key.")
    return key, _scalar(raw, where=f"--pin '{text}'")


def load_space_file(path: Path | str) -> tuple[list[ParamSpec], dict[str, Any]]:
    """Read a YAML space file: either `{key: expr}` or `{params: {key: expr}, pins: {key: value}}`.

    An expr may also be a mapping `{type: loguniform, low: 1e-5, high: 1e-2}` or `{type: choice, choices: [...]}`.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--space {path}: file not found; write a YAML mapping key: loguniform(1e-5,1e-2).")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"--space {path}: YAML syntax error ({exc}); fix the file.") from exc
    if not isinstance(raw, Mapping):
        raise ConfigError(f"--space {path}: expected a mapping of key: distribution, got {type(raw).__name__}.")
    sections = {"params", "pins"}
    if set(raw) <= sections and raw:
        params_raw, pins_raw = raw.get("params") or {}, raw.get("pins") or {}
    else:
        params_raw, pins_raw = raw, {}
    if not isinstance(params_raw, Mapping) or not isinstance(pins_raw, Mapping):
        raise ConfigError(f"--space {path}: 'params' and 'pins' must be mappings.")
    specs: list[ParamSpec] = []
    for key, expr in params_raw.items():
        key = str(key)
        if not _KEY.match(key):
            raise ConfigError(f"--space {path}: '{key}' is not a dotted spec key such as train.optim.lr.")
        if isinstance(expr, Mapping):
            kind = str(expr.get("type", ""))
            if kind == "choice":
                specs.append(ParamSpec(key, "choice", choices=tuple(expr.get("choices") or ())))
            else:
                specs.append(ParamSpec(key, kind, low=_opt_float(expr.get("low")), high=_opt_float(expr.get("high"))))
        elif isinstance(expr, str):
            specs.append(parse_expression(key, expr))
        else:
            raise ConfigError(f"--space {path}: '{key}': expected a string such as uniform(0,1), got {expr!r}.")
    return specs, {str(k): v for k, v in pins_raw.items()}


def _opt_float(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, str):
        v = _scalar(v, where="space file")
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ConfigError(f"space file: bound {v!r} is not a number.")
    return float(v)


def resolve_space(spec: Mapping[str, Any], *, params: Sequence[ParamSpec | str] | None = None,
                  space_file: Path | str | None = None, pins: Mapping[str, Any] | None = None,
                  epochs: int | None = None) -> SearchSpace:
    """Combine file + CLI params (CLI wins per key) and pins; default pins come from `spec` unless swept.

    With neither a file nor params, the default optimizer space is used.
    """
    declared: dict[str, ParamSpec] = {}
    file_pins: dict[str, Any] = {}
    if space_file is not None:
        file_specs, file_pins = load_space_file(space_file)
        declared.update({p.key: p for p in file_specs})
    for p in params or ():
        ps = p if isinstance(p, ParamSpec) else parse_param(p)
        declared[ps.key] = ps
    if not declared:
        declared = {p.key: p for p in SearchSpace.default().params}
    user_pins = {**file_pins, **dict(pins or {})}
    if epochs is not None:
        if "train.num_epochs" in declared:
            raise ConfigError("--epochs pins train.num_epochs, which is also swept; drop one of them.")
        user_pins["train.num_epochs"] = int(epochs)
    final_pins: dict[str, Any] = {}
    for key in DEFAULT_PIN_KEYS:
        if key in declared:
            continue  # named in the space: swept, not pinned
        if key in user_pins:
            final_pins[key] = user_pins[key]
        else:
            try:
                final_pins[key] = get_value(spec, key)
            except KeyError:
                continue
    for key, value in user_pins.items():
        final_pins.setdefault(key, value)
    space = SearchSpace.build(list(declared.values()), pins=final_pins)
    space.check_against(spec)
    return space
