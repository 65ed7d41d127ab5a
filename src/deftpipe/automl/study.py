"""Algorithms by name -> Optuna sampler + pruner, storage opening, and per-ask seed derivation.

Direction always comes from the metric contract's operator (never from a name).
Samplers are rebuilt before every ask with `ask_seed(seed, n_finished)`, so a
resumed study asks exactly what an uninterrupted one would have.
"""
from __future__ import annotations

import difflib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deftpipe.automl.space import SearchSpace
from deftpipe.errors import ConfigError, DependencyMissing

if TYPE_CHECKING:
    import optuna

    from deftpipe.metrics.contract import MetricContract

ALGORITHMS: tuple[str, ...] = ("bayesian", "gp", "hyperband", "asha", "random", "grid")
MULTI_FIDELITY: frozenset[str] = frozenset({"hyperband", "asha"})
REDUCTION_FACTOR = 3
MIN_EPOCHS = 1
HEARTBEAT_S = 10  # remote storages: a worker silent for GRACE_S is considered dead, its trial retried
GRACE_S = 3 * HEARTBEAT_S


def check_algorithm(name: str) -> str:
    key = name.strip().lower()
    if key not in ALGORITHMS:
        near = difflib.get_close_matches(key, ALGORITHMS, n=1)
        tip = f" Did you mean '{near[0]}'?" if near else ""
        raise ConfigError(f"--algorithm '{name}' is unknown; choose one of {list(ALGORITHMS)}.{tip}")
    return key


def direction_for(contract: MetricContract) -> str:
    """'minimize' for `<`/`<=` contracts, 'maximize' for `>`/`>=` — from the operator only."""
    return "minimize" if contract.operator in ("<", "<=") else "maximize"


def ask_seed(seed: int, n_finished: int) -> int:
    """Sampler seed for the ask that follows `n_finished` finished trials (stable across processes)."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(n_finished)]).generate_state(1)[0])


def n_startup_trials(n_trials: int) -> int:
    """Random trials before the model-based samplers take over: half the budget, 2..10."""
    return max(2, min(10, n_trials // 2))


def _grid_sampler_class() -> type:
    import optuna

    class AskTellGridSampler(optuna.samplers.GridSampler):
        """GridSampler without `study.stop()` on exhaustion (only legal inside `optimize`); the loop caps
        the number of trials at the grid size instead."""

        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    return AskTellGridSampler


def _AskTellGridSampler(grid: dict[str, list[Any]], *, seed: int) -> Any:  # noqa: N802 - reads as a class
    return _grid_sampler_class()(grid, seed=seed)


def make_sampler(algorithm: str, *, seed: int, space: SearchSpace, n_trials: int) -> optuna.samplers.BaseSampler:
    import optuna

    algorithm = check_algorithm(algorithm)
    startup = n_startup_trials(n_trials)
    if algorithm == "gp":
        try:
            import scipy  # noqa: F401  (GPSampler's optimizer)
        except ImportError as exc:
            raise DependencyMissing(
                "--algorithm gp needs scipy (Optuna's GPSampler optimizes its acquisition with it), which is not "
                "installed.", hint="pip install scipy, or use --algorithm bayesian (TPE, no extra dependency).",
            ) from exc
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup, deterministic_objective=False)
    if algorithm == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if algorithm == "grid":
        return _AskTellGridSampler(space.grid(), seed=seed)  # type: ignore[arg-type]
    # bayesian, hyperband, asha: multivariate TPE (Hyperband/ASHA pair naturally with TPE)
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, n_startup_trials=startup)


def make_pruner(algorithm: str, *, max_epochs: int) -> optuna.pruners.BasePruner:
    import optuna

    algorithm = check_algorithm(algorithm)
    if algorithm == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=MIN_EPOCHS, max_resource=max(max_epochs, MIN_EPOCHS),
                                              reduction_factor=REDUCTION_FACTOR)
    if algorithm == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=MIN_EPOCHS, reduction_factor=REDUCTION_FACTOR,
                                                      min_early_stopping_rate=0)
    return optuna.pruners.NopPruner()


@dataclass(frozen=True)
class FidelityPlan:
    """What the multi-fidelity settings do at this budget, for the summary."""

    algorithm: str
    max_epochs: int
    rungs: tuple[int, ...]               # epochs at which ASHA compares trials
    brackets: tuple[tuple[int, ...], ...]  # Hyperband: one rung list per bracket
    same_as_sha: bool

    def describe(self) -> str:
        if self.algorithm not in MULTI_FIDELITY:
            return "no pruning: every trial trains the full budget"
        if self.algorithm == "asha":
            return (f"successive halving (ASHA), reduction factor {REDUCTION_FACTOR}, rungs at epochs "
                    f"{list(self.rungs)} of {self.max_epochs}; pruned on validation loss")
        text = (f"Hyperband, reduction factor {REDUCTION_FACTOR}, {len(self.brackets)} bracket(s) with rungs "
                + "; ".join(str(list(b)) for b in self.brackets) + f" (epochs of {self.max_epochs})")
        if self.same_as_sha:
            text += (" — NOTE: at this budget Hyperband has a single bracket and behaves exactly like plain "
                     "successive halving; raise --epochs to at least "
                     f"{MIN_EPOCHS * REDUCTION_FACTOR} for distinct brackets")
        return text


def fidelity_plan(algorithm: str, max_epochs: int) -> FidelityPlan:
    rungs = []
    r = MIN_EPOCHS
    while r < max_epochs:
        rungs.append(r)
        r *= REDUCTION_FACTOR
    # Optuna's Hyperband: n_brackets = floor(log_rf(max/min)) + 1; bracket s starts at rung s.
    n_brackets = int(math.floor(math.log(max(max_epochs, 1) / MIN_EPOCHS, REDUCTION_FACTOR) + 1e-9)) + 1
    brackets = tuple(tuple(rungs[s:]) for s in range(n_brackets))
    return FidelityPlan(algorithm, max_epochs, tuple(rungs), brackets, same_as_sha=n_brackets <= 1)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def open_storage(url: str, *, heartbeat: bool,
                 on_dead_trial: Any = None) -> optuna.storages.RDBStorage:
    """An RDBStorage for `url`; with `heartbeat`, a worker silent for GRACE_S seconds has its trial retried.

    Raises:
        ConfigError: a URL Optuna cannot open (names the URL and the fix).
    """
    import optuna

    url = _pick_pg_driver(url)
    kwargs: dict[str, Any] = {}
    if heartbeat:
        kwargs.update(heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                      heartbeat_stale_trial_callback=on_dead_trial)
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": 60}  # several threads / processes share one file
    else:
        engine_kwargs["pool_pre_ping"] = True
    try:
        for attempt in range(5):
            try:
                return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
            except ImportError:
                raise
            except Exception as exc:  # noqa: BLE001
                # Several processes opening a fresh database race to create Optuna's tables; the loser
                # sees a unique-key violation or "relation already exists" and succeeds on the next try.
                text = type(exc).__name__ + repr(exc)
                racy = any(mark in text for mark in ("IntegrityError", "UniqueViolation", "DuplicateTable",
                                                     "DuplicateObject", "already exists"))
                if attempt == 4 or not racy:
                    raise
                time.sleep(0.5 + attempt)
        raise AssertionError("unreachable")
    except ImportError as exc:
        raise DependencyMissing(f"--storage {_redact(url)}: the database driver is missing ({exc}).",
                                hint="pip install psycopg2-binary for postgresql:// URLs.") from exc
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises many types; one message for the user
        raise ConfigError(
            f"--storage {_redact(url)}: cannot open the study storage ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); check the URL, that the server runs and the "
            "database exists.") from exc


def _pick_pg_driver(url: str) -> str:
    """SQLAlchemy 2.1 maps plain `postgresql://` to psycopg 3; use psycopg2 when only it is installed."""
    import importlib.util

    if url.startswith(("postgresql://", "postgres://")) and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def _redact(url: str) -> str:
    """Hide a password in `scheme://user:pass@host`."""
    if "://" in url and "@" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}"
    return url
