"""The tie margin: above runtime noise, below half the gap to the next KPI score, so no KPI decision can flip."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from deftpipe.deploy.deliverable import TIE_MARGIN_CAP, Deliverable


def _run(tmp_path: Path, scores: list[float], threshold: float, *, with_state: bool = True) -> Deliverable:
    csv = tmp_path / "kpi_inference.csv"
    csv.write_text("object_name,label,siamese_score\n" + "".join(f"r{i},PASS,{s!r}\n" for i, s in enumerate(scores)))
    if with_state:
        (tmp_path / "deft_state.json").write_text(json.dumps({"iterations": {"iter_1": {"inference_csv": str(csv)}}}))
    return Deliverable(tmp_path, {"threshold": threshold, "iteration": "iter_1"})


def test_margin_is_capped_when_the_next_score_is_far(tmp_path: Path) -> None:
    assert _run(tmp_path, [-3.0, 0.5, 2.0], 0.5).tie_margin() == TIE_MARGIN_CAP


def test_margin_is_half_the_gap_when_the_next_score_is_close(tmp_path: Path) -> None:
    d = _run(tmp_path, [0.5, 0.5 + 4e-6, 9.0], 0.5)
    assert d.tie_margin() == pytest.approx(2e-6)
    # every KPI score keeps its side of the threshold once the margin is added
    for s in (0.5, 0.5 + 4e-6, 9.0):
        assert (s > d.threshold) == (s > d.threshold + d.tie_margin())


def test_without_state_or_scores_above_the_cap_is_used(tmp_path: Path) -> None:
    assert _run(tmp_path, [0.1, 0.2], 0.2).tie_margin() == TIE_MARGIN_CAP
    (tmp_path / "bare").mkdir()
    assert _run(tmp_path / "bare", [0.1], 0.0, with_state=False).tie_margin() == TIE_MARGIN_CAP


def test_no_margin_when_the_next_score_is_one_ulp_away(tmp_path: Path) -> None:
    import math

    low = -0.019860506057739258
    d = _run(tmp_path, [low, 0.3], math.nextafter(low, -math.inf))
    assert d.tie_margin() == 0.0
