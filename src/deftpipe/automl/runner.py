"""`run_automl`: plan (validate everything, write nothing) -> execute (study, trials, noise re-run, outputs).

The plan is stored in the study's user attributes, so `run_worker` on any machine can
rebuild the same trial context. Outputs: `<out>/trial_<k>/`, `trials.csv`,
`best_rec.json`, `best_checkpoint/`, `automl_summary.md`, `study.db` (default storage).
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deftpipe.automl import best_rec as best_rec_mod
from deftpipe.automl._loop import LoopSettings, TrialLoop, all_trials, counted, outcome_of, recover_dead, \
    trial_label
from deftpipe.automl._outputs import trial_row, write_summary, write_trials_csv
from deftpipe.automl.objective import TrialContext, trial_spec
from deftpipe.automl.selection import N_RERUNS, Candidate, NoiseDecision, beats_by_more_than_margin, \
    decide_by_median, noise_margin, rank, rerun_seed
from deftpipe.automl.space import ParamSpec, SearchSpace, resolve_space
from deftpipe.automl.study import MULTI_FIDELITY, check_algorithm, direction_for, fidelity_plan, make_pruner, \
    open_storage, sqlite_url
from deftpipe.backends.registry import check_keep_checkpoints
from deftpipe.errors import ConfigError, StageFailed
from deftpipe.workspace.io import RunLock, write_json_atomic
from deftpipe.workspace.layout import Workspace
from deftpipe.workspace.spec import get, load_spec

if TYPE_CHECKING:
    import optuna

    from deftpipe.backends.base import ModelBackend
    from deftpipe.metrics.contract import MetricContract

STAGE = "automl"
ATTR_CONFIG = "deftpipe_config"
ATTR_RELEASED = "released"
DEFAULT_OUT = "automl_phase1"
ProgressFn = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class AutomlPlan:
    """Everything a study needs, validated; serializable into the study's user attributes."""

    workspace_root: Path
    spec_path: Path
    overrides: tuple[str, ...]
    base_spec: Mapping[str, Any]
    train_csv: Path
    val_csv: Path
    images_dir: Path
    algorithm: str
    n_trials: int
    space: SearchSpace
    seed: int
    out_dir: Path
    storage_url: str
    local_storage: bool
    study_name: str
    n_jobs: int
    noise_rerun: bool
    contract: MetricContract
    warm_start: Path | None
    backend_ref: str
    resume: bool = False
    n_train_rows: int = 0
    n_val_rows: int = 0
    val_labels: Mapping[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    measured_trial_s: float | None = None
    keep_checkpoints: str = "best_latest"

    @property
    def direction(self) -> str:
        return direction_for(self.contract)

    @property
    def max_epochs(self) -> int:
        return int(self.space.pins.get("train.num_epochs") or get(self.base_spec, "train.num_epochs") or 1)

    def to_attrs(self) -> dict[str, Any]:
        return {
            "workspace_root": str(self.workspace_root), "spec_path": str(self.spec_path),
            "overrides": list(self.overrides), "train_csv": str(self.train_csv), "val_csv": str(self.val_csv),
            "algorithm": self.algorithm, "n_trials": self.n_trials, "space": self.space.to_dict(), "seed": self.seed,
            "out_dir": str(self.out_dir), "noise_rerun": self.noise_rerun, "contract": self.contract.to_dict(),
            "warm_start": str(self.warm_start) if self.warm_start else None, "backend": self.backend_ref,
            "keep_checkpoints": self.keep_checkpoints,
        }

    def summary_lines(self) -> list[str]:
        lines = [
            f"workspace: {self.workspace_root}",
            f"train CSV: {self.train_csv} ({self.n_train_rows} rows)",
            f"validation CSV: {self.val_csv} ({self.n_val_rows} rows: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.val_labels.items())) + ")",
            f"metric: {self.contract.kpi_target()} on validation, {self.direction} (from operator "
            f"'{self.contract.operator}')",
            f"algorithm: {self.algorithm}; {fidelity_plan(self.algorithm, self.max_epochs).describe()}",
            f"recommendations: {self.n_trials} trial(s), seed {self.seed}, n_jobs {self.n_jobs} (threads)",
            "search space: " + "; ".join(f"{p.key} ~ {p.expression()}" for p in self.space.params),
            "pinned: " + (", ".join(f"{k}={v!r}" for k, v in self.space.pins.items()) or "nothing"),
            f"warm start: {self.warm_start or 'none (fresh weights)'}",
            f"noise re-run: {'on' if self.noise_rerun else 'off'} (margin: {noise_margin(self.contract)}; "
            f"{N_RERUNS} extra seeds for winner and runner-up when triggered)",
            f"output: {self.out_dir}",
            f"study: {self.study_name} in {_redact(self.storage_url)}" + (" (resume)" if self.resume else ""),
            f"backend: {self.backend_ref}; checkpoints kept per trial: {self.keep_checkpoints}",
            "time estimate: " + self.estimate_text(),
        ]
        return lines + list(self.notes)

    def estimate_text(self) -> str:
        if self.measured_trial_s is None:
            return "measured on the first trial and shown live (budget: {} trial(s) x {} epoch(s))".format(
                self.n_trials, self.max_epochs)
        total = self.measured_trial_s * self.n_trials / max(1, self.n_jobs)
        return f"~{_duration(total)} ({self.measured_trial_s:.0f} s per trial measured on this study)"


@dataclass(frozen=True)
class AutomlResult:
    out_dir: Path
    best_rec_path: Path
    best_rec: Mapping[str, Any]
    checkpoint: Path
    score: float
    rec_id: str
    specs: Mapping[str, Any]
    trials_csv: Path
    summary_path: Path
    n_trials: int
    noise: NoiseDecision | None


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _redact(url: str) -> str:
    from deftpipe.automl.study import _redact as redact

    return redact(url)


def resolve_backend(backend: ModelBackend | str | None, *,
                    keep_checkpoints: str = "best_latest") -> tuple[ModelBackend, str]:
    """A backend instance and the reference workers use to build their own ('native' or 'module:factory').

    `keep_checkpoints` reaches backends built here from a name; an instance passed in keeps its own setting.
    """
    if backend is None:
        backend = os.environ.get("DEFTPIPE_AUTOML_BACKEND") or "native"
    if isinstance(backend, str):
        if ":" in backend:
            module, _, attr = backend.partition(":")
            try:
                factory = getattr(importlib.import_module(module), attr)
            except (ImportError, AttributeError) as exc:
                raise ConfigError(f"--backend '{backend}': cannot import factory '{attr}' from '{module}' ({exc}).") from exc
            return factory(), backend
        from deftpipe.backends import create_training_backend

        return create_training_backend(backend, keep_checkpoints=keep_checkpoints), backend
    ref = getattr(backend, "backend_ref", None) or getattr(backend, "name", "native")
    return backend, str(ref)


def _new_run_dir(ws: Workspace) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d_%H%M%S")
    base = ws.results_root / f"run_{stamp}"
    cand, k = base, 0
    while cand.exists():
        k += 1
        cand = base.with_name(f"{base.name}_{k}")
    return cand / DEFAULT_OUT


def _latest_study_dir(ws: Workspace) -> Path | None:
    found = sorted(ws.results_root.glob(f"run_*/{DEFAULT_OUT}/study.db"), key=lambda p: p.stat().st_mtime)
    return found[-1].parent if found else None


def _guard_not_kpi(ws: Workspace, path: Path, *, what: str) -> None:
    for forbidden in (ws.kpi_csv, ws.holdout_csv):
        if path.resolve() == forbidden.resolve():
            raise ConfigError(f"{what} {path} is the KPI/holdout set; AutoML scores on validation only and never reads "
                              "it. Pass the validation CSV (default: train/base/validation_set.csv).")


def plan_automl(workspace: Path | str, *, train_csv: Path | str | None = None, val_csv: Path | str | None = None,
                algorithm: str = "bayesian", n_trials: int = 8, space: SearchSpace | Sequence[ParamSpec | str] | None = None,
                space_file: Path | str | None = None, pins: Mapping[str, Any] | None = None,
                warm_start: Path | str | None = None, seed: int = 0, out_dir: Path | str | None = None,
                storage: str | None = None, n_jobs: int = 1, noise_rerun: bool = True,
                contract: MetricContract | None = None, backend_ref: str = "native", overrides: Iterable[str] = (),
                epochs: int | None = None, resume: bool = False, study_name: str | None = None,
                keep_checkpoints: str = "best_latest") -> AutomlPlan:
    """Validate every input and decide paths; reads the spec, train and validation CSVs, writes nothing."""
    from deftpipe.metrics.contract import default_far_contract
    from deftpipe.workspace.tables import read_samples_csv

    ws = Workspace.at(workspace)
    if not ws.root.is_dir():
        raise ConfigError(f"--workspace {ws.root}: folder not found; create it with `deftpipe init`.")
    algorithm = check_algorithm(algorithm)
    check_keep_checkpoints(keep_checkpoints)
    if n_trials < 1:
        raise ConfigError(f"--recommendations must be at least 1, got {n_trials}.")
    if n_jobs < 1:
        raise ConfigError(f"--n-jobs must be at least 1, got {n_jobs}.")
    if epochs is not None and epochs < 1:
        raise ConfigError(f"--epochs must be at least 1, got {epochs}.")
    overrides = tuple(overrides)
    base_spec = load_spec(ws.spec_path, overrides)
    if isinstance(space, SearchSpace):
        params: list[ParamSpec | str] | None = list(space.params)
        pins = {**space.pins, **dict(pins or {})}
    else:
        params = list(space) if space is not None else None
    the_space = resolve_space(base_spec, params=params, space_file=space_file, pins=pins, epochs=epochs)
    train = Path(train_csv).resolve() if train_csv else ws.training_csv
    val = Path(val_csv).resolve() if val_csv else ws.validation_csv
    _guard_not_kpi(ws, train, what="--train-csv")
    _guard_not_kpi(ws, val, what="--val-csv")
    train_rows = read_samples_csv(train, name=f"train CSV {train}")
    val_rows = read_samples_csv(val, name=f"validation CSV {val}")
    val_labels = val_rows["label"].value_counts().to_dict()
    if "PASS" not in val_labels or len(val_labels) < 2:
        raise ConfigError(f"validation CSV {val}: needs PASS and defect rows to score FAR at a recall "
                          f"(found {val_labels}); add the missing class.")
    images_rel = str(get(base_spec, "dataset.classify.images_dir") or "images")
    images_dir = (ws.root / images_rel).resolve()
    ws_start = Path(warm_start).resolve() if warm_start else None
    if ws_start is not None and not ws_start.is_file():
        raise ConfigError(f"--warm-start {ws_start}: checkpoint not found; pass an existing .pth file.")
    contract = contract or default_far_contract()
    notes: list[str] = []
    if algorithm == "grid":
        size = the_space.grid_size()
        if n_trials > size:
            notes.append(f"grid has {size} point(s) ({'3 per continuous axis'}); recommendations capped at {size}")
            n_trials = size
    if out_dir is None:
        latest = _latest_study_dir(ws) if resume else None
        if resume and latest is None:
            raise ConfigError(f"--resume: no earlier study under {ws.results_root}/run_*/{DEFAULT_OUT}; pass --out.")
        out = latest or _new_run_dir(ws)
    else:
        out = Path(out_dir).resolve()
    local = storage is None
    url = storage or sqlite_url(out / "study.db")
    name = study_name or f"deftpipe-{ws.root.name}-{out.parent.name}-{out.name}"
    if local and not resume and (out / "study.db").exists():
        raise ConfigError(f"{out}: already holds a study (study.db); add --resume to continue it or choose another "
                          "--out.")
    if resume and local and not (out / "study.db").exists():
        raise ConfigError(f"--resume: {out}/study.db not found; run without --resume to start a new study.")
    plan = AutomlPlan(
        workspace_root=ws.root, spec_path=ws.spec_path, overrides=overrides, base_spec=base_spec, train_csv=train,
        val_csv=val, images_dir=images_dir, algorithm=algorithm, n_trials=int(n_trials), space=the_space,
        seed=int(seed), out_dir=out, storage_url=url, local_storage=local, study_name=name, n_jobs=int(n_jobs),
        noise_rerun=bool(noise_rerun), contract=contract, warm_start=ws_start, backend_ref=backend_ref,
        resume=resume, n_train_rows=len(train_rows), n_val_rows=len(val_rows),
        val_labels={str(k): int(v) for k, v in val_labels.items()}, notes=tuple(notes),
        keep_checkpoints=keep_checkpoints,
    )
    _check_disk(plan)
    if resume or not local:
        plan = _check_existing(plan)
    return plan


def _check_disk(plan: AutomlPlan) -> None:
    """Refuse a study that would not fit on the disk of its output folder (before anything is written)."""
    from deftpipe.workspace import disk

    n_trainings = plan.n_trials + (2 * N_RERUNS if plan.noise_rerun else 0)
    lights = get(plan.base_spec, "dataset.classify.input_map") or {"": 0}
    need = disk.estimate_bytes(
        n_rows=plan.n_train_rows + plan.n_val_rows,
        image_bytes=disk.sample_image_bytes(plan.images_dir, str(get(plan.base_spec, "dataset.classify.image_ext")),
                                            len(lights)),
        n_trainings=n_trainings, checkpoints_each=disk.checkpoints_per_training(plan.keep_checkpoints, plan.max_epochs))
    disk.require_free_disk(plan.out_dir, need, command="automl",
                           smaller="fewer --recommendations, --noise-rerun off, --keep-checkpoints best_latest")


def _check_existing(plan: AutomlPlan) -> AutomlPlan:
    """On resume, the stored study must have been created with the same settings; measure trial time from it."""
    import optuna

    storage = open_storage(plan.storage_url, heartbeat=False)
    try:
        study = optuna.load_study(study_name=plan.study_name, storage=storage)
    except KeyError:
        if plan.resume:
            raise ConfigError(f"--resume: study '{plan.study_name}' not found in {_redact(plan.storage_url)}; "
                              "check --out / --study-name, or start without --resume.") from None
        return plan
    if not plan.resume:
        raise ConfigError(f"study '{plan.study_name}' already exists in {_redact(plan.storage_url)}; add --resume "
                          "to continue it, or pass another --study-name.")
    stored = study.user_attrs.get(ATTR_CONFIG, {})
    mine = plan.to_attrs()
    for key in ("algorithm", "space", "seed", "contract", "train_csv", "val_csv", "warm_start", "overrides"):
        if key in stored and json.dumps(stored[key], sort_keys=True) != json.dumps(mine[key], sort_keys=True):
            raise ConfigError(
                f"--resume: '{key}' differs from the study's ({stored[key]!r} vs now {mine[key]!r}); a resumed study "
                "keeps its settings. Repeat the original command with --resume, or start a new --out.")
    durations = [o.duration_s for t in study.get_trials(deepcopy=False) if (o := outcome_of(t)) is not None]
    return replace(plan, measured_trial_s=(sum(durations) / len(durations)) if durations else None)


def plan_from_attrs(attrs: Mapping[str, Any], *, storage_url: str, study_name: str,
                    workspace: Path | str | None = None, out_dir: Path | str | None = None, n_jobs: int = 1,
                    backend_ref: str | None = None) -> AutomlPlan:
    """Rebuild a coordinator's plan on a worker (paths may be remapped to this machine)."""
    from deftpipe.metrics.contract import MetricContract

    cfg = attrs[ATTR_CONFIG]
    old_root = Path(cfg["workspace_root"])
    root = Workspace.at(workspace).root if workspace else old_root

    def remap(p: str | None) -> Path | None:
        if p is None:
            return None
        path = Path(p)
        try:
            return root / path.relative_to(old_root)
        except ValueError:
            return path

    base_spec = load_spec(remap(cfg["spec_path"]), cfg["overrides"])  # type: ignore[arg-type]
    images_dir = (root / str(get(base_spec, "dataset.classify.images_dir") or "images")).resolve()
    return AutomlPlan(
        workspace_root=root, spec_path=remap(cfg["spec_path"]), overrides=tuple(cfg["overrides"]),  # type: ignore[arg-type]
        base_spec=base_spec, train_csv=remap(cfg["train_csv"]), val_csv=remap(cfg["val_csv"]),  # type: ignore[arg-type]
        images_dir=images_dir, algorithm=cfg["algorithm"], n_trials=int(cfg["n_trials"]),
        space=SearchSpace.from_dict(cfg["space"]), seed=int(cfg["seed"]),
        out_dir=Path(out_dir).resolve() if out_dir else remap(cfg["out_dir"]),  # type: ignore[arg-type]
        storage_url=storage_url, local_storage=False, study_name=study_name, n_jobs=n_jobs,
        noise_rerun=bool(cfg["noise_rerun"]), contract=MetricContract.from_dict(cfg["contract"]),
        warm_start=remap(cfg.get("warm_start")), backend_ref=backend_ref or cfg.get("backend", "native"),
        keep_checkpoints=str(cfg.get("keep_checkpoints") or "best_latest"),  # studies made before the key
    )


def trial_context(plan: AutomlPlan, backend: ModelBackend, *, device: str = "auto", evaluate: Any = None) -> TrialContext:
    return TrialContext(
        base_spec=plan.base_spec, space=plan.space, workspace_root=plan.workspace_root, images_dir=plan.images_dir,
        train_csv=plan.train_csv, val_csv=plan.val_csv, contract=plan.contract, backend=backend,
        warm_start=plan.warm_start, device=device, evaluate=evaluate,
    )


def open_study(plan: AutomlPlan, *, create: bool) -> optuna.Study:
    import optuna

    from deftpipe.automl._loop import enqueue_retry

    storage = open_storage(plan.storage_url, heartbeat=not plan.local_storage, on_dead_trial=enqueue_retry)
    pruner = make_pruner(plan.algorithm, max_epochs=plan.max_epochs)
    if create:
        return optuna.create_study(storage=storage, study_name=plan.study_name, direction=plan.direction,
                                   pruner=pruner, load_if_exists=True)
    return optuna.load_study(study_name=plan.study_name, storage=storage, pruner=pruner)


def _progress_fn(progress: bool | ProgressFn) -> ProgressFn | None:
    if callable(progress):
        return progress
    if not progress:
        return None

    def line(row: dict[str, Any]) -> None:
        score = "—" if row["score"] is None else f"{row['score']:.4g}"
        print(f"[automl] {row['rec_id']} {row['state']} score={score} epochs={row['budget_epochs']} "
              f"{row['duration_s']}s", file=sys.stderr, flush=True)

    return line


def trial_progress(progress: Any, n_trials: int) -> Callable[[dict[str, Any]], None]:
    """A trial callback that drives a `ProgressFn(done, total, message)` by trials done out of `n_trials`."""
    done = [0]

    def on_trial(row: dict[str, Any]) -> None:
        if not row["is_noise_rerun"]:
            done[0] += 1
        score = "—" if row["score"] is None else f"{row['score']:.4g}"
        kind = "noise re-run " if row["is_noise_rerun"] else ""
        progress(min(done[0], n_trials), n_trials, f"{kind}{row['rec_id']} {row['state']} score={score}")

    return on_trial


def execute(plan: AutomlPlan, *, backend: ModelBackend | None = None, progress: bool | ProgressFn = True,
            device: str = "auto", evaluate: Any = None) -> AutomlResult:
    """Run the study described by `plan` to completion and write the outputs."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if backend is None:
        backend, _ = resolve_backend(plan.backend_ref, keep_checkpoints=plan.keep_checkpoints)
    plan.out_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(plan.out_dir / ".automl.lock") if plan.local_storage else None
    if lock is not None:
        lock.acquire()
    try:
        write_json_atomic(plan.out_dir / "automl_plan.json", {**plan.to_attrs(), "study_name": plan.study_name,
                                                               "storage": _redact(plan.storage_url)})
        study = open_study(plan, create=True)
        study.set_user_attr(ATTR_CONFIG, plan.to_attrs())
        if plan.local_storage:
            recover_dead(study, local=True)
        study.set_user_attr(ATTR_RELEASED, True)  # workers waiting on this study start now, together
        fn = _progress_fn(progress)
        ctx = trial_context(plan, backend, device=device, evaluate=evaluate)
        settings = LoopSettings(n_trials=plan.n_trials, algorithm=plan.algorithm, seed=plan.seed, space=plan.space,
                                direction=plan.direction, out_dir=plan.out_dir, max_epochs=plan.max_epochs,
                                heartbeat=not plan.local_storage)
        on_trial = (lambda t: fn(trial_row(t))) if fn is not None else None
        TrialLoop(study, settings, ctx, local=plan.local_storage, on_trial=on_trial).run(plan.n_jobs)
        noise = None
        if plan.noise_rerun:
            noise = _noise_rerun(study, plan, settings, ctx, on_trial)
        return _finish(study, plan, noise)
    finally:
        if lock is not None:
            lock.release()


def _search_candidates(trials: Sequence[Any]) -> list[Candidate]:
    """Finished search trials (not re-runs) with their outcomes."""
    return [Candidate(t.number, o, dict(t.params)) for t in trials
            if counted(t) and (o := outcome_of(t)) is not None]


def _noise_rerun(study: optuna.Study, plan: AutomlPlan, settings: LoopSettings, ctx: TrialContext,
                 on_trial: Any) -> NoiseDecision:
    trials = all_trials(study)
    ranked = rank(_search_candidates(trials), plan.contract)
    if len(ranked) < 2:
        return NoiseDecision(False, f"not triggered: {len(ranked)} eligible trial(s), no runner-up to compare")
    win, run = ranked[0], ranked[1]
    ws, rs = float(win.outcome.score), float(run.outcome.score)  # type: ignore[arg-type]
    if not beats_by_more_than_margin(ws, rs, plan.contract):
        return NoiseDecision(False, f"not triggered: winner {trial_label(win.number)} ({ws:.4g}) vs runner-up "
                                    f"{trial_label(run.number)} ({rs:.4g}) is within the {noise_margin(plan.contract)} "
                                    "margin")
    have = {(t.user_attrs.get("rerun_of"), t.user_attrs.get("rerun_k")) for t in trials
            if t.user_attrs.get("is_noise_rerun")}
    for cand in (win, run):
        for k in range(1, N_RERUNS + 1):
            if (cand.number, k) not in have:  # idempotent across --resume
                study.enqueue_trial(dict(cand.params), user_attrs={
                    "is_noise_rerun": True, "rerun_of": cand.number, "rerun_k": k, "seed": rerun_seed(plan.seed, k)})
    TrialLoop(study, settings, ctx, local=plan.local_storage, on_trial=on_trial).run(plan.n_jobs)
    trials = all_trials(study)
    reruns: dict[int, list[Candidate]] = {}
    for t in trials:
        o = outcome_of(t)
        if t.user_attrs.get("is_noise_rerun") and o is not None and t.user_attrs.get("rerun_of") in (win.number, run.number):
            reruns.setdefault(int(t.user_attrs["rerun_of"]), []).append(Candidate(t.number, o, dict(t.params)))
    return decide_by_median([win, run], reruns, plan.contract)


def _finish(study: optuna.Study, plan: AutomlPlan, noise: NoiseDecision | None) -> AutomlResult:
    trials = all_trials(study)
    frame = write_trials_csv(plan.out_dir / "trials.csv", trials)
    ranked = rank(_search_candidates(trials), plan.contract)
    plan_lines = plan.summary_lines()
    summary_path = plan.out_dir / "automl_summary.md"
    if not ranked:
        first = next((r["error"] for r in frame.to_dict("records") if r["error"]), "no error recorded")
        write_summary(summary_path, plan_lines=plan_lines, frame=frame,
                      winner_lines=["no eligible trial: nothing was selected"], noise_lines=["not run"])
        raise StageFailed(STAGE, f"none of {len(frame)} trial(s) produced a usable result (complete, predictions "
                                 f"in both classes); first error: {first}. Details: {plan.out_dir / 'trials.csv'}.",
                          hint="Check the trial_<k>/error.txt files, the search ranges and the data.")
    by_number = {t.number: t for t in trials}
    win_number, score = ranked[0].number, float(ranked[0].outcome.score)  # type: ignore[arg-type]
    run_number = win_number
    if noise is not None and noise.triggered and noise.chosen is not None:
        win_number, run_number = noise.chosen, int(noise.chosen_run)  # type: ignore[arg-type]
        score = float(noise.score)  # type: ignore[arg-type]
    won = outcome_of(by_number[run_number])
    assert won is not None and won.checkpoint_path is not None  # eligible trials always have both
    src = Path(won.checkpoint_path)
    dest_dir = plan.out_dir / "best_checkpoint"
    dest = _copy_checkpoint(src, dest_dir)
    params = dict(by_number[run_number].params)
    t_spec = trial_spec(trial_context(plan, backend=None, device="auto"), params, seed=won.seed,  # type: ignore[arg-type]
                        trial_dir=plan.out_dir / trial_label(run_number))
    specs = best_rec_mod.winning_specs(params, plan.space.pins, t_spec)
    all_recs = [{"rec_id": trial_label(t.number),
                 "score": (o.score if (o := outcome_of(t)) is not None and o.eligible else None)}
                for t in trials if counted(t) or t.user_attrs.get("is_noise_rerun")]
    doc = best_rec_mod.build(
        experiment_id=plan.study_name, metric_name=plan.contract.name, direction=plan.direction,
        rec_id=trial_label(run_number), score=score, specs=specs, observed_budget={"num_epochs": int(won.epochs_run)},
        checkpoint_uri=dest, checkpoint_epoch=int(won.checkpoint_epoch or 0),
        checkpoint_step=int(won.checkpoint_step or 0), all_recs=all_recs,
    )
    path = best_rec_mod.write(plan.out_dir / "best_rec.json", doc)
    winner_lines = [
        f"winner: {trial_label(run_number)}" + (f" (median run of {trial_label(win_number)})"
                                                 if run_number != win_number else "")
        + f", {plan.contract.name} = {score:.6g} {plan.contract.unit} ({plan.direction}); candidate "
        f"{won.candidate}, epoch {won.checkpoint_epoch}, predictions {won.pred_counts}",
        f"winning parameters: {json.dumps(params, sort_keys=True)}",
        f"checkpoint: {dest}",
    ]
    if len(ranked) > 1:
        winner_lines.append(f"runner-up: {trial_label(ranked[1].number)}, score {ranked[1].outcome.score:.6g}")
    write_summary(summary_path, plan_lines=plan_lines, frame=frame, winner_lines=winner_lines,
                  noise_lines=_noise_lines(plan, noise))
    return AutomlResult(out_dir=plan.out_dir, best_rec_path=path, best_rec=doc, checkpoint=dest, score=score,
                        rec_id=trial_label(run_number), specs=specs, trials_csv=plan.out_dir / "trials.csv",
                        summary_path=summary_path, n_trials=sum(1 for t in trials if counted(t)), noise=noise)


def _noise_lines(plan: AutomlPlan, noise: NoiseDecision | None) -> list[str]:
    if not plan.noise_rerun:
        return ["off (--noise-rerun off)"]
    if noise is None or not noise.triggered:
        return [noise.reason if noise else "not run"]
    lines = [f"triggered: the winner beat the runner-up by more than the {noise_margin(plan.contract)} margin; "
             f"both retrained with seeds {[rerun_seed(plan.seed, k) for k in range(1, N_RERUNS + 1)]}"]
    for orig, runs in noise.runs.items():
        vals = ", ".join(f"{trial_label(n) if n >= 0 else 'missing'}={v:.4g}" for n, v in runs)
        lines.append(f"{trial_label(orig)}: {vals} -> median {noise.medians[orig]:.4g}")
    lines.append(f"decision: {noise.reason}; chosen {trial_label(noise.chosen)}"  # type: ignore[arg-type]
                 f" (best.score = {noise.score:.6g})")
    return lines


def _copy_checkpoint(src: Path, dest_dir: Path) -> Path:
    """Copy the winning checkpoint (same file name) atomically; size checked."""
    if not src.is_file() or src.stat().st_size == 0:
        raise StageFailed(STAGE, f"winning checkpoint {src} is missing or empty; rerun the study with --resume.")
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / src.name
    for old in dest_dir.glob("*.pth"):
        if old.name != src.name:
            old.unlink()
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    if tmp.stat().st_size != src.stat().st_size:
        tmp.unlink()
        raise StageFailed(STAGE, f"copying {src} to {dest} was incomplete; check free disk space.")
    os.replace(tmp, dest)
    return dest.resolve()


def run_automl(workspace: Path | str, *, train_csv: Path | str | None = None, val_csv: Path | str | None = None,
               algorithm: str = "bayesian", n_trials: int = 8,
               space: SearchSpace | Sequence[ParamSpec | str] | None = None, pins: Mapping[str, Any] | None = None,
               warm_start: Path | str | None = None, seed: int = 0, out_dir: Path | str | None = None,
               storage: str | None = None, n_jobs: int = 1, noise_rerun: bool = True,
               contract: MetricContract | None = None, backend: ModelBackend | str | None = None,
               overrides: Iterable[str] = (), epochs: int | None = None, progress: bool | ProgressFn = True,
               resume: bool = False, space_file: Path | str | None = None, study_name: str | None = None,
               device: str = "auto", keep_checkpoints: str = "best_latest") -> AutomlResult:
    """Hyperparameter search scored on the validation CSV by the metric contract (SPEC §6).

    Example:
        res = run_automl("demo_ws", algorithm="hyperband", n_trials=8, epochs=9, seed=0)
        res.best_rec["best"]["specs"]   # {'train': {'optim': {'lr': ..., ...}, ...}}

    Raises:
        ConfigError: bad names, ranges, paths, or a resume whose settings differ.
        StageFailed: no trial produced an eligible result.
    """
    check_keep_checkpoints(keep_checkpoints)
    instance, ref = resolve_backend(backend, keep_checkpoints=keep_checkpoints)
    plan = plan_automl(workspace, train_csv=train_csv, val_csv=val_csv, algorithm=algorithm, n_trials=n_trials,
                       space=space, space_file=space_file, pins=pins, warm_start=warm_start, seed=seed,
                       out_dir=out_dir, storage=storage, n_jobs=n_jobs, noise_rerun=noise_rerun, contract=contract,
                       backend_ref=ref, overrides=overrides, epochs=epochs, resume=resume, study_name=study_name,
                       keep_checkpoints=keep_checkpoints)
    return execute(plan, backend=instance, progress=progress, device=device)

