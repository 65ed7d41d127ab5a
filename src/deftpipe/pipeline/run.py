"""`deftpipe run`: Phase 1 -> handoff -> Phase 2 -> handoff -> Phase 3 -> final selection (SPEC §7).

Phases resume where they stopped: a finished phase is recognised by its
committed outputs (best_rec.json, deft_state.json status, final_automl record)
and never redone.

    automl_phase1/best_rec.json ──► specs/baseline_spec_automl.yaml + baseline/train/<ckpt> (pre-seed)
    deft_state.json complete    ──► final_automl/ (warm start = best iteration) ──► best_model.json
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deftpipe.errors import ConfigError, RegressionHalt, StageFailed
from deftpipe.ui import events
from deftpipe.workspace.io import write_json_atomic, write_text_atomic
from deftpipe.workspace.layout import Workspace

EmitFn = Callable[[str], None]
CONFIG_FILE = "pipeline_config.json"


@dataclass(frozen=True)
class PipelineSettings:
    workspace: Path
    max_iterations: int
    recommendations: int = 5
    algorithm: str = "bayesian"
    kpi_target_pct: float = 5.0
    zero_shot_gate: str = "warn"
    seed: int = 0
    epochs: int | None = None
    noise_rerun: bool = True
    num_sdg: int = 20
    mining_top_k: int = 5
    min_similarity: float = 0.9
    rca_top_k: int = 50
    device: str = "auto"
    backend: str = "native"
    overrides: tuple[str, ...] = ()
    # False: Phase 3 trials start from fresh weights (ablation baseline; SPEC §7 wants the warm start).
    phase3_warm_start: bool = True
    finetune_lr_scale: float = 0.3
    keep_checkpoints: str = "best_latest"  # or "all": every interval checkpoint of every trial / iteration
    # As written by the user ("2h"); the pre-flight turns it into max_iterations (pipeline/budget.py).
    time_budget: str | None = None

    def __post_init__(self) -> None:
        from deftpipe.backends.registry import check_keep_checkpoints

        check_keep_checkpoints(self.keep_checkpoints)
        if self.zero_shot_gate not in ("warn", "halt"):
            raise ConfigError(f"--zero-shot-gate is '{self.zero_shot_gate}'; choose warn or halt.")
        if self.max_iterations < 0:
            raise ConfigError(f"--max-iterations must be >= 0, got {self.max_iterations}.")
        if self.recommendations < 1:
            raise ConfigError(f"--recommendations must be >= 1, got {self.recommendations}.")
        if self.time_budget is not None:
            from deftpipe.pipeline.budget import parse_duration

            parse_duration(self.time_budget)

    def spec_overrides(self) -> list[str]:
        out = list(self.overrides)
        if self.epochs is not None:
            out += [f"train.num_epochs={self.epochs}", "train.checkpoint_interval=1", "train.validation_interval=1"]
        return out

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["workspace"] = str(Path(self.workspace).resolve())
        d["overrides"] = list(self.overrides)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PipelineSettings:
        return cls(**{**d, "workspace": Path(d["workspace"]), "overrides": tuple(d.get("overrides", ()))})


@dataclass
class PipelineOutcome:
    results_dir: Path
    deliverable: str | None = None
    trajectory: list[str] = field(default_factory=list)
    phase3_skipped: str | None = None


def save_config(results_dir: Path, settings: PipelineSettings) -> str:
    doc = settings.to_json()
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
    write_json_atomic(results_dir / CONFIG_FILE, {"settings": doc, "sha256": digest})
    return digest


def load_config(results_dir: Path) -> PipelineSettings:
    path = results_dir / CONFIG_FILE
    if not path.exists():
        raise ConfigError(f"{path} not found: {results_dir} is not a `deftpipe run` directory.",
                          hint="Pass the run folder printed as 'Run directory:'.")
    return PipelineSettings.from_json(json.loads(path.read_text())["settings"])


def _automl(settings: PipelineSettings, out_dir: Path, *, train_csv: Path | None = None, val_csv: Path | None = None,
            warm_start: Path | None = None, extra_overrides: tuple[str, ...] = (), progress_factory: Any = None) -> Any:
    from deftpipe.automl import run_automl
    from deftpipe.automl.runner import trial_progress

    resume = (out_dir / "study.db").exists()
    progress: Any = False
    if progress_factory is not None:
        progress = trial_progress(progress_factory(f"{out_dir.name} · trials"), settings.recommendations)
    return run_automl(settings.workspace, train_csv=train_csv, val_csv=val_csv, algorithm=settings.algorithm,
                      n_trials=settings.recommendations, warm_start=warm_start, seed=settings.seed, out_dir=out_dir,
                      noise_rerun=settings.noise_rerun, backend=settings.backend,
                      overrides=(*settings.overrides, *extra_overrides), epochs=settings.epochs, progress=progress,
                      resume=resume, device=settings.device, keep_checkpoints=settings.keep_checkpoints)


def zero_shot_validation(settings: PipelineSettings, results_dir: Path) -> dict[str, Any]:
    """The shipped zero-shot scorer's FAR@100 / FAR@99 / AUROC on the validation set (Phase 1's yardstick)."""
    from deftpipe.metrics.evaluators import read_inference_csv
    from deftpipe.metrics.far import auroc, far_at_recall
    from deftpipe.metrics.zeroshot import score_csv_zero_shot
    from deftpipe.workspace.spec import load_spec

    ws = Workspace.at(settings.workspace)
    out = results_dir / "automl_phase1" / "zero_shot_validation.csv"
    spec = load_spec(ws.spec_path, settings.spec_overrides())
    score_csv_zero_shot(ws.validation_csv, images_dir=ws.images_dir, workspace_root=ws.root, spec=spec, out_csv=out)
    _, scores, is_defect = read_inference_csv(out)
    res = {"far_at_100_pct": far_at_recall(scores, is_defect).far_pct,
           "far_at_99_pct": far_at_recall(scores, is_defect, recall_pct=99.0).far_pct,
           "auroc": auroc(scores, is_defect), "inference_csv": str(out)}
    write_json_atomic(results_dir / "automl_phase1" / "zero_shot_validation.json", res)
    return res


def _deft_settings(settings: PipelineSettings, spec_path: Path) -> Any:
    from deftpipe.deft.context import DeftSettings

    return DeftSettings(workspace=Path(settings.workspace), max_iterations=settings.max_iterations,
                        kpi_target_pct=settings.kpi_target_pct, num_sdg=settings.num_sdg,
                        mining_top_k=settings.mining_top_k, min_similarity=settings.min_similarity,
                        rca_top_k=settings.rca_top_k, epochs=settings.epochs, seed=settings.seed,
                        device=settings.device, backend=settings.backend, overrides=(), spec_path=spec_path,
                        finetune_lr_scale=settings.finetune_lr_scale, keep_checkpoints=settings.keep_checkpoints)


def _baseline_committed(rd: Path) -> bool:
    doc = json.loads((rd / "deft_state.json").read_text())
    return bool((doc["iterations"].get("baseline") or {}).get("stage_completed"))


def _skip_phase3(rd: Path, settings: PipelineSettings, outcome: PipelineOutcome, emit: EmitFn) -> None:
    from deftpipe.pipeline import finish

    outcome.phase3_skipped = "DEFT hard-stopped; Phase 3 skipped (no augmented dataset to refine)."
    emit(f"[phase 3] {outcome.phase3_skipped}")
    doc = json.loads((rd / "deft_state.json").read_text())
    outcome.trajectory = finish.trajectory(rd, doc, deliverable=None, holdout=False)
    finish.write_summary(rd, settings, emit=emit, lines=outcome.trajectory, phase3_skipped=outcome.phase3_skipped)


def run_phases(results_dir: Path, settings: PipelineSettings, *, emit: EmitFn, accept_regression: bool = False,
               progress_factory: Any = None) -> PipelineOutcome:
    """Run or resume every phase in `results_dir` (created and approved by the caller).

    Every line goes to `emit` and to `RESULTS_DIR/logs/`; phases publish `phase_start` / `phase_end`
    run events and tag the events inside them with `phase`.
    """
    from deftpipe.ui.runlog import run_log

    with run_log(results_dir, emit) as logged:
        return _run_phases(results_dir, settings, emit=logged, accept_regression=accept_regression,
                           progress_factory=progress_factory)


@contextmanager
def _phase(name: str) -> Iterator[None]:
    with events.scope(phase=name):
        events.publish("phase_start")
        started = time.monotonic()
        yield
        events.publish("phase_end", duration_sec=round(time.monotonic() - started, 3))


def _run_phases(results_dir: Path, settings: PipelineSettings, *, emit: EmitFn, accept_regression: bool,
                progress_factory: Any) -> PipelineOutcome:
    from deftpipe.deft.loop import run_loop
    from deftpipe.deft.run import create_run
    from deftpipe.pipeline import finish, handoff
    from deftpipe.state import StateStore

    ws = Workspace.at(settings.workspace)
    rd = results_dir
    outcome = PipelineOutcome(results_dir=rd)
    # Phase 1
    best_rec_path = rd / "automl_phase1" / "best_rec.json"
    if not best_rec_path.exists():
        emit(f"[phase 1] AutoML: {settings.recommendations} trial(s), {settings.algorithm}, scored on validation")
        started = time.monotonic()
        with _phase("automl_phase1"):
            res = _automl(settings, rd / "automl_phase1", progress_factory=progress_factory)
        emit(f"[phase 1] best validation FAR@100 {res.score:.4g}% ({res.rec_id}) · {time.monotonic() - started:.0f}s")
    best_rec = handoff.read_best_rec(best_rec_path)
    # Handoff 1 -> 2
    if not (rd / "deft_state.json").exists():
        zs_path = rd / "automl_phase1" / "zero_shot_validation.json"
        zs = json.loads(zs_path.read_text()) if zs_path.exists() else zero_shot_validation(settings, rd)
        beats = float(best_rec["best"]["score"]) < float(zs["far_at_100_pct"])
        note = (f"Phase 1 winner FAR@100 {best_rec['best']['score']:.4g}% vs zero-shot {zs['far_at_100_pct']:.4g}% "
                f"on validation: {'beats' if beats else 'does NOT beat'} the zero-shot baseline")
        write_json_atomic(rd / "automl_phase1" / "zero_shot_gate.json", {**zs, "beats": beats, "note": note,
                                                                         "mode": settings.zero_shot_gate})
        emit(f"[handoff] {note}")
        if not beats and settings.zero_shot_gate == "halt":
            raise StageFailed("zero_shot_gate", note + "; stopped (--zero-shot-gate halt).",
                              hint="Use --zero-shot-gate warn to let the DEFT loop try to close the gap.")
        spec = handoff.merged_spec(ws, best_rec, settings.spec_overrides())
        spec_path = handoff.write_merged_spec(rd, ws, spec)
        create_run(_deft_settings(settings, spec_path), results_dir=rd)
    # A crash between create_run and the pre-seed commit must not let the loop train its own baseline.
    if not _baseline_committed(rd):
        ckpt = handoff.copy_winner_checkpoint(best_rec, rd)
        with StateStore.open(rd) as store:
            handoff.preseed_baseline(store, ckpt, train_metric=float(best_rec["best"]["score"]))
        emit(f"[handoff] merged spec {handoff.MERGED_SPEC}; baseline pre-seeded with {ckpt.name}")
    # Phase 2
    from deftpipe.state import read_state

    state = read_state(rd)
    if state.status == "in_progress":
        emit(f"[phase 2] DEFT loop, up to {settings.max_iterations} iteration(s)")
        try:
            with _phase("deft"):
                run_loop(rd, accept_regression=accept_regression, on_event=emit, progress_factory=progress_factory)
        except StageFailed:
            _skip_phase3(rd, settings, outcome, emit)
            raise
        except RegressionHalt as exc:
            # the loop names `deftpipe deft --resume`, which would finish the loop but never run Phase 3
            raise RegressionHalt(exc.message, hint=f"Inspect the run, then `deftpipe run --resume {rd} "
                                                   "--accept-regression` to continue from the best checkpoint so far "
                                                   "(Phase 3 follows).") from None
        state = read_state(rd)
    if state.status == "failed":
        _skip_phase3(rd, settings, outcome, emit)
        failure = json.loads((rd / "deft_state.json").read_text()).get("failure") or {}
        raise StageFailed(str(failure.get("stage", "deft")),
                          f"{failure.get('message', 'the DEFT loop hard-stopped')} ({outcome.phase3_skipped})",
                          hint="Failed runs are never resumed: fix the cause named above and start a new run.")
    # Phase 3
    doc = json.loads((rd / "deft_state.json").read_text())
    if "final_automl" not in doc["iterations"]:
        train_csv, warm, best_label = handoff.phase3_inputs(doc, rd)
        final_rec = rd / "final_automl" / "best_rec.json"
        if not final_rec.exists():
            start_from = f"warm start from {best_label}" if settings.phase3_warm_start else "fresh weights (cold start)"
            emit(f"[phase 3] AutoML on {train_csv.name}, {start_from}")
            with _phase("final_automl"):
                _automl(settings, rd / "final_automl", train_csv=train_csv, val_csv=rd / "inputs" / "validation.csv",
                        warm_start=warm if settings.phase3_warm_start else None,
                        extra_overrides=(f"dataset.classify.images_dir={ws.root}",), progress_factory=progress_factory)
        finish.register_phase3(rd, settings, warm_start=warm if settings.phase3_warm_start else None,
                               train_csv=train_csv, emit=emit)
    from deftpipe.deft.loop import refresh_report

    # The run lock for the last writes; opening it also removes temp files that a process killed
    # after Phase 3's commit left behind (no other step of a resume at this point opens the store).
    with StateStore.open(rd):
        outcome.deliverable, outcome.trajectory = finish.final_selection(rd, settings, emit=emit)
        refresh_report(rd)
    return outcome
