"""run_mining: label filter, cutoff, top-k, dedupe, rejections, skips, hard stops, coordinates."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deftpipe.errors import ConfigError, StageFailed
from deftpipe.mining import MiningConfig, MiningHistory, MiningLayout, load_pool, run_mining
from tests.unit.mining.conftest import MiningWs, VectorEmbedder, at_cos, frame, unit

E0 = unit(1.0)
E2 = unit(0.0, 0.0, 1.0)


def _setup(mws: MiningWs) -> tuple[pd.DataFrame, pd.DataFrame, VectorEmbedder]:
    gaps = frame([mws.row("kpi", "K1@1", "missing", seed=1), mws.row("kpi", "K2@1", "short", seed=2)])
    gaps["siamese_score"] = [-1.0, -0.5]
    gaps["weakness"] = [1.0, 0.5]
    pool_rows = [mws.row("pool", f"M{i}@1", "missing", seed=10 + i) for i in range(6)]
    pool_rows += [mws.row("pool", f"S{i}@1", "short", seed=20 + i) for i in range(3)]
    pool_rows += [mws.row("pool", f"P{i}@1", "PASS", seed=30 + i) for i in range(2)]
    table = {"K1@1": E0, "K2@1": E2,
             "M0@1": at_cos(0.99), "M1@1": at_cos(0.97), "M2@1": at_cos(0.95), "M3@1": at_cos(0.93),
             "M4@1": at_cos(0.85), "M5@1": at_cos(0.2),
             "S0@1": E2, "S1@1": E0, "S2@1": E0,   # S1/S2 match K1 perfectly but carry another label
             "P0@1": E0, "P1@1": E2}
    return gaps, frame(pool_rows), VectorEmbedder(table)


def test_label_filter_cutoff_and_top_k(mws: MiningWs, empty_history: MiningHistory) -> None:
    gaps, pool, emb = _setup(mws)
    res = run_mining(gaps, pool, embedder=emb, cfg=mws.cfg(top_k_per_target=3), history=empty_history,
                     protected=mws.protected())
    by_target = res.mined.groupby("target_label")["object_name"].apply(list).to_dict()
    assert by_target == {"missing": ["M0@1", "M1@1", "M2@1"], "short": ["S0@1"]}
    assert (res.mined["label"] == res.mined["target_label"]).all()
    assert not res.skipped and not res.approximate
    assert res.mined["similarity"].is_monotonic_decreasing or len(res.mined) == 4
    summary = res.knn_summary.set_index("label")
    assert summary.loc["missing", "candidate_count"] == 6 and summary.loc["missing", "kept_count"] == 3
    assert list(res.knn_summary.columns) == ["label", "candidate_count", "kept_count", "rejected_count",
                                             "similarity_threshold"]


def test_min_similarity_cutoff_keeps_only_close_rows(mws: MiningWs, empty_history: MiningHistory) -> None:
    gaps, pool, emb = _setup(mws)
    res = run_mining(gaps, pool, embedder=emb, cfg=mws.cfg(top_k_per_target=10, min_similarity=0.9),
                     history=empty_history, protected=mws.protected())
    missing = res.mined[res.mined["label"] == "missing"]
    assert sorted(missing["object_name"]) == ["M0@1", "M1@1", "M2@1", "M3@1"]
    assert (res.mined["similarity"] >= 0.9).all()


def test_without_label_filter_other_labels_can_match(mws: MiningWs, empty_history: MiningHistory) -> None:
    gaps, pool, emb = _setup(mws)
    res = run_mining(gaps, pool, embedder=emb, cfg=mws.cfg(top_k_per_target=2, filter_by_label=False),
                     history=empty_history, protected=mws.protected())
    assert set(res.mined["label"]) - {"missing", "short"} == {"PASS"}  # the pool label is kept


def test_dedupe_across_targets_keeps_best_target(mws: MiningWs, empty_history: MiningHistory) -> None:
    gaps = frame([mws.row("kpi", "K1@1", "missing", seed=1), mws.row("kpi", "K3@1", "missing", seed=3)])
    pool = frame([mws.row("pool", "M0@1", "missing", seed=10)])
    emb = VectorEmbedder({"K1@1": at_cos(0.95), "K3@1": E0, "M0@1": E0})
    res = run_mining(gaps, pool, embedder=emb, cfg=mws.cfg(), history=empty_history, protected=mws.protected())
    assert len(res.mined) == 1
    assert res.mined.loc[0, "target_filepath"] == "images/kpi/test/K3@1_LightA.png"
    assert res.mined.loc[0, "similarity"] == pytest.approx(1.0)


def test_history_rejects_mined_and_training_rows(mws: MiningWs) -> None:
    gaps, pool, emb = _setup(mws)
    history = MiningHistory()
    history.add(["images/pool/test/M0@1_LightA.png"], kind="mined", iter_label="iter1")
    history.add(["images//pool/test/M1@1_LightA.png"], kind="training", iter_label="base")
    res = run_mining(gaps, pool, embedder=emb, cfg=mws.cfg(top_k_per_target=3), history=history,
                     protected=mws.protected())
    assert "M0@1" not in set(res.mined["object_name"]) and "M1@1" not in set(res.mined["object_name"])
    assert list(res.mined[res.mined["label"] == "missing"]["object_name"]) == ["M2@1", "M3@1"]
    counts = res.rejections.set_index(["label", "reason"])["count"].to_dict()
    assert counts == {("missing", "already_mined"): 1, ("missing", "in_training"): 1}
    assert res.knn_summary.set_index("label").loc["missing", "rejected_count"] == 2


def test_leakage_by_key_and_by_content_hash(mws: MiningWs, empty_history: MiningHistory) -> None:
    val_row = mws.row("val", "V1@1", "missing", seed=40)
    kpi_other = mws.row("kpi", "K9@1", "missing", seed=41)
    gaps = frame([mws.row("kpi", "K1@1", "missing", seed=1)])
    renamed = mws.copy_test_images("kpi", "K9@1", "pool", "RENAMED@7")  # same bytes, another name
    pool = frame([val_row, kpi_other, (*renamed[:2], "missing", renamed[2]),
                  mws.row("pool", "OK@1", "missing", seed=42)])
    protected = mws.protected(validation=frame([val_row]), kpi=frame([kpi_other, tuple(gaps.iloc[0])]))
    emb = VectorEmbedder({n: E0 for n in ("K1@1", "V1@1", "K9@1", "RENAMED@7", "OK@1")})
    res = run_mining(gaps, pool, embedder=emb, cfg=mws.cfg(), history=empty_history, protected=protected)
    assert list(res.mined["object_name"]) == ["OK@1"]
    counts = res.rejections.set_index("reason")["count"].to_dict()
    assert counts == {"leak_validation": 1, "leak_kpi": 1, "leak_hash": 1}


def test_missing_files_are_counted(mws: MiningWs, empty_history: MiningHistory) -> None:
    gaps, pool, emb = _setup(mws)
    pool = pd.concat([pool, frame([("pool/test", "pool/golden", "missing", "GHOST@1")])], ignore_index=True)
    (mws.images / "pool/golden/M3@1_LightB.png").unlink()  # one golden light missing is enough
    res = run_mining(gaps, pool, embedder=emb, cfg=mws.cfg(top_k_per_target=10), history=empty_history,
                     protected=mws.protected())
    counts = res.rejections.set_index(["label", "reason"])["count"].to_dict()
    assert counts == {("missing", "missing_file"): 2}
    assert "GHOST@1" not in set(res.mined["object_name"]) and "M3@1" not in set(res.mined["object_name"])


def test_empty_gaps_is_a_documented_skip(mws: MiningWs, empty_history: MiningHistory) -> None:
    res = run_mining(frame([]), None, embedder=VectorEmbedder(), cfg=mws.cfg(), history=empty_history,
                     protected=mws.protected())
    assert res.skipped and "no gap rows were routed to mining" in res.skip_reason
    assert len(res.mined) == 0


def test_missing_or_empty_pool_with_gaps_is_a_hard_stop(mws: MiningWs, empty_history: MiningHistory,
                                                        tmp_path: Path) -> None:
    gaps, _, emb = _setup(mws)
    with pytest.raises(StageFailed, match="data_mining: the mining pool is missing but 2 gap row"):
        run_mining(gaps, None, embedder=emb, cfg=mws.cfg(), history=empty_history, protected=mws.protected())
    with pytest.raises(StageFailed, match="the mining pool is empty"):
        run_mining(gaps, frame([]), embedder=emb, cfg=mws.cfg(), history=empty_history, protected=mws.protected())
    with pytest.raises(StageFailed, match="mining pool CSV '.*nope.csv' does not exist but 2 gap row"):
        load_pool(tmp_path / "nope.csv", n_targets=2)
    header_only = tmp_path / "pool.csv"
    header_only.write_text("input_path,golden_path,label,object_name\n")
    with pytest.raises(StageFailed, match="has no rows but 3 gap row"):
        load_pool(header_only, n_targets=3)


def test_layout_is_required(empty_history: MiningHistory) -> None:
    with pytest.raises(ConfigError, match="MiningConfig.layout is not set"):
        run_mining(frame([]), None, embedder=VectorEmbedder(), cfg=MiningConfig(), history=empty_history,
                   protected=None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="top_k_per_target must be at least 1"):
        MiningConfig(top_k_per_target=0)


def test_mined_rows_are_in_workspace_root_coordinates(mws: MiningWs, empty_history: MiningHistory) -> None:
    gaps, pool, emb = _setup(mws)
    res = run_mining(gaps, pool, embedder=emb, cfg=mws.cfg(), history=empty_history, protected=mws.protected())
    assert len(res.mined) > 0
    for row in res.mined.itertuples(index=False):
        assert row.input_path.startswith("images/pool/") and "images/images" not in row.input_path
        assert row.golden_path.startswith("images/pool/")
        for light in ("LightA", "LightB"):
            assert (mws.root / row.input_path / f"{row.object_name}_{light}.png").is_file()
            assert (mws.root / row.golden_path / f"{row.object_name}_{light}.png").is_file()
    assert set(res.mined["origin"]) == {"mined"}


def test_mining_images_root_prefix_applied_once(mws: MiningWs, empty_history: MiningHistory) -> None:
    gaps, _, _ = _setup(mws)
    mws.pair("extra/pool", "X1@1", seed=50)  # under images/extra/pool/...
    pool = frame([("pool/test", "pool/golden", "missing", "X1@1")])
    layout = MiningLayout(workspace_root=mws.root, lights=("LightA", "LightB"), image_ext=".png",
                          pool_images_dir=mws.images / "extra")
    emb = VectorEmbedder({"K1@1": E0, "X1@1": E0})
    res = run_mining(gaps, pool, embedder=emb, cfg=MiningConfig(layout=layout), history=empty_history,
                     protected=mws.protected())
    assert list(res.mined["input_path"]) == ["images/extra/pool/test"]
    assert (mws.root / "images/extra/pool/test/X1@1_LightA.png").is_file()


def test_label_warnings_and_yield_drop(mws: MiningWs, empty_history: MiningHistory) -> None:
    gaps, pool, emb = _setup(mws)
    gaps = pd.concat([gaps, frame([mws.row("kpi", "K4@1", "bridge", seed=4)])], ignore_index=True)
    previous = pd.DataFrame({"label": ["missing", "short"], "kept_count": [10, 1]})
    res = run_mining(gaps, pool, embedder=emb, cfg=mws.cfg(top_k_per_target=2), history=empty_history,
                     protected=mws.protected(), previous_summary=previous)
    text = "\n".join(res.warnings)
    assert "label 'bridge': the mining pool has no rows of this label" in text
    assert "label 'missing': yield fell by more than half (10 -> 2" in text
    assert "'short': yield" not in text
    assert res.knn_summary.set_index("label").loc["bridge", "candidate_count"] == 0
