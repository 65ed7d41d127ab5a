from __future__ import annotations

import importlib.util

import optuna
import pytest

from deftpipe.automl.objective import TrialOutcome
from deftpipe.automl.selection import Candidate, beats_by_more_than_margin, decide_by_median, rank
from deftpipe.automl.space import SearchSpace
from deftpipe.automl.study import (
    ask_seed,
    check_algorithm,
    direction_for,
    fidelity_plan,
    make_pruner,
    make_sampler,
)
from deftpipe.errors import ConfigError, DependencyMissing
from deftpipe.metrics.contract import MetricContract, default_far_contract


def _contract(name: str, op: str, unit: str = "") -> MetricContract:
    return MetricContract.from_dict({"name": name, "operator": op, "target": 1.0, "unit": unit,
                                     "evaluator": {"type": "builtin", "id": "auroc"}})


def test_unknown_algorithm_suggests_the_closest() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'hyperband'"):
        check_algorithm("hyperbnd")


def test_direction_comes_from_the_operator_never_the_name() -> None:
    assert direction_for(default_far_contract()) == "minimize"
    assert direction_for(_contract("far_pct", ">")) == "maximize"   # a 'FAR' name does not flip it
    assert direction_for(_contract("auroc", "<=")) == "minimize"


def test_samplers_and_pruners_by_name() -> None:
    space = SearchSpace.default()
    assert isinstance(make_sampler("bayesian", seed=0, space=space, n_trials=8), optuna.samplers.TPESampler)
    assert isinstance(make_sampler("random", seed=0, space=space, n_trials=8), optuna.samplers.RandomSampler)
    assert isinstance(make_sampler("grid", seed=0, space=space, n_trials=8), optuna.samplers.GridSampler)
    assert isinstance(make_pruner("hyperband", max_epochs=10), optuna.pruners.HyperbandPruner)
    assert isinstance(make_pruner("asha", max_epochs=10), optuna.pruners.SuccessiveHalvingPruner)
    assert isinstance(make_pruner("bayesian", max_epochs=10), optuna.pruners.NopPruner)


def test_gp_needs_scipy_or_says_so() -> None:
    if importlib.util.find_spec("scipy") is None:
        with pytest.raises(DependencyMissing, match="needs scipy"):
            make_sampler("gp", seed=0, space=SearchSpace.default(), n_trials=8)
    else:
        assert isinstance(make_sampler("gp", seed=0, space=SearchSpace.default(), n_trials=8),
                          optuna.samplers.GPSampler)


def test_hyperband_differs_from_successive_halving_at_the_default_budget() -> None:
    plan = fidelity_plan("hyperband", 10)   # template spec: train.num_epochs = 10
    assert len(plan.brackets) == 3 and not plan.same_as_sha
    small = fidelity_plan("hyperband", 2)
    assert small.same_as_sha and "behaves exactly like plain successive halving" in small.describe()


def test_ask_seed_is_stable_and_moves_with_progress() -> None:
    assert ask_seed(0, 3) == ask_seed(0, 3)
    assert len({ask_seed(0, n) for n in range(10)}) == 10
    assert ask_seed(1, 0) != ask_seed(0, 0)


def _cand(number: int, score: float | None, state: str = "complete", recall: float = 100.0) -> Candidate:
    return Candidate(number, TrialOutcome(state=state, seed=0, score=score,
                                          metric={"constraints": {"recall_pct": recall}}), {})


def test_rank_never_promotes_failed_pruned_or_disqualified() -> None:
    c = default_far_contract()
    cands = [_cand(0, 10.0), _cand(1, 0.0, "failed"), _cand(2, 0.0, "disqualified"), _cand(3, None, "pruned"),
             _cand(4, 5.0)]
    assert [x.number for x in rank(cands, c)] == [4, 0]


def test_rank_prefers_candidates_meeting_constraints() -> None:
    c = default_far_contract()
    assert rank([_cand(0, 1.0, recall=90.0), _cand(1, 8.0)], c)[0].number == 1


@pytest.mark.parametrize(("w", "r", "expected"), [(1.0, 3.0, True), (1.0, 1.5, False), (0.0, 1.0, True),
                                                   (0.0, 0.0, False), (3.0, 1.0, False)])
def test_far_noise_margin_is_a_ratio_of_two(w: float, r: float, expected: bool) -> None:
    assert beats_by_more_than_margin(w, r, default_far_contract()) is expected


def test_non_far_noise_margin_is_five_percent_relative() -> None:
    c = _contract("auroc", ">=")
    assert beats_by_more_than_margin(0.99, 0.90, c)
    assert not beats_by_more_than_margin(0.93, 0.90, c)


def test_median_of_three_decides_and_a_failed_rerun_counts_as_worst() -> None:
    c = default_far_contract()
    win, run = _cand(0, 1.0), _cand(1, 4.0)
    reruns = {0: [_cand(10, 20.0), _cand(11, 30.0)],               # lucky original: median 20
              1: [_cand(12, 5.0), _cand(13, 0.0, "failed")]}      # median of 4, 5, inf = 5
    d = decide_by_median([win, run], reruns, c)
    assert d.medians == {0: 20.0, 1: 5.0}
    assert d.chosen == 1 and d.chosen_run == 12 and d.score == 5.0
