"""`deftpipe automl` (Phase 1 / 3 alone) and `deftpipe automl-worker` (join a shared study)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from deftpipe.cli.app import JsonOpt, LogLevelOpt, Session, app, console, echo, guarded, is_interactive, prompt, session


def _table(rows: list[dict[str, Any]], *, n_trials: int, started: float) -> Any:
    from rich.table import Table

    done = [r for r in rows if not r["is_noise_rerun"]]
    table = Table(title=f"AutoML trials ({len(done)}/{n_trials})", caption=_eta(rows, n_trials, started))
    for col in ("trial", "state", "score", "epochs", "PASS/defect", "rerun", "s", "params"):
        table.add_column(col)
    for r in rows[-30:]:
        score = "—" if r["score"] is None else f"{r['score']:.4g}"
        table.add_row(r["rec_id"], r["state"], score, str(r["budget_epochs"]),
                      f"{r['n_pred_pass'] if r['n_pred_pass'] is not None else '—'}/"
                      f"{r['n_pred_defect'] if r['n_pred_defect'] is not None else '—'}",
                      "yes" if r["is_noise_rerun"] else "", f"{r['duration_s'] or 0:.1f}", r["params"][:70])
    return table


def _eta(rows: list[dict[str, Any]], n_trials: int, started: float) -> str:
    if not rows:
        return "time estimate: measured on the first trial"
    elapsed = time.monotonic() - started
    per = elapsed / len(rows)
    left = max(0, n_trials - sum(1 for r in rows if not r["is_noise_rerun"]))
    return f"measured {per:.1f} s/trial; about {per * left / 60:.1f} min left (+ noise re-runs if triggered)"


def _approve(yes: bool, summary: str) -> None:
    from deftpipe.errors import ApprovalNeeded

    if yes:
        return
    if not is_interactive():
        raise ApprovalNeeded("automl: nothing was started or written; approval needed.",
                             hint="Re-run with --yes to approve non-interactively, or run it in a terminal and type go.")
    answer = prompt("Type 'go' to start (anything else cancels)")
    if answer.strip().lower() != "go":
        raise ApprovalNeeded("automl: cancelled at the approval prompt; nothing was started or written.")


@app.command("automl")
def automl_cmd(
    workspace: Annotated[Path, typer.Option("--workspace", "-w", help="Workspace root.")],
    train_csv: Annotated[Path | None, typer.Option("--train-csv", help="Training CSV (default: the base one).")] = None,
    val_csv: Annotated[Path | None, typer.Option("--val-csv", help="Validation CSV (default: the base one).")] = None,
    algorithm: Annotated[str, typer.Option("--algorithm", help="bayesian | gp | hyperband | asha | random | grid")] = "bayesian",
    recommendations: Annotated[int, typer.Option("--recommendations", "-n", help="Number of trials.")] = 8,
    space: Annotated[Path | None, typer.Option("--space", help="YAML search-space file.")] = None,
    param: Annotated[list[str], typer.Option("--param", help="key=loguniform(a,b) | uniform | int | choice | bool() (repeatable).")] = [],  # noqa: B006
    pin: Annotated[list[str], typer.Option("--pin", help="key=value held fixed (repeatable).")] = [],  # noqa: B006
    warm_start: Annotated[Path | None, typer.Option("--warm-start", help="Checkpoint every trial starts from.")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default: results/run_<UTC>/automl_phase1).")] = None,
    storage: Annotated[str | None, typer.Option("--storage", help="Optuna RDB URL, e.g. postgresql://u:p@host/db (default: SQLite in --out).")] = None,
    study_name: Annotated[str | None, typer.Option("--study-name", help="Study name in the storage (workers join it).")] = None,
    n_jobs: Annotated[int, typer.Option("--n-jobs", help="Parallel trials in this process (threads).")] = 1,
    noise_rerun: Annotated[str, typer.Option("--noise-rerun", help="on | off")] = "on",
    epochs: Annotated[int | None, typer.Option("--epochs", help="Pin train.num_epochs (the budget).")] = None,
    override: Annotated[list[str], typer.Option("-o", "--override", help="Spec override key=value (repeatable).")] = [],  # noqa: B006
    backend: Annotated[str, typer.Option("--backend", help="Backend name or module:factory.")] = "native",
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda")] = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="Continue the study in --out (or the latest one).")] = False,
    keep_checkpoints: Annotated[str, typer.Option(
        "--keep-checkpoints", help="best_latest (best_val + latest per trial) or all.")] = "best_latest",
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Approve without asking.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No trial table or progress lines.")] = False,
    json_out: JsonOpt = False,
    log_level: LogLevelOpt = "info",
) -> None:
    """Hyperparameter search scored on the validation set; writes best_rec.json, trials.csv and the winning checkpoint."""

    def body(s: Session) -> None:
        from rich.live import Live

        from deftpipe.automl.runner import execute, plan_automl, resolve_backend, trial_progress
        from deftpipe.automl.space import parse_pin
        from deftpipe.errors import ConfigError
        from deftpipe.ui import events
        from deftpipe.ui.runlog import run_log

        if noise_rerun not in ("on", "off"):
            raise ConfigError(f"--noise-rerun '{noise_rerun}': choose on or off.")
        pins = dict(parse_pin(p) for p in pin)
        plan = plan_automl(workspace, train_csv=train_csv, val_csv=val_csv, algorithm=algorithm,
                           n_trials=recommendations, space=list(param) or None, space_file=space, pins=pins,
                           warm_start=warm_start, seed=seed, out_dir=out, storage=storage, n_jobs=n_jobs,
                           noise_rerun=noise_rerun == "on", backend_ref=backend, overrides=override, epochs=epochs,
                           resume=resume, study_name=study_name, keep_checkpoints=keep_checkpoints)
        summary = "\n".join(f"  {line}" for line in plan.summary_lines())
        if s.verbose or not yes:  # the plan must be on screen when someone is asked to approve it
            echo("AutoML pre-launch summary\n" + summary)
        _approve(yes, summary)
        instance, _ = resolve_backend(backend, keep_checkpoints=keep_checkpoints)
        # RESULTS_DIR/logs/ for the default out (results/run_<UTC>/automl_phase1), else <out>/logs/.
        out_dir = plan.out_dir
        s.results_dir = out_dir.parent if out_dir.name in ("automl_phase1", "final_automl") else out_dir
        rows: list[dict[str, Any]] = []
        started = time.monotonic()
        with run_log(s.results_dir, s.say) as say, events.scope(phase="automl"):
            events.publish("run_start", results_dir=s.results_dir, out_dir=out_dir, n_trials=plan.n_trials,
                           algorithm=plan.algorithm, resumed=resume)
            say(f"AutoML: {plan.n_trials} trial(s), {plan.algorithm}; output {out_dir}")
            if console.is_terminal and s.verbose and not quiet and not s.json:
                with Live(_table(rows, n_trials=plan.n_trials, started=started), console=console,
                          refresh_per_second=2, transient=False) as live:
                    def on_trial(row: dict[str, Any]) -> None:
                        rows.append(row)
                        live.update(_table(rows, n_trials=plan.n_trials, started=started))

                    result = execute(plan, backend=instance, progress=on_trial, device=device)
            else:  # plain lines off a terminal; milestone events only under --json / --quiet
                counter = trial_progress(s.progress_factory("automl · trials"), plan.n_trials)
                result = execute(plan, backend=instance, progress=counter, device=device)
            line = (f"AutoML best {result.rec_id}: {plan.contract.name} = {result.score:.6g}{plan.contract.unit} "
                    f"({plan.direction}); best_rec: {result.best_rec_path}")
            say(line)
        if not s.verbose:
            echo(line)  # the one result line survives --log-level warning
        s.result.update(best_rec_id=result.rec_id, metric=plan.contract.name, score=result.score,
                        direction=plan.direction, best_rec_path=result.best_rec_path)

    def in_session() -> None:
        with session("automl", json_mode=json_out, log_level=log_level, quiet=quiet) as s:
            body(s)

    guarded(in_session)


@app.command("automl-worker")
def automl_worker_cmd(
    storage: Annotated[str, typer.Option("--storage", help="The study's Optuna RDB URL (e.g. postgresql://...).")],
    study: Annotated[str, typer.Option("--study", help="Study name (the coordinator's --study-name).")],
    workspace: Annotated[Path | None, typer.Option("--workspace", help="This machine's path to the workspace.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="This machine's path to the study's output folder.")] = None,
    backend: Annotated[str | None, typer.Option("--backend", help="Override the study's backend.")] = None,
    n_jobs: Annotated[int, typer.Option("--n-jobs", help="Parallel trials in this worker (threads).")] = 1,
    wait_timeout: Annotated[float, typer.Option("--wait-timeout", help="Seconds to wait for the study's release.")] = 600.0,
    device: Annotated[str, typer.Option("--device")] = "auto",
) -> None:
    """Join a study on any machine: waits for the coordinator's release, then runs trials until none is left."""

    def body() -> None:
        from deftpipe.automl.worker import run_worker

        res = run_worker(storage, study, workspace=workspace, out_dir=out, backend=backend, n_jobs=n_jobs,
                         wait_timeout_s=wait_timeout, progress=True, device=device)
        echo(f"automl-worker: ran {len(res.trials_run)} trial(s) of study '{res.study_name}': "
             + ", ".join(f"trial_{n:04d}" for n in res.trials_run))

    guarded(body)
