from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deftpipe.deft import rca


def _inference(scores: list[float], labels: list[str]) -> pd.DataFrame:
    return pd.DataFrame({
        "input_path": ["kpi/test"] * len(scores), "golden_path": ["kpi/golden"] * len(scores),
        "label": labels, "object_name": [f"C{i}@1" for i in range(len(scores))], "siamese_score": scores,
    })


def test_weak_samples_and_thresholds() -> None:
    # 10 PASS rows 0..9, defects at 3.5 (hard), 8.5, 20 (easy).
    scores = [float(i) for i in range(10)] + [3.5, 8.5, 20.0]
    labels = ["PASS"] * 10 + ["missing", "bridge", "missing"]
    res = rca.run(_inference(scores, labels), rca.RcaConfig(rca_top_k=2, far_target_pct=10.0))
    # t: largest threshold keeping 100 % recall = just below 3.5 -> the candidate 3.0
    assert res.threshold == 3.0
    # t_far: smallest threshold with FAR <= 10 % (1 of 10 PASS above) = 8.0
    assert res.threshold_far == 8.0
    gaps = res.gaps.set_index("object_name")
    assert bool(gaps.loc["C10@1", "is_miss"]) and gaps.loc["C10@1", "weakness"] == pytest.approx(4.5)
    assert not bool(gaps.loc["C12@1", "is_miss"])
    # PASS rows: descending score, weakness = score - t, top-2 kept
    passes = res.gaps[res.gaps["label"] == "PASS"]
    assert list(passes["siamese_score"]) == [9.0, 8.0]
    assert bool(passes["is_false_alarm"].all())
    assert res.target_defects[0] == "missing"
    assert res.metrics["at_t"]["fn"] == 0


def test_ties_broken_by_path_and_name() -> None:
    inf = _inference([1.0, 1.0, 5.0, 5.0], ["PASS", "PASS", "open", "open"])
    inf.loc[0, "object_name"] = "Z@1"
    inf.loc[1, "object_name"] = "A@1"
    res = rca.run(inf, rca.RcaConfig(rca_top_k=1))
    assert list(res.gaps[res.gaps["label"] == "PASS"]["object_name"]) == ["A@1"]


@pytest.mark.parametrize(("scores", "labels", "why"), [
    ([0.1, 0.2], ["PASS", "PASS"], "no defect rows"),
    ([0.1, float("nan")], ["PASS", "open"], "non-finite siamese_score"),
    ([5.0, 6.0, 1.0], ["PASS", "PASS", "open"], "only FAR = 100%"),
])
def test_unreachable(tmp_path: Path, scores: list[float], labels: list[str], why: str) -> None:
    res = rca.run(_inference(scores, labels), rca.RcaConfig())
    assert res.unreachable_reason and why in res.unreachable_reason
    paths = rca.write_outputs(res, tmp_path)
    assert (tmp_path / "unreachable_kpi.txt").exists() and "rca_gaps_parquet" not in paths
    assert not (tmp_path / "kpi_gaps.parquet").exists()


def test_outputs_written(tmp_path: Path) -> None:
    res = rca.run(_inference([0.0, 1.0, 2.0, 3.0], ["PASS", "PASS", "open", "open"]), rca.RcaConfig())
    res_gaps = rca.add_filepath(res.gaps, images_rel="images", first_light="LightA", image_ext=".png")
    assert res_gaps["filepath"].iloc[0].startswith("images/kpi/test/C")
    paths = rca.write_outputs(res, tmp_path, thumbnails=[("00_x", np.zeros((8, 16), np.uint8))])
    assert pd.read_parquet(paths["rca_gaps_parquet"]).shape[0] == 4
    assert float((tmp_path / "threshold.txt").read_text()) == res.threshold
    assert (tmp_path / "thumbnails/00_x.png").exists()
