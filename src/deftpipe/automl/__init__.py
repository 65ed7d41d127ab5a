"""AutoML engine of Phases 1 and 3: search space as data, Optuna studies in storage, best_rec.json.

Example:
    from deftpipe.automl import run_automl
    res = run_automl("demo_ws", algorithm="bayesian", n_trials=8, seed=0)
    res.best_rec_path  # .../automl_phase1/best_rec.json
"""
from __future__ import annotations

from deftpipe.automl.runner import AutomlPlan, AutomlResult, execute, plan_automl, run_automl
from deftpipe.automl.space import ParamSpec, SearchSpace, parse_param, parse_pin
from deftpipe.automl.study import ALGORITHMS
from deftpipe.automl.worker import WorkerResult, run_worker

__all__ = [
    "ALGORITHMS",
    "AutomlPlan",
    "AutomlResult",
    "ParamSpec",
    "SearchSpace",
    "WorkerResult",
    "execute",
    "parse_param",
    "parse_pin",
    "plan_automl",
    "run_automl",
    "run_worker",
]
