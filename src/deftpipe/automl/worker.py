"""`run_worker`: join a study in a shared RDB storage (e.g. PostgreSQL) from any machine.

The coordinator's plan is read from the study's user attributes; the worker waits
for the `released` attribute so that all workers start together, then runs trials
until the requested count is reached. Heartbeats let a dead worker's trial be retried.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deftpipe.automl._loop import LoopSettings, TrialLoop
from deftpipe.automl._outputs import trial_row
from deftpipe.automl.runner import ATTR_CONFIG, ATTR_RELEASED, ProgressFn, _progress_fn, open_study, \
    plan_from_attrs, resolve_backend, trial_context
from deftpipe.automl.study import open_storage
from deftpipe.errors import ConfigError

if TYPE_CHECKING:
    from deftpipe.backends.base import ModelBackend


@dataclass(frozen=True)
class WorkerResult:
    study_name: str
    trials_run: tuple[int, ...]


def wait_for_release(storage: str, study_name: str, *, timeout_s: float, poll_s: float = 0.5) -> dict[str, Any]:
    """Poll until the study exists and carries `released`; return its user attributes."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = open_storage(storage, heartbeat=False)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            study = optuna.load_study(study_name=study_name, storage=store)
            attrs = dict(study.user_attrs)
            if attrs.get(ATTR_RELEASED) and ATTR_CONFIG in attrs:
                return attrs
        except KeyError:
            pass
        if time.monotonic() > deadline:
            raise ConfigError(
                f"automl-worker: study '{study_name}' was not released within {timeout_s:.0f} s; start the "
                "coordinator (`deftpipe automl ... --storage URL --study-name NAME`) or check the names.")
        time.sleep(poll_s)


def run_worker(storage: str, study_name: str, *, workspace: Path | str | None = None, out_dir: Path | str | None = None,
               backend: ModelBackend | str | None = None, n_jobs: int = 1, wait_timeout_s: float = 600.0,
               progress: bool | ProgressFn = False, device: str = "auto") -> WorkerResult:
    """Run trials of `study_name` until none is left; returns the numbers of the trials this worker ran.

    `workspace` / `out_dir` remap the coordinator's paths when this machine mounts them elsewhere.
    """
    attrs = wait_for_release(storage, study_name, timeout_s=wait_timeout_s)
    ref = backend if isinstance(backend, str) else None
    plan = plan_from_attrs(attrs, storage_url=storage, study_name=study_name, workspace=workspace, out_dir=out_dir,
                           n_jobs=n_jobs, backend_ref=ref)
    instance, _ = resolve_backend(backend if backend is not None else plan.backend_ref,
                                  keep_checkpoints=plan.keep_checkpoints)
    study = open_study(plan, create=False)
    settings = LoopSettings(n_trials=plan.n_trials, algorithm=plan.algorithm, seed=plan.seed, space=plan.space,
                            direction=plan.direction, out_dir=plan.out_dir, max_epochs=plan.max_epochs,
                                heartbeat=True)
    fn = _progress_fn(progress)
    loop = TrialLoop(study, settings, trial_context(plan, instance, device=device), local=False,
                     on_trial=(lambda t: fn(trial_row(t))) if fn is not None else None, wait_for_running=False)
    return WorkerResult(study_name, tuple(loop.run(n_jobs)))
