"""run_sdg end to end on a tiny workspace: files, coordinates, records, allocation, modes, errors."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from deftpipe.errors import ConfigError, ContractError
from deftpipe.sdg import SdgConfig, run_sdg
from deftpipe.sdg._imaging import psnr
from tests.unit.sdg.conftest import EXT, LIGHTS, gaps_frame

RUN_REL = "results/run_x"


def _run(ws: Path, train: pd.DataFrame, gaps: pd.DataFrame, **cfg: object) -> object:
    iteration = int(cfg.pop("iteration", 1))  # type: ignore[call-overload]
    return run_sdg(gaps, train, workspace_root=ws, train_images_dir=ws / "images", lights=LIGHTS, image_ext=EXT,
                   iter_dir=ws / RUN_REL / f"iter{iteration}", run_rel=RUN_REL,
                   cfg=SdgConfig(iteration=iteration, **cfg))  # type: ignore[arg-type]


def _read(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)


def test_rows_files_and_coordinates(component_ws: tuple[Path, pd.DataFrame]) -> None:
    ws, train = component_ws
    gaps = gaps_frame(["missing", "missing", "missing", "bridge", "PASS"])
    res = _run(ws, train, gaps, num_sdg=5, iteration=2)
    rows = res.rows
    assert not res.skipped and len(rows) == 5
    assert list(rows.columns[:4]) == ["input_path", "golden_path", "label", "object_name"]
    assert {"component_kind", "boardname"} <= set(rows.columns) and (rows["origin"] == "sdg").all()
    assert (rows["input_path"] == f"{RUN_REL}/iter2/dataset/images/synthetic_iter2_ng").all()
    assert (rows["golden_path"] == f"{RUN_REL}/iter2/dataset/images/synthetic_iter2_ok").all()
    assert rows["label"].value_counts().to_dict() == {"missing": 3, "bridge": 1, "PASS": 1}
    assert rows["object_name"].str.fullmatch(r"[RU]\d+@1__sdg2_\d+").all() and rows["object_name"].is_unique
    for _, row in rows.iterrows():
        for light in LIGHTS:  # paths are workspace-root relative
            assert (ws / row["input_path"] / f"{row['object_name']}_{light}{EXT}").is_file()
            assert (ws / row["golden_path"] / f"{row['object_name']}_{light}{EXT}").is_file()
    rec = res.records.set_index("object_name")
    for _, row in rows.iterrows():
        r = rec.loc[row["object_name"]]
        for light in LIGHTS:
            src_golden = ws / "images" / r["source_golden_path"] / f"{r['source_object_name']}_{light}{EXT}"
            new_golden = ws / row["golden_path"] / f"{row['object_name']}_{light}{EXT}"
            assert new_golden.read_bytes() == src_golden.read_bytes()  # golden byte-identical
        assert r["source_kind"] == "chip_resistor" and r["kind_match"] == "kind"


def test_records_and_allocation_files(component_ws: tuple[Path, pd.DataFrame]) -> None:
    ws, train = component_ws
    res = _run(ws, train, gaps_frame(["scratch"] * 5 + ["tombstone"] * 3 + ["PASS"]), num_sdg=10)
    sdg_dir = ws / RUN_REL / "iter1/sdg"
    alloc = json.loads((sdg_dir / "allocation.json").read_text())
    assert alloc["allocation"] == {"scratch": 6, "tombstone": 3, "PASS": 1} == res.allocation["allocation"]
    assert alloc["routed_rows"] == {"scratch": 5, "tombstone": 3, "PASS": 1} and alloc["num_sdg"] == 10
    csv = pd.read_csv(sdg_dir / "SDG_result.csv")
    assert len(csv) == 10
    for col in ("generator", "seed", "rng_key", "params", "psnr_unchanged_db", "mask_px", "source_object_name"):
        assert col in csv.columns
    defects = csv[csv["label"] != "PASS"]
    assert np.isinf(defects["psnr_unchanged_db"]).all()  # png is lossless: nothing outside the mask moved
    assert (defects["generic"] == False).all()  # noqa: E712
    assert json.loads(defects.iloc[0]["params"])
    for _, r in defects.iterrows():  # and the written test differs from its source only inside the mask
        for light in LIGHTS:
            new = _read(ws / r["input_path"] / f"{r['object_name']}_{light}{EXT}")
            src = _read(ws / "images" / r["source_input_path"] / f"{r['source_object_name']}_{light}{EXT}")
            x0, y0, x1, y1 = json.loads(r["mask_bbox"])
            outside = np.ones_like(new, bool)
            outside[y0:y1, x0:x1] = False
            np.testing.assert_array_equal(new[outside], src[outside])
            assert not np.array_equal(new, src)


def test_same_seed_same_bytes_other_seed_differs(component_ws: tuple[Path, pd.DataFrame]) -> None:
    ws, train = component_ws
    gaps = gaps_frame(["missing", "foreign_material", "PASS"])

    def snapshot() -> dict[str, bytes]:
        d = ws / RUN_REL / "iter1/dataset/images"
        return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*.png"))}

    _run(ws, train, gaps, num_sdg=3, seed=3)
    first = snapshot()
    csv1 = (ws / RUN_REL / "iter1/sdg/SDG_result.csv").read_bytes()
    _run(ws, train, gaps, num_sdg=3, seed=3)
    assert snapshot() == first and (ws / RUN_REL / "iter1/sdg/SDG_result.csv").read_bytes() == csv1
    _run(ws, train, gaps, num_sdg=3, seed=4)
    assert snapshot() != first


def test_golden_base_mode_paints_on_golden_copy(component_ws: tuple[Path, pd.DataFrame]) -> None:
    ws, train = component_ws
    res = _run(ws, train, gaps_frame(["excess_solder", "scratch"]), num_sdg=4, base="golden")
    for _, r in res.records.iterrows():
        assert r["base_mode"] == "golden"
        for light in LIGHTS:
            new = _read(ws / r["input_path"] / f"{r['object_name']}_{light}{EXT}")
            golden = _read(ws / r["golden_path"] / f"{r['object_name']}_{light}{EXT}")
            changed = new != golden
            assert 0 < changed.mean() < 0.5  # test = golden + the defect, nothing else
            x0, y0, x1, y1 = json.loads(r["mask_bbox"])
            assert not changed[:y0].any() and not changed[y1:].any()
            assert not changed[:, :x0].any() and not changed[:, x1:].any()


def test_pass_rows_are_nuisance_pairs_with_diagnosis(component_ws: tuple[Path, pd.DataFrame]) -> None:
    ws, train = component_ws
    gaps = gaps_frame(["PASS"] * 4)  # K3 is a gain false alarm
    res = _run(ws, train, gaps, num_sdg=4)
    assert (res.rows["label"] == "PASS").all()
    assert set(res.records["generator"]) == {"nuisance"}
    params = [json.loads(p) for p in res.records["params"]]
    assert all("diagnosed" in p for p in params)
    gain_row = [p for p, o in zip(params, res.records["routed_object_name"]) if o == "K3@1"]
    assert gain_row and gain_row[0]["diagnosed_weights"]["illumination"] == 1.0
    for _, r in res.records.iterrows():
        new = _read(ws / r["input_path"] / f"{r['object_name']}_LightA{EXT}")
        golden = _read(ws / r["golden_path"] / f"{r['object_name']}_LightA{EXT}")
        assert psnr(new, golden) > 15  # still the same part: a nuisance, not a defect


def test_kind_matching_ic_routed_rows_use_ic_bases(component_ws: tuple[Path, pd.DataFrame]) -> None:
    ws, train = component_ws
    gaps = gaps_frame(["bridge", "bridge"], kinds=["ic", "ic"])
    res = _run(ws, train, gaps, num_sdg=3)
    assert (res.records["source_kind"] == "ic").all() and (res.records["kind_match"] == "kind").all()
    assert res.rows["object_name"].str.startswith("U").all()
    gaps = gaps_frame(["scratch"], kinds=["qfn"]).drop(columns=["component_kind"])
    gaps["object_name"] = "U900@1"  # no kind column: object_name prefix 'U900' -> designator family 'u'
    res = _run(ws, train.drop(columns=["component_kind"]), gaps, num_sdg=2)
    assert (res.records["kind_match"] == "family").all() and res.rows["object_name"].str.startswith("U").all()


def test_skip_on_empty_gaps_writes_nothing(component_ws: tuple[Path, pd.DataFrame]) -> None:
    ws, train = component_ws
    res = _run(ws, train, gaps_frame([]).reindex(columns=["label", "filepath"]))
    assert res.skipped and "no RCA gaps were routed" in res.skip_reason
    assert res.rows.empty and list(res.rows.columns[:4]) == ["input_path", "golden_path", "label", "object_name"]
    assert not (ws / RUN_REL / "iter1").exists() or not any((ws / RUN_REL / "iter1").rglob("*.*"))


def test_unsupported_label_without_generic_fallback(component_ws: tuple[Path, pd.DataFrame]) -> None:
    ws, train = component_ws
    gaps = gaps_frame(["solder_ball", "missing"])
    with pytest.raises(ContractError, match=r"routed label 'solder_ball' has no SDG generator; supported labels: \["):
        _run(ws, train, gaps, generic_fallback=False)
    with pytest.raises(ContractError, match="Did you mean 'missing'"):
        _run(ws, train, gaps_frame(["misssing"]), generic_fallback=False)
    res = _run(ws, train, gaps, num_sdg=4)  # with the fallback: generic cutpaste, and the record says so
    rec = res.records[res.records["label"] == "solder_ball"]
    assert (rec["generator"] == "cutpaste").all() and rec["generic"].all()
    assert rec["fallback_reason"].str.contains("no specific generator").all()


def test_no_pass_base_pair_is_a_clear_error(component_ws: tuple[Path, pd.DataFrame]) -> None:
    ws, train = component_ws
    with pytest.raises(ContractError, match="no PASS rows to paint defects on"):
        _run(ws, train[train["label"] != "PASS"], gaps_frame(["missing"]))


def test_iter_dir_must_match_run_rel_and_iteration(component_ws: tuple[Path, pd.DataFrame]) -> None:
    ws, train = component_ws
    with pytest.raises(ConfigError, match="does not match iteration 2"):
        run_sdg(gaps_frame(["missing"]), train, workspace_root=ws, train_images_dir=ws / "images", lights=LIGHTS,
                image_ext=EXT, iter_dir=ws / RUN_REL / "iter1", run_rel=RUN_REL, cfg=SdgConfig(iteration=2))
    with pytest.raises(ConfigError, match="is not"):
        run_sdg(gaps_frame(["missing"]), train, workspace_root=ws, train_images_dir=ws / "images", lights=LIGHTS,
                image_ext=EXT, iter_dir=ws / "elsewhere/iter1", run_rel=RUN_REL, cfg=SdgConfig())
    with pytest.raises(ConfigError, match="choose one of \\['test', 'golden'\\]. Did you mean 'golden'"):
        SdgConfig(base="goldn")


def test_trace_workspace_specific_and_generic_fallback(trace_ws: tuple[Path, pd.DataFrame]) -> None:
    ws, train = trace_ws
    gaps = pd.DataFrame({"label": ["open", "short", "pin-hole", "missing"], "object_name": ["T0"] * 4,
                         "weakness": [1.0, 0.9, 0.8, 0.7]})
    res = run_sdg(gaps, train, workspace_root=ws, train_images_dir=ws / "images", lights=("gray",),
                  image_ext=EXT, iter_dir=ws / "results/run_y/iter1", run_rel="results/run_y",
                  cfg=SdgConfig(num_sdg=8))
    rec = res.records.set_index("label")
    assert (res.records[res.records["label"] != "missing"]["generic"] == False).all()  # noqa: E712
    miss = res.records[res.records["label"] == "missing"]
    assert miss["generic"].all() and miss["fallback_reason"].str.contains("do not suit").all()
    assert set(rec.index) == {"open", "short", "pin-hole", "missing"}
    for _, row in res.rows.iterrows():
        img = _read(ws / row["input_path"] / f"{row['object_name']}_gray{EXT}")
        assert set(np.unique(img)) <= {0, 255}


def test_loop_csv_coordinates_and_real_bases_preferred(component_ws: tuple[Path, pd.DataFrame]) -> None:
    ws, train = component_ws
    first = _run(ws, train, gaps_frame(["PASS"]), num_sdg=1)  # a synthetic PASS row, as a loop CSV would carry
    loop = train.copy()
    loop["input_path"] = "images/" + loop["input_path"]
    loop["golden_path"] = "images/" + loop["golden_path"]
    loop = pd.concat([loop.assign(origin="base"), first.rows], ignore_index=True)
    res = run_sdg(gaps_frame(["shift", "shift"]), loop, workspace_root=ws, train_images_dir=ws, lights=LIGHTS,
                  image_ext=EXT, iter_dir=ws / RUN_REL / "iter2", run_rel=RUN_REL, cfg=SdgConfig(iteration=2,
                                                                                              num_sdg=4))
    assert not res.records["source_object_name"].str.contains("__sdg").any()
    assert (res.records["source_images_dir"] == "").all()
    for _, r in res.records.iterrows():
        assert (ws / r["source_input_path"] / f"{r['source_object_name']}_LightA{EXT}").is_file()
    assert (res.rows["origin"] == "sdg").all()
