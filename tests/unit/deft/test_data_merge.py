from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deftpipe.deft import data_merge
from deftpipe.errors import StageFailed
from deftpipe.workspace.tables import read_samples_csv


def _rows(names: list[str], folder: str = "train") -> pd.DataFrame:
    return pd.DataFrame({"input_path": [f"{folder}/test"] * len(names), "golden_path": [f"{folder}/golden"] * len(names),
                         "label": ["PASS"] * len(names), "object_name": names})


def test_iter1_rebases_base_rows_once() -> None:
    base = _rows(["a", "b"])
    base.loc[1, "input_path"] = "images/train/test"  # already rebased stays as is
    new = _rows(["m"], folder="images/pool").assign(origin="mined")
    res = data_merge.run(base, None, new, data_merge.MergeConfig(iteration=1))
    assert list(res.combined["input_path"]) == ["images/train/test", "images/train/test", "images/pool/test"]
    assert list(res.provenance["source"]) == ["base_train", "base_train", "mining_pool"]
    assert list(res.provenance["origin"]) == ["base", "base", "mined"]


def test_iter2_keeps_previous_and_never_readds_base() -> None:
    it1 = data_merge.run(_rows(["a"]), None, _rows(["s"], "images/x").assign(origin="sdg"),
                         data_merge.MergeConfig(iteration=1))
    it2 = data_merge.run(it1.combined, it1.provenance, _rows(["m"], "images/y").assign(origin="mined"),
                         data_merge.MergeConfig(iteration=2))
    assert list(it2.combined["object_name"]) == ["a", "s", "m"]
    assert list(it2.provenance["source"]) == ["previous_iter_train", "previous_iter_train", "mining_pool"]
    assert list(it2.provenance["origin"]) == ["base", "sdg", "mined"]


def test_misaligned_previous_provenance_is_a_hard_stop() -> None:
    with pytest.raises(StageFailed, match="not row-aligned"):
        data_merge.run(_rows(["a", "b"]), pd.DataFrame({"origin": ["base"]}), _rows([]),
                       data_merge.MergeConfig(iteration=2))


@settings(max_examples=50)
@given(prev=st.lists(st.text("abc", min_size=1, max_size=3), max_size=20),
       new=st.lists(st.text("xyz", min_size=1, max_size=3), max_size=20))
def test_merge_never_drops_earlier_rows(prev: list[str], new: list[str]) -> None:
    prov = pd.DataFrame({"origin": ["base"] * len(prev)})
    res = data_merge.run(_rows(prev), prov, _rows(new).assign(origin="mined"), data_merge.MergeConfig(iteration=2))
    assert Counter(prev) <= Counter(res.combined["object_name"])
    assert len(res.combined) == len(prev) + len(new) == len(res.provenance)


def test_validate_detects_leak_by_row_and_by_bytes(tiny_ws: Path) -> None:
    train = read_samples_csv(tiny_ws / "train/base/training_set.csv")
    kpi = read_samples_csv(tiny_ws / "kpi/testing_set.csv")
    # a KPI row smuggled in as-is, plus a copy of a KPI image under a new name
    for light in ("LightA", "LightB"):
        src = tiny_ws / f"images/kpi/test/KPI1@1_{light}.png"
        dst = tiny_ws / f"images/pool/test/P1@1_{light}.png"
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes())
        g = tiny_ws / f"images/pool/golden/P1@1_{light}.png"
        g.parent.mkdir(parents=True, exist_ok=True)
        g.write_bytes((tiny_ws / f"images/kpi/golden/KPI1@1_{light}.png").read_bytes())
    new = pd.concat([kpi.head(1), _rows(["P1@1"], "pool")]).assign(origin="mined")
    new = data_merge.rebase(new, "images")
    res = data_merge.run(train, None, new, data_merge.MergeConfig(iteration=1))
    report = data_merge.validate(res.combined, workspace_root=tiny_ws, lights=("LightA", "LightB"), image_ext=".png",
                                 protected={"kpi": kpi})
    assert report["status"] == "error"
    assert report["train_kpi_leakage_overlap_count"] == 2
    assert "leak into the kpi set" in report["problems"][0]


def test_validate_counts_missing_files(tiny_ws: Path) -> None:
    train = read_samples_csv(tiny_ws / "train/base/training_set.csv")
    res = data_merge.run(train, None, _rows(["ghost@1"], "images/nowhere").assign(origin="sdg"),
                         data_merge.MergeConfig(iteration=1))
    report = data_merge.validate(res.combined, workspace_root=tiny_ws, lights=("LightA", "LightB"),
                                 image_ext=".png", protected={})
    assert report["status"] == "error" and report["missing_file_count"] == 1
