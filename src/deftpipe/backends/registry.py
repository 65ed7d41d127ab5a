"""Backend registry: names -> factories, with a closest-name suggestion on typos."""
from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, TypeVar

from deftpipe.backends.base import ModelBackend
from deftpipe.errors import ConfigError

F = TypeVar("F", bound=Callable[..., ModelBackend])
_FACTORIES: dict[str, Callable[..., ModelBackend]] = {}


def register_backend(name: str) -> Callable[[F], F]:
    def add(factory: F) -> F:
        if name in _FACTORIES:
            raise ValueError(f"backend '{name}' registered twice")
        _FACTORIES[name] = factory
        return factory

    return add


def _load_builtin() -> None:
    import deftpipe.backends.native  # noqa: F401  (registers "native")


def registered_backends() -> list[str]:
    _load_builtin()
    return sorted(_FACTORIES)


def create_backend(name: str = "native", **options: Any) -> ModelBackend:
    _load_builtin()
    if name not in _FACTORIES:
        near = difflib.get_close_matches(name, _FACTORIES, n=1)
        tip = f" Did you mean '{near[0]}'?" if near else ""
        raise ConfigError(f"unknown backend '{name}'; known: {sorted(_FACTORIES)}.{tip}")
    return _FACTORIES[name](**options)
