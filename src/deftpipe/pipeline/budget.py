"""`deftpipe run --time-budget 2h` -> `max_iterations`, from the pre-flight's measured training speed.

Phase 1 and Phase 3 cost what recommendations x epochs cost, whatever the budget; the rest of the
budget buys DEFT iterations at the estimated cost of each (its training set grows every iteration,
and so does Phase 3's). The budget is a cap like `--max-iterations`: with both, the smaller wins.
It sizes the run before it starts; it is not a deadline enforced while the run goes.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from deftpipe.errors import ConfigError

_PART = re.compile(r"(\d+(?:\.\d+)?)([hms])")
_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0}
# Used as `max_iterations` while only a time budget was given; the pre-flight replaces it before anything runs.
UNCAPPED = 1000
EstimateFn = Callable[[int], Mapping[str, Any]]  # max_iterations -> phase_estimates(...) dict


def parse_duration(text: str) -> float:
    """Seconds in '90m', '2h', '1h30m', '3600s' or '1.5h' (units h/m/s, largest first, each at most once).

    Raises:
        ConfigError: a bare number, an unknown unit, a repeated unit, or a zero budget.
    """
    compact = str(text).strip().lower().replace(" ", "")
    parts = _PART.findall(compact)
    units = [u for _, u in parts]
    if (not parts or "".join(v + u for v, u in parts) != compact or len(set(units)) != len(units)
            or units != sorted(units, key="hms".index)):
        raise ConfigError(f"--time-budget '{text}' is not a duration; write it like 90m, 2h, 1h30m or 3600s "
                          "(a bare number is ambiguous: say s, m or h).")
    seconds = sum(float(v) * _UNIT_S[u] for v, u in parts)
    if seconds <= 0:
        raise ConfigError(f"--time-budget '{text}' is zero; give the wall time the run may take, e.g. 2h.")
    return seconds


def format_duration(seconds: float) -> str:
    """'1h05m', '7m30s', '45s': how the pre-flight shows budgets and estimates."""
    s = int(math.ceil(seconds))
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


@dataclass(frozen=True)
class BudgetPlan:
    """What a time budget allows: the iteration count, and the estimates that decided it."""

    budget_s: float
    max_iterations: int        # the most iterations whose estimated total fits the budget (>= 1)
    estimate_s: float          # estimated total at `max_iterations`
    fixed_s: float             # Phases 1 + 3 and the baseline evaluation (no iteration)
    first_iteration_s: float   # what the first iteration adds (later ones cost a little more)

    def to_json(self) -> dict[str, Any]:
        return {"budget_s": self.budget_s, "max_iterations": self.max_iterations, "estimate_s": self.estimate_s,
                "fixed_s": self.fixed_s, "first_iteration_s": self.first_iteration_s}


def plan_iterations(budget_s: float, estimate_for: EstimateFn, *, budget_text: str, shrink: str,
                    limit: int = UNCAPPED) -> BudgetPlan:
    """The largest max_iterations (1..limit) whose estimated total time fits `budget_s`.

    Args:
        estimate_for: total seconds for a given max_iterations (`phase_estimates`' dict, key `total_s`).
        budget_text: the budget as the user wrote it, for messages.
        shrink: how this run could be made smaller (names the user's current values), for the refusal.

    Raises:
        ConfigError: not even one iteration fits; says the minimum budget and how to shrink the run.
    """
    fixed = float(estimate_for(0)["total_s"])
    one = float(estimate_for(1)["total_s"])
    if one > budget_s:
        need = format_duration(one * 1.05)
        raise ConfigError(
            f"--time-budget {budget_text}: one DEFT iteration does not fit; the estimate for Phase 1 + one "
            f"iteration + Phase 3 is {format_duration(one)} (Phases 1 and 3 alone {format_duration(fixed)}, "
            f"the iteration {format_duration(one - fixed)}), from the measured training speed on this workspace.",
            hint=f"Give at least --time-budget {need}, or shrink the run: {shrink}.")
    lo, hi = 1, max(1, limit)
    while lo < hi:  # the estimate grows with every iteration, so bisect
        mid = (lo + hi + 1) // 2
        if float(estimate_for(mid)["total_s"]) <= budget_s:
            lo = mid
        else:
            hi = mid - 1
    return BudgetPlan(budget_s=budget_s, max_iterations=lo, estimate_s=float(estimate_for(lo)["total_s"]),
                      fixed_s=fixed, first_iteration_s=one - fixed)


def combine(plan: BudgetPlan, *, user_cap: int | None, cap_source: str, budget_text: str) -> tuple[int, str]:
    """(max_iterations, source tag): the smaller of the budget's value and an explicit max_iterations.

    Both are upper limits a user set, so both hold: a budget never raises an explicit cap, and a cap
    never lets the run outgrow the budget.
    """
    tag = f"time-budget {budget_text} → estimate"
    if user_cap is None or plan.max_iterations <= user_cap:
        if user_cap is not None and plan.max_iterations < user_cap:
            tag += f" (below max_iterations {user_cap}, {cap_source})"
        return plan.max_iterations, tag
    return user_cap, f"{cap_source} (the time budget {budget_text} would allow {plan.max_iterations})"


def apply(settings: Any, sources: Mapping[str, str], estimate_for: EstimateFn, *, epochs: int
          ) -> tuple[Any, dict[str, str], BudgetPlan]:
    """Settings with the budget's max_iterations in place, sources tagged; `settings` is a PipelineSettings.

    An explicit max_iterations counts only when the user or the run config gave it (it is in `sources`).
    """
    import dataclasses

    text = str(settings.time_budget)
    user_cap = int(settings.max_iterations) if "max_iterations" in sources else None
    shrink = f"fewer --recommendations (now {settings.recommendations}) or --epochs (now {epochs})"
    if settings.noise_rerun:
        shrink += ", or --noise-rerun off (saves up to 4 retrainings per AutoML phase)"
    plan = plan_iterations(parse_duration(text), estimate_for, budget_text=text, shrink=shrink)
    value, tag = combine(plan, user_cap=user_cap, cap_source=sources.get("max_iterations", "default"),
                         budget_text=text)
    out_sources = {**sources, "max_iterations": tag}
    out_sources.setdefault("time_budget", "user")
    return dataclasses.replace(settings, max_iterations=value), out_sources, plan


def describe(plan: BudgetPlan, text: str | None) -> str:
    """One pre-flight line: the budget, what Phases 1 + 3 take of it, and what the iterations get."""
    return (f"{text} ({format_duration(plan.budget_s)}): Phases 1 + 3 ≈ {format_duration(plan.fixed_s)}, "
            f"first iteration ≈ {format_duration(plan.first_iteration_s)}; {plan.max_iterations} iteration(s) "
            f"fit, estimated total {format_duration(plan.estimate_s)}")
