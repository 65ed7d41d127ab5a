"""Backend registry: names -> factories, with a closest-name suggestion on typos."""
from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from deftpipe.backends.base import ModelBackend
from deftpipe.errors import ConfigError

F = TypeVar("F", bound=Callable[..., ModelBackend])
_FACTORIES: dict[str, Callable[..., ModelBackend]] = {}
# Checkpoint retention of a training run (SPEC §10): best-validation + latest files, or every file.
KEEP_CHECKPOINTS: tuple[str, ...] = ("best_latest", "all")


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


def check_keep_checkpoints(value: str, *, where: str = "--keep-checkpoints") -> str:
    """Refuse an unknown retention mode before anything is written, suggesting the closest one."""
    if value not in KEEP_CHECKPOINTS:
        near = difflib.get_close_matches(str(value), KEEP_CHECKPOINTS, n=1)
        tip = f" Did you mean '{near[0]}'?" if near else ""
        raise ConfigError(f"{where} is '{value}'; choose one of {list(KEEP_CHECKPOINTS)}.{tip}")
    return value


def _takes(factory: Callable[..., ModelBackend], option: str) -> bool:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # builtins / C factories: cannot tell, so do not pass it
        return False
    return any(p.name == option or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def create_training_backend(name: str = "native", *, keep_checkpoints: str = "best_latest") -> ModelBackend:
    """A backend that trains with the run's checkpoint retention.

    Plug-in backends without a `keep_checkpoints` option keep their own files; asking them for
    `all` is refused rather than silently ignored.
    """
    check_keep_checkpoints(keep_checkpoints)
    _load_builtin()
    factory = _FACTORIES.get(name)
    if factory is None or _takes(factory, "keep_checkpoints"):
        return create_backend(name, keep_checkpoints=keep_checkpoints)  # unknown names get the suggestion there
    if keep_checkpoints != "best_latest":
        raise ConfigError(f"backend '{name}' has no keep_checkpoints option, so --keep-checkpoints "
                          f"{keep_checkpoints} cannot be honoured; use the native backend or drop the flag.")
    return create_backend(name)
