"""`trials.csv` and `automl_summary.md`, rebuilt from the study's trials (any process can write them)."""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from deftpipe.automl._loop import is_dead, outcome_of, trial_label
from deftpipe.workspace.io import write_csv_atomic, write_text_atomic

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

TRIALS_COLUMNS: tuple[str, ...] = (
    "number", "rec_id", "state", "score", "params", "budget_epochs", "is_noise_rerun", "rerun_of", "retry_of",
    "seed", "candidate", "n_pred_pass", "n_pred_defect", "best_val_loss", "checkpoint_path", "duration_s", "error",
)


def trial_row(t: FrozenTrial, *, retried_as: dict[int, int] | None = None) -> dict[str, Any]:
    """One trials.csv row; the state is ours (complete / pruned / failed / disqualified / running / waiting)."""
    out = outcome_of(t)
    attrs = t.user_attrs
    state = out.state if out is not None else t.state.name.lower()
    error = out.error if out is not None else None
    if is_dead(t):
        state = "failed"
        again = (retried_as or {}).get(t.number)
        error = "process died mid-trial" + (f"; retried with the same parameters as {trial_label(again)}"
                                            if again is not None else "")
    if attrs.get("surplus"):
        state, error = "failed", "surplus: another worker took the last trial slot; not run"
    counts = out.pred_counts if out is not None else {}
    score = out.score if out is not None and out.state in ("complete", "disqualified") else None
    return {
        "number": t.number, "rec_id": trial_label(t.number), "state": state,
        "score": score, "params": json.dumps(t.params, sort_keys=True),
        "budget_epochs": out.epochs_run if out is not None else None,
        "is_noise_rerun": bool(attrs.get("is_noise_rerun", False)), "rerun_of": attrs.get("rerun_of"),
        "retry_of": attrs.get("retry_of"), "seed": attrs.get("seed"),
        "candidate": out.candidate if out is not None else None,
        "n_pred_pass": counts.get("PASS"), "n_pred_defect": counts.get("defect"),
        "best_val_loss": out.best_val_loss if out is not None else None,
        "checkpoint_path": out.checkpoint_path if out is not None else None,
        "duration_s": out.duration_s if out is not None else None, "error": error,
    }


def retried_map(trials: Sequence[FrozenTrial]) -> dict[int, int]:
    """dead trial number -> the trial that repeated its parameters."""
    return {int(t.user_attrs["retried_from"]): t.number for t in trials if "retried_from" in t.user_attrs}


def write_trials_csv(path: Path, trials: Sequence[FrozenTrial]) -> pd.DataFrame:
    again = retried_map(trials)
    frame = pd.DataFrame([trial_row(t, retried_as=again) for t in trials], columns=list(TRIALS_COLUMNS))
    write_csv_atomic(path, frame)
    return frame


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def write_summary(path: Path, *, plan_lines: Sequence[str], frame: pd.DataFrame, winner_lines: Sequence[str],
                  noise_lines: Sequence[str]) -> None:
    """≤ one screen of Markdown: settings, outcome counts, the winner, noise re-run, the trial table."""
    counts = frame["state"].value_counts().to_dict() if len(frame) else {}
    lines = ["# AutoML summary", "", "## Settings", *[f"- {line}" for line in plan_lines], "",
             "## Outcome", f"- trials: {len(frame)} ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})",
             *[f"- {line}" for line in winner_lines], "", "## Noise re-run", *[f"- {line}" for line in noise_lines],
             "", "## Trials", "",
             "| trial | state | score | epochs | pred PASS/defect | rerun | params |",
             "|---|---|---|---|---|---|---|"]
    for row in frame.to_dict("records"):
        lines.append(
            f"| {row['rec_id']} | {row['state']} | {_fmt(row['score'])} | {_fmt(row['budget_epochs'])} | "
            f"{_fmt(row['n_pred_pass'])}/{_fmt(row['n_pred_defect'])} | {'yes' if row['is_noise_rerun'] else ''} | "
            f"{row['params']} |"
        )
    bad = frame[frame["state"].isin(["failed", "disqualified"])] if len(frame) else frame
    if len(bad):
        lines += ["", "## Failed and disqualified trials (never selected)", ""]
        lines += [f"- {r['rec_id']} ({r['state']}): {r['error']}" for r in bad.to_dict("records")]
    lines += ["", "The KPI and holdout sets were not read: every score above is on the validation CSV."]
    write_text_atomic(path, "\n".join(lines) + "\n")
