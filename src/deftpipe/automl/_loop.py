"""The ask/tell loop shared by the coordinator, its threads (`n_jobs`) and remote workers.

Trial bookkeeping lives in Optuna user attributes so that any process can rebuild it:

    outcome        TrialOutcome dict, set just before tell (a trial without it died mid-way)
    seed           training seed (noise re-runs: seed + 1000·k)
    is_noise_rerun / rerun_of / rerun_k
    retry_of       number of the dead trial this one repeats with the same parameters
    surplus        asked by a worker that lost the race for the last slot; never run

A dead trial (left RUNNING by a killed process, or heartbeat-stale) is marked FAIL and
its parameters are enqueued; the retry is popped by the next ask before anything new
is sampled. Before every ask the sampler is rebuilt with `ask_seed(seed, n_finished)`.
"""
from __future__ import annotations

import contextlib
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deftpipe.automl.objective import TrialContext, TrialOutcome, run_trial
from deftpipe.automl.space import SearchSpace
from deftpipe.automl.study import ask_seed, make_sampler
from deftpipe.faults import fault_point
from deftpipe.ui import events

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

TrialCallback = Callable[["FrozenTrial"], None]
POLL_S = 1.0


@dataclass(frozen=True)
class LoopSettings:
    n_trials: int
    algorithm: str
    seed: int
    space: SearchSpace
    direction: str
    out_dir: Path
    max_epochs: int
    heartbeat: bool = False


def trial_label(number: int) -> str:
    return f"trial_{number:04d}"


def is_search(t: FrozenTrial) -> bool:
    return not t.user_attrs.get("is_noise_rerun") and not t.user_attrs.get("surplus")


def is_dead(t: FrozenTrial) -> bool:
    """FAIL without an outcome: the process running it died; a retry with its parameters exists."""
    from optuna.trial import TrialState

    return t.state == TrialState.FAIL and "outcome" not in t.user_attrs and not t.user_attrs.get("surplus")


def counted(t: FrozenTrial) -> bool:
    """Counts toward `n_trials`: a search trial that is not a dead (retried) one."""
    return is_search(t) and not is_dead(t)


def n_finished(trials: Sequence[FrozenTrial]) -> int:
    return sum(1 for t in trials if counted(t) and t.state.is_finished())


def outcome_of(t: FrozenTrial) -> TrialOutcome | None:
    raw = t.user_attrs.get("outcome")
    return TrialOutcome.from_dict(raw) if raw else None


def enqueue_retry(study: optuna.Study, dead: FrozenTrial) -> None:
    """Queue `dead`'s parameters again (also Optuna's heartbeat-stale callback)."""
    attrs = {k: v for k, v in dead.user_attrs.items() if k not in ("outcome", "surplus")}
    attrs["retry_of"] = int(attrs.get("retry_of", dead.number))
    attrs["retried_from"] = dead.number
    study.enqueue_trial(dict(dead.params), user_attrs=attrs)


def tell_outcome(study: optuna.Study, number: int, outcome: TrialOutcome) -> None:
    """Finish trial `number` as its outcome says; failed and disqualified never get a value that could win."""
    from optuna.trial import TrialState

    if outcome.state == "complete":
        study.tell(number, float(outcome.score))  # type: ignore[arg-type]
    elif outcome.state == "pruned":
        study.tell(number, state=TrialState.PRUNED)
    else:
        study.tell(number, state=TrialState.FAIL)


def recover_dead(study: optuna.Study, *, local: bool) -> list[int]:
    """Mark dead trials FAIL and enqueue their retries; returns their numbers.

    `local`: this process owns the study (lock held), so every RUNNING trial is dead.
    Otherwise only heartbeat-stale ones are (Optuna's `fail_stale_trials` + callback).
    A RUNNING trial that already stored its outcome died between that and its tell: it finished
    its work, so it is told that outcome instead of being retried (a retry would run one trial too
    few of the search, since the failed original would still count).
    """
    import optuna
    from optuna.trial import TrialState

    if not local:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            before = {t.number for t in study.get_trials(deepcopy=False) if is_dead(t)}
            optuna.storages.fail_stale_trials(study)
            return sorted({t.number for t in study.get_trials(deepcopy=False) if is_dead(t)} - before)
    dead = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        finished = outcome_of(t)
        if finished is not None:
            tell_outcome(study, t.number, finished)
            continue
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        enqueue_retry(study, t)
        dead.append(t.number)
    return dead


class _Heartbeat:
    """Records heartbeats for one trial while it runs (Optuna only does this inside `optimize`)."""

    def __init__(self, study: optuna.Study, trial: optuna.Trial, enabled: bool) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if enabled:
            storage = study._storage  # noqa: SLF001 - the heartbeat API is on the storage object
            trial_id = trial._trial_id  # noqa: SLF001
            interval = storage.get_heartbeat_interval() or 10

            def beat() -> None:
                while True:
                    with contextlib.suppress(Exception):
                        storage.record_heartbeat(trial_id)
                    if self._stop.wait(interval):
                        return

            self._thread = threading.Thread(target=beat, daemon=True, name=f"heartbeat-{trial.number}")
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class TrialLoop:
    """Runs trials of one study until nothing is left to ask; thread-safe (`run(n_jobs)`)."""

    def __init__(self, study: optuna.Study, settings: LoopSettings, ctx: TrialContext, *,
                 local: bool, on_trial: TrialCallback | None = None, wait_for_running: bool = True) -> None:
        self.study = study
        self.settings = settings
        self.ctx = ctx
        self.local = local
        self.on_trial = on_trial
        self.wait_for_running = wait_for_running
        self.ran: list[int] = []
        self._lock = threading.Lock()
        self._distributions = settings.space.distributions()

    @contextlib.contextmanager
    def _quiet(self) -> Iterator[None]:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*Heartbeat.*")
            warnings.filterwarnings("ignore", category=UserWarning, module="optuna.*")
            yield

    def _next(self) -> optuna.Trial | None | str:
        """A trial to run, None when nothing is left, or 'wait' while others still run trials."""
        from optuna.trial import TrialState

        with self._lock, self._quiet():
            if not self.local:
                recover_dead(self.study, local=False)
            trials = self.study.get_trials(deepcopy=False)
            waiting = any(t.state == TrialState.WAITING for t in trials)
            n_counted = sum(1 for t in trials if counted(t))
            if n_counted >= self.settings.n_trials and not waiting:
                running = any(t.state == TrialState.RUNNING for t in trials)
                return "wait" if running and self.wait_for_running else None
            s = self.settings
            # GridSampler shuffles the grid with its seed and maps trial k to grid point k, so it keeps the
            # study seed; every other sampler gets the per-ask seed.
            seed = s.seed if s.algorithm == "grid" else ask_seed(s.seed, n_finished(trials))
            self.study.sampler = make_sampler(s.algorithm, seed=seed, space=s.space, n_trials=s.n_trials)
            trial = self.study.ask(fixed_distributions=self._distributions)
            frozen = self._frozen(trial.number)
            if is_search(frozen) and "retry_of" not in frozen.user_attrs:
                rank = sum(1 for t in self.study.get_trials(deepcopy=False)
                           if counted(t) and t.number < trial.number)
                if rank >= s.n_trials:  # another worker took the last slot first
                    trial.set_user_attr("surplus", True)
                    self.study.tell(trial, state=TrialState.FAIL)
                    return "again"  # type: ignore[return-value]
            return trial

    def _frozen(self, number: int) -> FrozenTrial:
        return self.study.get_trials(deepcopy=False)[number]

    def _worker(self) -> None:
        while True:
            nxt = self._next()
            if nxt is None:
                return
            if isinstance(nxt, str):
                if nxt == "wait":
                    time.sleep(POLL_S)
                continue
            self._run_one(nxt)

    def _run_one(self, trial: optuna.Trial) -> None:
        from optuna.trial import TrialState

        frozen = self._frozen(trial.number)
        attrs = frozen.user_attrs
        rerun = bool(attrs.get("is_noise_rerun"))
        seed = int(attrs.get("seed", self.settings.seed))
        if "seed" not in attrs:
            trial.set_user_attr("seed", seed)
        sign = 1.0 if self.settings.direction == "minimize" else -1.0

        def on_epoch(epoch: int, val_loss: float) -> bool:
            if rerun:
                return False  # reruns measure noise at the full budget; never pruned
            if epoch >= self.settings.max_epochs:
                return False  # the budget is spent: scoring it costs one inference, pruning would waste it
            # The pruner compares in the study's direction; val_loss is always "lower is better".
            with self._quiet():
                trial.report(sign * float(val_loss), int(epoch))
                return bool(trial.should_prune())

        beat = _Heartbeat(self.study, trial, enabled=self.settings.heartbeat)
        events.publish("trial_start", trial=trial_label(trial.number), params=dict(frozen.params), seed=seed,
                       is_noise_rerun=rerun, n_trials=self.settings.n_trials)
        try:
            outcome = run_trial(self.ctx, trial_dir=self.settings.out_dir / trial_label(trial.number),
                                params=dict(frozen.params), seed=seed, on_epoch=on_epoch)
        except BaseException:
            beat.stop()
            with self._lock, contextlib.suppress(Exception):
                # Interrupted (Ctrl-C): leave a retry queued so --resume repeats these parameters.
                self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                enqueue_retry(self.study, self._frozen(trial.number))
            raise
        beat.stop()
        with self._lock:
            trial.set_user_attr("outcome", outcome.to_dict())
            fault_point("trial_end")  # chaos checks: outcome stored, trial still RUNNING (see recover_dead)
            tell_outcome(self.study, trial.number, outcome)
            self.ran.append(trial.number)
            n_done = n_finished(self.study.get_trials(deepcopy=False))
        events.publish("trial_end", trial=trial_label(trial.number), state=outcome.state,
                       score=outcome.score if outcome.state in ("complete", "disqualified") else None,
                       metric=(outcome.metric or {}).get("name"), duration_s=outcome.duration_s,
                       is_noise_rerun=rerun, n_done=n_done,
                       n_trials=self.settings.n_trials)
        if self.on_trial is not None:
            self.on_trial(self._frozen(trial.number))

    def run(self, n_jobs: int = 1) -> list[int]:
        """Run until done with `n_jobs` threads (torch releases the GIL while it computes)."""
        if n_jobs <= 1:
            self._worker()
            return self.ran
        errors: list[BaseException] = []

        def guarded() -> None:
            try:
                self._worker()
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(exc)

        threads = [threading.Thread(target=guarded, name=f"automl-job-{i}") for i in range(n_jobs)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        if errors:
            raise errors[0]
        return self.ran


def all_trials(study: optuna.Study) -> list[FrozenTrial]:
    return list(study.get_trials(deepcopy=True))


def describe_params(params: dict[str, Any]) -> str:
    parts = []
    for k, v in params.items():
        short = k.split(".")[-1] if not k.split(".")[-1].isdigit() else ".".join(k.split(".")[-2:])
        parts.append(f"{short}={v:.3g}" if isinstance(v, float) else f"{short}={v}")
    return ", ".join(parts)
