"""Choosing the AutoML winner (SPEC §3 selection rule) and the noise re-run of SPEC §6/§8.

Only `complete` trials with a finite score can win: failed, pruned and disqualified
ones never do. When the winner beats the runner-up by more than the noise margin,
both are retrained with seeds `seed + 1000·k` (k = 1, 2) and the median of three
decides; a failed re-run counts as the worst possible value.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deftpipe.automl.objective import TrialOutcome

if TYPE_CHECKING:
    from deftpipe.metrics.contract import MetricContract

N_RERUNS = 2
RERUN_SEED_STEP = 1000
FAR_RATIO_MARGIN = 2.0     # SPEC §8: a single-seed change below 2x is noise for FAR-like % scores
RELATIVE_MARGIN = 0.05


@dataclass(frozen=True)
class Candidate:
    number: int
    outcome: TrialOutcome
    params: Mapping[str, Any]


def rank(candidates: Sequence[Candidate], contract: MetricContract) -> list[Candidate]:
    """Eligible candidates best first: constraint-passing ones first, then by the operator's direction."""
    ok = [c for c in candidates if c.outcome.eligible]

    def key(c: Candidate) -> tuple[int, float, int]:
        passes = contract.constraints_pass(c.outcome.metric.get("constraints", {})) if contract.constraints else True
        value = float(c.outcome.score)  # type: ignore[arg-type]
        return (0 if passes else 1, value if contract.lower_is_better else -value, c.number)

    return sorted(ok, key=key)


def is_far_like(contract: MetricContract) -> bool:
    """A percentage where lower is better (FAR, miss rate): compared by ratio."""
    return contract.unit == "%" and contract.lower_is_better


def noise_margin(contract: MetricContract) -> str:
    return f"ratio {FAR_RATIO_MARGIN:g}" if is_far_like(contract) else f"{RELATIVE_MARGIN:.0%} relative"


def beats_by_more_than_margin(winner: float, runner_up: float, contract: MetricContract) -> bool:
    """True if `winner` beats `runner_up` by more than the noise margin (SPEC §6 re-run trigger)."""
    if not contract.is_better(winner, runner_up):
        return False
    if is_far_like(contract):
        if winner <= 0:
            return runner_up > 0
        return runner_up / winner > FAR_RATIO_MARGIN
    return abs(winner - runner_up) > RELATIVE_MARGIN * max(abs(runner_up), 1e-12)


def rerun_seed(seed: int, k: int) -> int:
    return int(seed) + RERUN_SEED_STEP * int(k)


def worst(contract: MetricContract) -> float:
    return math.inf if contract.lower_is_better else -math.inf


def median3(values: Sequence[float]) -> float:
    s = sorted(values)
    return s[len(s) // 2]


@dataclass(frozen=True)
class NoiseDecision:
    """The outcome of the noise re-run: per original trial, the runs and their median."""

    triggered: bool
    reason: str
    runs: dict[int, list[tuple[int, float]]] = field(default_factory=dict)  # original -> [(trial number, score)]
    medians: dict[int, float] = field(default_factory=dict)
    chosen: int | None = None          # original trial number that wins by median
    chosen_run: int | None = None      # the run (trial number) whose score is that median
    score: float | None = None


def decide_by_median(originals: Sequence[Candidate], reruns: Mapping[int, Sequence[Candidate]],
                     contract: MetricContract) -> NoiseDecision:
    """Median of (original + re-runs) per candidate; best median wins, ties keep the original ranking."""
    bad = worst(contract)
    runs: dict[int, list[tuple[int, float]]] = {}
    for cand in originals:
        series = [(cand.number, float(cand.outcome.score))]  # type: ignore[arg-type]
        for r in sorted(reruns.get(cand.number, ()), key=lambda c: c.number):
            series.append((r.number, float(r.outcome.score) if r.outcome.eligible else bad))  # type: ignore[arg-type]
        while len(series) < 1 + N_RERUNS:
            series.append((-1, bad))  # a missing re-run never helps
        runs[cand.number] = series
    medians = {n: median3([v for _, v in s]) for n, s in runs.items()}
    chosen = originals[0].number
    for cand in originals[1:]:
        if contract.is_better(medians[cand.number], medians[chosen]):
            chosen = cand.number
    med = medians[chosen]
    if not math.isfinite(med):
        return NoiseDecision(True, "noise re-run inconclusive (re-runs failed); the original winner is kept",
                             runs, medians, originals[0].number, originals[0].number, originals[0].outcome.score)
    run_number = next(n for n, v in runs[chosen] if v == med and n >= 0)
    return NoiseDecision(True, "median of 3 seeds", runs, medians, chosen, run_number, med)
