"""The generator registry: small plug-in classes that paint one kind of defect (or PASS nuisance).

A generator declares `name`, `supported_labels` and `generate(test, golden, rng, params)`
returning `(new_test, mask, params)`; the contract every generator keeps is that
`new_test` equals `test` byte for byte outside `mask`. Generic generators
(`generic = True`) may paint any label and are used only where no specific one fits.

Example:
    @register_generator
    class Smudge(BaseGenerator):
        name = "smudge"
        supported_labels = frozenset({"smudge"})
        def generate(self, test, golden, rng, params): ...
"""
from __future__ import annotations

import difflib
import importlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, TypeVar

import numpy as np

from deftpipe.errors import ConfigError
from deftpipe.workspace.labels import normalize_label

# Modules whose import registers the built-in CPU generators.
_BUILTIN_MODULES: tuple[str, ...] = (
    "deftpipe.sdg.components",
    "deftpipe.sdg.traces",
    "deftpipe.sdg.cutpaste",
    "deftpipe.sdg.nuisance",
)
_REGISTRY: dict[str, BaseGenerator] = {}
_builtins_loaded = False

G = TypeVar("G", bound="BaseGenerator | type[BaseGenerator]")
GenerateOutput = tuple[np.ndarray, np.ndarray, dict[str, Any]]


class GeneratorUnfit(Exception):
    """This base image cannot take this defect (e.g. no trace to cut); the engine tries another base pair."""


class BaseGenerator(ABC):
    """One synthetic-defect generator.

    Attributes:
        name: unique registry key, recorded in `SDG_result.csv`.
        supported_labels: normalized labels it paints (`PASS` for nuisance generators).
        generic: True = may paint any label (fallback when nothing specific fits).
        priority: among several fitting specific generators the highest priority wins.
    """

    name: ClassVar[str] = ""
    supported_labels: ClassVar[frozenset[str]] = frozenset()
    generic: ClassVar[bool] = False
    priority: ClassVar[int] = 0

    def suits(self, golden: np.ndarray) -> bool:
        """Whether this generator can paint on a pair whose golden is `golden` (C, H, W) — e.g. its image domain."""
        return True

    def available(self) -> tuple[bool, str]:
        """(usable now, reason if not); heavy generators say no when weights or devices are missing."""
        return True, ""

    @abstractmethod
    def generate(self, test: np.ndarray, golden: np.ndarray, rng: np.random.Generator,
                 params: Mapping[str, Any]) -> GenerateOutput:
        """Paint onto `test` (C, H, W uint8) using `golden` as the reference layout.

        Returns:
            (new_test uint8 (C, H, W), mask bool (H, W) of every changed pixel, the parameters actually used).
            `params` holds overrides (e.g. `{"label": "bridge"}` for generic generators, or a fixed size).
        """

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} labels={sorted(self.supported_labels)}>"


def register_generator(gen: G, *, replace: bool = False) -> G:
    """Register a generator class (instantiated with no arguments) or instance; usable as a class decorator."""
    instance = gen() if isinstance(gen, type) else gen
    if not isinstance(instance, BaseGenerator):
        raise TypeError(f"{gen!r} is not a BaseGenerator")
    if not instance.name:
        raise ValueError(f"{type(instance).__name__} has no `name`")
    if instance.name in _REGISTRY and not replace:
        raise ValueError(f"SDG generator '{instance.name}' registered twice; pass replace=True to override it")
    _REGISTRY[instance.name] = instance
    return gen


def unregister_generator(name: str) -> None:
    _REGISTRY.pop(name, None)


def _ensure_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)


def registered_generators() -> dict[str, BaseGenerator]:
    """Every registered generator by name (built-ins included)."""
    _ensure_builtins()
    return dict(_REGISTRY)


def get_generator(name: str) -> BaseGenerator:
    gens = registered_generators()
    if name not in gens:
        near = difflib.get_close_matches(name, list(gens), n=1)
        tip = f" Did you mean '{near[0]}'?" if near else ""
        raise ConfigError(f"unknown SDG generator '{name}'; known: {sorted(gens)}.{tip}")
    return gens[name]


def _enabled(enabled: Iterable[str] | None) -> list[BaseGenerator]:
    gens = registered_generators()
    if enabled is None:
        return list(gens.values())
    return [get_generator(n) for n in enabled]


def generators_for(label: str, *, enabled: Iterable[str] | None = None) -> list[BaseGenerator]:
    """The specific (non-generic) generators that paint `label`, highest priority first."""
    key = normalize_label(label)
    found = [g for g in _enabled(enabled) if not g.generic and key in g.supported_labels]
    return sorted(found, key=lambda g: (-g.priority, g.name))


def generic_generators(*, enabled: Iterable[str] | None = None) -> list[BaseGenerator]:
    """Generators flagged `generic` (they paint any defect label), highest priority first."""
    return sorted((g for g in _enabled(enabled) if g.generic), key=lambda g: (-g.priority, g.name))


def supported_labels(*, enabled: Iterable[str] | None = None) -> frozenset[str]:
    """Labels with a specific generator (`PASS` included); generic fallbacks are not counted here."""
    out: set[str] = set()
    for g in _enabled(enabled):
        if not g.generic:
            out |= set(g.supported_labels)
    return frozenset(out)


def supports(label: str, *, generic_fallback: bool = True, enabled: Iterable[str] | None = None) -> bool:
    """Whether the SDG stage can produce samples for `label` (what routing should ask)."""
    if generators_for(label, enabled=enabled):
        return True
    return generic_fallback and normalize_label(label) != "PASS" and bool(generic_generators(enabled=enabled))
