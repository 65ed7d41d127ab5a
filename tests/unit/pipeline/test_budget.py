"""`deftpipe run --time-budget` (issue #6): parsing, budget -> max_iterations, the refusal when one iteration
does not fit, `--max-iterations` together with a budget (the smaller wins), and the pre-flight / saved config
showing the derived value with its source. The measured timing is monkeypatched: no training runs here."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from deftpipe.cli.app import app
from deftpipe.cli.main import _load_commands
from deftpipe.errors import ConfigError
from deftpipe.pipeline import budget, preflight
from deftpipe.pipeline import estimate as est
from deftpipe.pipeline.run import CONFIG_FILE, PipelineSettings
from tests.unit.pipeline import fake_backend

_load_commands()
# 10 ms per pair-epoch, 2 s per training: tiny_ws (12 train / 6 val / 6 KPI pairs, 2 epochs, 2 trials) then
# costs ~11 s for Phases 1 + 3 and ~3 s per DEFT iteration.
TIMING = est.Timing(seconds_per_pair_epoch=0.01, pairs_measured=160, seconds_measured=5.0, seconds_per_training=2.0)
FLAGS = ["--recommendations", "2", "--epochs", "2", "--noise-rerun", "off", "--backend", fake_backend.NAME]


@pytest.fixture
def timed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """measure_training returns TIMING; the list counts the calls (the budget must not measure twice)."""
    calls: list[int] = []

    def fake_measure(*args: Any, **kwargs: Any) -> est.Timing:
        calls.append(1)
        return TIMING

    monkeypatch.setattr(est, "measure_training", fake_measure)
    fake_backend.ensure_registered()
    return calls


def _invoke(args: list[str]) -> Any:
    return CliRunner().invoke(app, args, env={"COLUMNS": "250"})


def _linear(fixed: float, per_iteration: float) -> budget.EstimateFn:
    return lambda m: {"total_s": fixed + per_iteration * m + 0.5 * m * m}  # later iterations cost a bit more


# --- parsing ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("90m", 5400), ("2h", 7200), ("1h30m", 5400), ("3600s", 3600), ("1.5h", 5400), (" 2H ", 7200),
    ("1h2m3s", 3723), ("45s", 45),
])
def test_durations_parse_to_seconds(text: str, seconds: float) -> None:
    assert budget.parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["90", "2x", "m", "1m1h", "1h1h", "h30", "2 hours", "", "-1h"])
def test_bad_durations_are_refused_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ConfigError, match=r"is not a duration; write it like 90m, 2h, 1h30m or 3600s"):
        budget.parse_duration(text)


def test_a_zero_budget_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"--time-budget '0m' is zero"):
        budget.parse_duration("0m")


def test_settings_refuse_a_bad_budget_from_a_run_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--time-budget 'soon' is not a duration"):
        PipelineSettings(workspace=tmp_path, max_iterations=1, time_budget="soon")


# --- conversion -------------------------------------------------------------------------------------------------


def test_the_budget_buys_the_most_iterations_that_fit() -> None:
    fn = _linear(100.0, 50.0)  # totals: 1 -> 150.5, 4 -> 308, 5 -> 362.5
    plan = budget.plan_iterations(350.0, fn, budget_text="x", shrink="-")
    assert plan.max_iterations == 4
    assert plan.estimate_s == pytest.approx(308.0) and plan.fixed_s == 100.0
    assert plan.first_iteration_s == pytest.approx(50.5)
    assert budget.plan_iterations(150.5, fn, budget_text="x", shrink="-").max_iterations == 1  # exactly fits


def test_a_budget_below_one_iteration_is_refused_with_the_minimum_and_how_to_shrink() -> None:
    with pytest.raises(ConfigError, match=r"--time-budget 2m: one DEFT iteration does not fit; the estimate for "
                                          r"Phase 1 \+ one iteration \+ Phase 3 is 2m31s") as info:
        budget.plan_iterations(120.0, _linear(100.0, 50.0), budget_text="2m", shrink="fewer --recommendations (now 5)")
    assert info.value.hint is not None
    assert "at least --time-budget 2m39s" in info.value.hint and "fewer --recommendations (now 5)" in info.value.hint


@pytest.mark.parametrize(("cap", "expected", "tag"), [
    (None, 4, "time-budget 3h → estimate"),
    (9, 4, "time-budget 3h → estimate (below max_iterations 9, user)"),
    (2, 2, "user (the time budget 3h would allow 4)"),
])
def test_with_max_iterations_too_the_smaller_wins(cap: int | None, expected: int, tag: str) -> None:
    plan = budget.plan_iterations(350.0, _linear(100.0, 50.0), budget_text="3h", shrink="-")
    assert budget.combine(plan, user_cap=cap, cap_source="user", budget_text="3h") == (expected, tag)


# --- the pre-flight and the saved config ------------------------------------------------------------------------


def _phase_total(ws: Path, m: int) -> float:
    return est.phase_estimates(TIMING, n_train=12, n_val=6, n_kpi=6, n_pool=0, epochs=2, recommendations=2,
                               max_iterations=m, num_sdg=20, mining_top_k=5, noise_rerun=False)["total_s"]


def test_preflight_shows_the_derived_iterations_tagged_with_the_budget(tiny_ws: Path, timed: list[int]) -> None:
    ps = PipelineSettings(workspace=tiny_ws, max_iterations=budget.UNCAPPED, recommendations=2, epochs=2,
                          noise_rerun=False, backend=fake_backend.NAME, time_budget="1m")
    pf = preflight.build(ps, sources={"time_budget": "user"}, measure=True)
    expected = max(m for m in range(1, 50) if _phase_total(tiny_ws, m) <= 60)
    assert expected >= 2  # the fixture timing leaves room for more than one iteration
    assert pf.settings.max_iterations == expected and pf.settings.time_budget == "1m"
    phase2 = {i.key: i for i in pf.sections[5].items}
    assert phase2["max iterations"].value == expected
    assert phase2["max iterations"].source == "time-budget 1m → estimate"
    assert f"{expected} iteration(s) fit" in phase2["time budget"].value
    assert pf.estimate["budget"]["max_iterations"] == expected and pf.estimate["total_s"] <= 60
    assert len(timed) == 1  # the budget reuses the pre-flight's one measurement


def test_preflight_cli_prints_the_derived_value_and_refuses_a_budget_too_small(tiny_ws: Path, timed: list[int]
                                                                                ) -> None:
    res = _invoke(["preflight", "--workspace", str(tiny_ws), "--time-budget", "1m", *FLAGS])
    assert res.exit_code == 0, res.output
    assert "time-budget 1m → estimate" in res.output
    res = _invoke(["preflight", "--workspace", str(tiny_ws), "--time-budget", "5s", *FLAGS])
    assert res.exit_code == 2, res.output
    assert "one DEFT iteration does not fit" in res.output and "at least --time-budget" in res.output


def test_a_budget_needs_the_measurement(tiny_ws: Path, timed: list[int]) -> None:
    res = _invoke(["preflight", "--workspace", str(tiny_ws), "--time-budget", "1h", "--no-measure", *FLAGS])
    assert res.exit_code == 2, res.output
    assert "--time-budget needs the measured training speed" in res.output and not timed


def test_without_budget_or_max_iterations_run_names_both(tiny_ws: Path) -> None:
    res = _invoke(["preflight", "--workspace", str(tiny_ws), "--no-measure", *FLAGS])
    assert res.exit_code == 2, res.output
    assert "--max-iterations N or --time-budget DURATION" in res.output


def test_run_saves_the_derived_value_and_the_budget_in_its_config(tiny_ws: Path, timed: list[int],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import deftpipe.pipeline.run as run_mod

    seen: list[PipelineSettings] = []
    monkeypatch.setattr(run_mod, "run_phases", lambda rd, settings, **kw: seen.append(settings) or _Outcome(rd))
    res = _invoke(["run", "--workspace", str(tiny_ws), "--time-budget", "1m", "--max-iterations", "1", "--yes",
                   *FLAGS])
    assert res.exit_code == 0, res.output
    rd = next((tiny_ws / "results").glob("run_*"))
    saved = json.loads((rd / CONFIG_FILE).read_text())["settings"]
    assert (saved["max_iterations"], saved["time_budget"]) == (1, "1m")  # --max-iterations 1 is the smaller
    assert seen[0].max_iterations == 1
    items = {i["key"]: i for s in json.loads((rd / "preflight.json").read_text())["sections"] for i in s["items"]}
    assert items["max iterations"]["source"].startswith("user (the time budget 1m would allow ")


class _Outcome:
    def __init__(self, rd: Path) -> None:
        self.results_dir, self.deliverable, self.trajectory, self.phase3_skipped = rd, None, [], None


def test_the_python_api_takes_a_budget_too(tiny_ws: Path, timed: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    import deftpipe
    import deftpipe.pipeline.run as run_mod

    monkeypatch.setattr(run_mod, "run_phases", lambda rd, settings, **kw: _Outcome(rd))
    deftpipe.run_pipeline(tiny_ws, max_iterations=50, time_budget="1m", recommendations=2, epochs=2,
                          noise_rerun=False, backend=fake_backend.NAME)
    rd = next((tiny_ws / "results").glob("run_*"))
    saved = json.loads((rd / CONFIG_FILE).read_text())["settings"]
    expected = max(m for m in range(1, 50) if _phase_total(tiny_ws, m) <= 60)
    assert (saved["max_iterations"], saved["time_budget"]) == (expected, "1m")  # below the explicit 50
