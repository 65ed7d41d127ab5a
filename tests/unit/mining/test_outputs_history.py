"""mining_filter/ artifacts, the zero-new-rows hard stop, history persistence, protected sets from CSVs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deftpipe.errors import ContractError, StageFailed
from deftpipe.mining import MiningHistory, ProtectedSets, run_mining, write_mining_outputs
from tests.unit.mining.conftest import MiningWs, VectorEmbedder, frame, unit

E0 = unit(1.0)


def _result(mws: MiningWs, *, pool_vec: np.ndarray = E0):  # noqa: ANN202
    gaps = frame([mws.row("kpi", "K1@1", "missing", seed=1)])
    gaps["filepath"] = "images/kpi/test/K1@1_LightA.png"
    pool = frame([mws.row("pool", "M0@1", "missing", seed=2), mws.row("pool", "M1@1", "missing", seed=3)])
    emb = VectorEmbedder({"K1@1": E0, "M0@1": pool_vec, "M1@1": pool_vec})
    return run_mining(gaps, pool, embedder=emb, cfg=mws.cfg(), history=MiningHistory(), protected=mws.protected())


def test_outputs_are_written(mws: MiningWs, tmp_path: Path) -> None:
    res = _result(mws)
    sdg = frame([("results/run_x/iter1/dataset/images/synthetic_iter1_ng", "results/run_x/iter1/dataset/images/"
                  "synthetic_iter1_ok", "missing", "K1@1__sdg1_0")])
    out = tmp_path / "mining_filter"
    paths = write_mining_outputs(res, out, sdg_rows=sdg)
    pool_csv = pd.read_csv(paths["mining_pool_csv"], dtype=str, keep_default_na=False)
    assert list(pool_csv["origin"]) == ["sdg", "mined", "mined"]
    assert list(pool_csv.columns[:4]) == ["input_path", "golden_path", "label", "object_name"]
    assert pool_csv.loc[1, "input_path"] == "images/pool/test"
    knn = pd.read_csv(paths["knn_summary_csv"])
    assert list(knn.columns) == ["label", "candidate_count", "kept_count", "rejected_count", "similarity_threshold"]
    assert knn.to_dict("records") == [{"label": "missing", "candidate_count": 2, "kept_count": 2,
                                       "rejected_count": 0, "similarity_threshold": 0.9}]
    src = pd.read_parquet(paths["source_embeddings"])
    tgt = pd.read_parquet(paths["target_embeddings"])
    assert len(src) == 1 and len(src.loc[0, "embedding"]) == 16
    assert list(tgt["object_name"]) == ["M0@1", "M1@1"] and "similarity" in tgt.columns
    text = paths["mining_summary"].read_text()
    assert "exact flat inner product" in text and "novel mined rows: 2" in text
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["mining_pool.csv", "knn_summary.csv", "rejections.csv", "source_embeddings.parquet",
         "target_embeddings.parquet", "mining_summary.txt"])


def test_zero_novel_rows_without_sdg_is_a_hard_stop(mws: MiningWs, tmp_path: Path) -> None:
    res = _result(mws, pool_vec=unit(0.0, 1.0))  # orthogonal: nothing passes 0.9
    assert res.n_mined == 0
    with pytest.raises(StageFailed, match="zero novel mined rows and no synthetic rows") as info:
        write_mining_outputs(res, tmp_path / "out", sdg_rows=None)
    assert "raise --top-k" in (info.value.hint or "")
    assert not (tmp_path / "out").exists()
    sdg = frame([("results/r/iter1/dataset/images/synthetic_iter1_ng", "results/r/iter1/dataset/images/"
                  "synthetic_iter1_ok", "missing", "X__sdg1_0")])
    paths = write_mining_outputs(res, tmp_path / "out", sdg_rows=sdg)
    assert len(pd.read_csv(paths["mining_pool_csv"])) == 1


def test_skip_writes_sdg_rows_only(mws: MiningWs, tmp_path: Path) -> None:
    res = run_mining(frame([]), None, embedder=VectorEmbedder(), cfg=mws.cfg(), history=MiningHistory(),
                     protected=mws.protected())
    sdg = frame([("results/r/iter1/dataset/images/synthetic_iter1_ng", "results/r/iter1/dataset/images/"
                  "synthetic_iter1_ok", "missing", "X__sdg1_0")])
    paths = write_mining_outputs(res, tmp_path / "out", sdg_rows=sdg)
    assert list(pd.read_csv(paths["mining_pool_csv"])["origin"]) == ["sdg"]
    assert "skipped: no gap rows were routed to mining" in paths["mining_summary"].read_text()


def test_history_roundtrip_and_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "mining_history.json"
    h = MiningHistory.load(path)
    assert len(h) == 0
    rows = frame([("images/pool/test", "images/pool/golden", "missing", "M0@1")])
    assert h.add_rows(rows, kind="mined", iter_label="iter1", first_light="LightA", image_ext=".png") == 1
    assert h.add(["./images/pool/test/M0@1_LightA.png"], kind="training", iter_label="iter2") == 0
    h.save(path)
    again = MiningHistory.load(path)
    assert again.contains("images\\pool\\test\\M0@1_LightA.png")
    assert again.kind_of("images/pool/test/M0@1_LightA.png") == "mined"
    path.write_text("{not json")
    with pytest.raises(ContractError, match="mining history is not valid JSON"):
        MiningHistory.load(path)
    path.write_text('{"entries": {"a.png": {"kind": "stolen"}}}')
    with pytest.raises(ContractError, match="must be an object with 'entries'"):
        MiningHistory.load(path)


def test_protected_sets_from_csvs(mws: MiningWs) -> None:
    val = mws.row("val", "V1@1", " Missing ", seed=5)
    kpi = mws.row("kpi", "K1@1", "PASS", seed=6)
    (mws.root / "v.csv").write_text("input_path,golden_path,label,object_name,boardname\n" + ",".join(val) + ",b1\n")
    (mws.root / "k.csv").write_text("input_path,golden_path,label,object_name\n" + ",".join(kpi) + "\n")
    p = ProtectedSets.from_csvs(validation=mws.root / "v.csv", kpi=mws.root / "k.csv",
                                holdout=mws.root / "absent.csv", images_dir=mws.images, lights=("LightA", "LightB"),
                                image_ext=".png")
    assert p.keys["validation"] == frozenset({"images/val/test|images/val/golden|missing|V1@1"})
    assert "holdout" not in p.keys and len(p.hashes) == 2
    assert p.leak_source(["images/kpi/test|images/kpi/golden|PASS|K1@1", "x"]) == ["kpi", None]
    with pytest.raises(ContractError, match="file not found"):
        ProtectedSets.from_csvs(validation=mws.root / "nope.csv", images_dir=mws.images, lights=("LightA",),
                                image_ext=".png")
