"""The loop driver's gates and branches on the tiny demo with the fake backend (SPEC §5): pre-seeded baseline,
KPI met at baseline, leakage rejected in mining and stopped at merge, documented skips, unreachable KPI,
the regression gate, and the one-process-per-run lock."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from deftpipe.deft import steps
from deftpipe.deft.loop import run_loop
from deftpipe.errors import EXIT_HARD_STOP, EXIT_REGRESSION, RegressionHalt, StageFailed, StateConflict
from deftpipe.state import StateStore
from tests.conftest import REPO
from tests.unit.deft import fake_backend
from tests.unit.deft.loop_support import committed, files_under, new_run, read_rows, state

# --- pre-seeded baseline, KPI met ---------------------------------------------------------------------------


def _phase1_checkpoint(ws: Path, out: Path) -> Path:
    """A checkpoint 'from Phase 1': the fake backend trained on the base CSV, outside the run."""
    from deftpipe.backends.base import TrainRequest
    from deftpipe.workspace.spec import load_spec

    spec = load_spec(ws / "specs" / "baseline_spec.yaml", ["train.num_epochs=1"])
    res = fake_backend.FakeDeftBackend().train(TrainRequest(
        spec=spec, train_csv=ws / "train/base/training_set.csv", val_csv=ws / "train/base/validation_set.csv",
        images_dir=ws / "images", workspace_root=ws, out_dir=out))
    return res.best_val_ckpt


def test_preseeded_baseline_is_evaluated_not_trained(demo_ws: Path, fake: dict, tmp_path: Path) -> None:
    rd = new_run(demo_ws, max_iterations=1)
    src = _phase1_checkpoint(demo_ws, tmp_path / "phase1")
    dest = rd / "baseline" / "train" / "model_epoch_007_step_070.pth"
    dest.parent.mkdir(parents=True)
    shutil.copyfile(src, dest)
    with StateStore.open(rd) as store:
        store.commit("baseline", "train", artifacts={"best_ckpt_path": dest},
                     fields={"source": "automl_phase1", "train_metric": 0.25},
                     summary="baseline reuses Phase 1's winner", duration_sec=0, preseeded=True)
    fake_backend.CALLS.clear()
    run_loop(rd, until="rca")
    assert fake_backend.CALLS["train"] == 0
    assert files_under(rd / "baseline" / "train") == ["model_epoch_007_step_070.pth"]
    base = state(rd)["iterations"]["baseline"]
    assert base["best_ckpt_path"] == str(dest) and base["best_ckpt_kind"] == "best_val"
    assert base["source"] == "automl_phase1" and base["train_metric"] == 0.25
    assert files_under(rd / "baseline" / "inference") == ["best_val", "best_val/inference.csv",
                                                          "best_val/metric_result.json"]
    events = state(rd)["events"]
    assert events[0]["duration_sec"] == 0 and [e["stage"] for e in events] == ["train", "evaluate", "rca"]
    # iteration 1 starts from the pre-seeded checkpoint
    run_loop(rd)
    spec = (rd / "specs" / "iter1_train_spec.yaml").read_text()
    assert f"pretrained_model_path: {dest}" in spec


def test_baseline_meeting_the_kpi_stops_with_zero_iterations(demo_ws: Path, fake: dict) -> None:
    rd = new_run(demo_ws, max_iterations=3, kpi_target_pct=50.0)  # baseline FAR ≈ 21 % < 50 %
    outcome = run_loop(rd)
    assert (outcome.status, outcome.stop_reason, outcome.best_iteration) == ("complete", "metric_met", "baseline")
    assert committed(rd) == [("baseline", "train", "ok"), ("baseline", "evaluate", "ok"),
                             ("baseline", "loop_stop", "ok")]
    assert not (rd / "iter1").exists() and not list(rd.glob("iter*_summary.md"))
    assert json.loads((rd / "best_model.json").read_text())["iteration"] == "baseline"
    assert state(rd)["current_iteration"] == 0


# --- leakage ------------------------------------------------------------------------------------------------


def _plant_leaks(ws: Path) -> tuple[str, str]:
    """Put a KPI row into the pool verbatim, and a renamed byte-copy of another KPI pair.

    Returns both rows as '<input_path in workspace coordinates>/<object_name>' (object names repeat across boards).
    """
    kpi = read_rows(ws / "kpi/testing_set.csv")
    bridges = kpi[kpi["label"] == "bridge"].reset_index(drop=True)
    verbatim, renamed = bridges.iloc[0].copy(), bridges.iloc[1].copy()
    images = ws / "images"
    new_name = "ZZ9001@1"
    for folder, kind in (("pool/leak_board/test", "input_path"), ("pool/leak_board/golden", "golden_path")):
        (images / folder).mkdir(parents=True, exist_ok=True)
        for light in ("LightA", "LightB"):
            shutil.copyfile(images / renamed[kind] / f"{renamed['object_name']}_{light}.png",
                            images / folder / f"{new_name}_{light}.png")
    renamed["input_path"], renamed["golden_path"] = "pool/leak_board/test", "pool/leak_board/golden"
    renamed["object_name"], renamed["boardname"] = new_name, "leak_board"
    pool_csv = ws / "augmentation/mining_pool/mining_pool.csv"
    pool = read_rows(pool_csv)
    pd.concat([pool, pd.DataFrame([verbatim, renamed])], ignore_index=True).to_csv(pool_csv, index=False)
    return (f"images/{verbatim['input_path']}/{verbatim['object_name']}",
            f"images/{renamed['input_path']}/{new_name}")


def test_leaked_pool_rows_are_rejected_and_counted_by_mining(demo_ws: Path, fake: dict) -> None:
    verbatim, renamed = _plant_leaks(demo_ws)
    rd = new_run(demo_ws, max_iterations=1)
    run_loop(rd, until="data_merge")
    mf = rd / "iter1" / "mining_filter"
    rejections = pd.read_csv(mf / "rejections.csv")
    by_reason = dict(zip(rejections["reason"], rejections["count"]))
    assert by_reason.get("leak_kpi", 0) >= 1 and by_reason.get("leak_hash", 0) >= 1, by_reason
    summary = (mf / "mining_summary.txt").read_text()
    assert "leak_kpi" in summary and "leak_hash" in summary
    combined = read_rows(rd / "iter1/dataset/train_combined_iter1.csv")
    keys = set(combined["input_path"] + "/" + combined["object_name"])
    assert verbatim not in keys and renamed not in keys
    assert by_reason == {"leak_kpi": 1, "leak_hash": 1}  # nothing else was rejected
    assert json.loads((rd / "iter1/dataset/merge_validation.json").read_text())["status"] == "ok"


def test_leaked_rows_reaching_the_merge_are_a_hard_stop(demo_ws: Path, fake: dict,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    verbatim, renamed = _plant_leaks(demo_ws)
    rd = new_run(demo_ws, max_iterations=1)
    real = steps.STEPS["data_mining"]

    def mining_without_rejection(ctx: Any, store: Any, label: str, progress: Any) -> Any:
        result = real(ctx, store, label, progress)
        pool = read_rows(rd / label / "mining_filter" / "mining_pool.csv")
        raw = read_rows(demo_ws / "augmentation/mining_pool/mining_pool.csv")
        for col in ("input_path", "golden_path"):
            raw[col] = "images/" + raw[col]
        leaked = raw[(raw["input_path"] + "/" + raw["object_name"]).isin([verbatim, renamed])].copy()
        assert len(leaked) == 2
        leaked["origin"] = "mined"
        pd.concat([pool, leaked], ignore_index=True).fillna("").to_csv(
            rd / label / "mining_filter" / "mining_pool.csv", index=False)
        return result

    monkeypatch.setitem(steps.STEPS, "data_mining", mining_without_rejection)
    leak_msg = rf"data_merge: 2 training row\(s\) leak into the kpi set: {verbatim}; {renamed}"
    with pytest.raises(StageFailed, match=leak_msg) as info:
        run_loop(rd)
    assert info.value.exit_code == EXIT_HARD_STOP
    doc = state(rd)
    assert doc["status"] == "failed" and doc["iterations"]["iter1"]["status"] == "failed"
    assert committed(rd)[-1] == ("iter1", "data_merge", "error")
    assert doc["failure"]["stage"] == "data_merge" and verbatim in doc["failure"]["message"]
    report = json.loads((rd / "iter1/dataset/merge_validation.json").read_text())
    assert report["status"] == "error" and report["train_kpi_leakage_overlap_count"] == 2
    assert verbatim in " ".join(report["problems"]) and renamed in " ".join(report["problems"])
    assert not (rd / "iter1/dataset/train_combined_iter1.csv").exists()  # nothing to train on
    assert not (rd / "iter1" / "train").exists()
    assert run_loop(rd).status == "failed"  # a failed run is never resumed into training
    assert committed(rd)[-1] == ("iter1", "data_merge", "error")


# --- documented skips ----------------------------------------------------------------------------------------


def _relabel_pool(ws: Path, label: str) -> None:
    pool_csv = ws / "augmentation/mining_pool/mining_pool.csv"
    pool = read_rows(pool_csv)
    pool["label"] = label
    pool.to_csv(pool_csv, index=False)


def test_pool_without_gap_labels_skips_mining_with_an_ok_event(demo_ws: Path, fake: dict) -> None:
    _relabel_pool(demo_ws, "scratch")  # a training-only label: no RCA gap has it
    rd = new_run(demo_ws, max_iterations=1)
    outcome = run_loop(rd)
    assert outcome.status == "complete"
    events = {(e["iter"], e["stage"]): e for e in state(rd)["events"]}
    mining = events[("iter1", "data_mining")]
    assert mining["status"] == "ok" and mining["summary"].startswith("skipped:")
    rec = state(rd)["iterations"]["iter1"]
    assert rec["data_mining_skipped"] is True and rec["mining_mined_count"] == 0
    assert set(read_rows(rec["mining_pool_csv"])["origin"]) == {"sdg"}
    assert "mining: skipped" in (rd / "iter1_summary.md").read_text()


def test_zero_sdg_budget_skips_sdg_with_an_ok_event(demo_ws: Path, fake: dict) -> None:
    rd = new_run(demo_ws, max_iterations=1, num_sdg=0)
    assert run_loop(rd).status == "complete"
    events = {(e["iter"], e["stage"]): e for e in state(rd)["events"]}
    assert events[("iter1", "sdg")]["status"] == "ok" and events[("iter1", "sdg")]["summary"].startswith("skipped:")
    rec = state(rd)["iterations"]["iter1"]
    assert rec["sdg_skipped"] is True and "sdg_result_csv" not in rec
    assert set(read_rows(rec["mining_pool_csv"])["origin"]) == {"mined"}
    assert "synthetic defects: skipped" in (rd / "iter1_summary.md").read_text()


def test_no_new_rows_at_all_is_a_hard_stop_before_training(demo_ws: Path, fake: dict) -> None:
    _relabel_pool(demo_ws, "scratch")
    rd = new_run(demo_ws, max_iterations=1, num_sdg=0)
    with pytest.raises(StageFailed, match=r"data_mining: .*(top-k|pool)") as info:
        run_loop(rd)
    assert info.value.exit_code == EXIT_HARD_STOP
    assert committed(rd)[-1] == ("iter1", "data_mining", "error")
    assert state(rd)["status"] == "failed" and not (rd / "iter1" / "train").exists()


# --- unreachable KPI -----------------------------------------------------------------------------------------


def test_unreachable_kpi_fails_the_run_at_rca(demo_ws: Path, fake: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(fake_backend.KNOBS, "mode", "invert")  # every defect scores below every PASS row
    rd = new_run(demo_ws, max_iterations=1)
    with pytest.raises(StageFailed, match=r"rca: KPI unreachable: only FAR = 100% .*unreachable_kpi\.txt") as info:
        run_loop(rd)
    assert info.value.exit_code == EXIT_HARD_STOP
    assert committed(rd) == [("baseline", "train", "ok"), ("baseline", "evaluate", "ok"), ("baseline", "rca", "error")]
    doc = state(rd)
    assert doc["status"] == "failed" and doc["iterations"]["baseline"]["status"] == "failed"
    rca_dir = next((rd / "baseline" / "rca_results").iterdir())
    assert (rca_dir / "unreachable_kpi.txt").read_text().startswith("KPI unreachable:")
    assert not (rca_dir / "kpi_gaps.parquet").exists()
    assert "rca_gaps_parquet" not in doc["iterations"]["baseline"]
    assert not (rd / "iter1").exists()


def test_non_finite_scores_are_an_unreachable_kpi_hard_stop(demo_ws: Path, fake: dict,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """NaN scores cannot even be evaluated: the run fails at evaluate (exit 4) instead of staying resumable."""
    monkeypatch.setitem(fake_backend.KNOBS, "mode", "nan")
    rd = new_run(demo_ws, max_iterations=1)
    with pytest.raises(StageFailed, match=r"evaluate: KPI unreachable: candidate best_val gave 60 of 60 KPI row\(s\) "
                                          r"a missing or non-finite siamese_score") as info:
        run_loop(rd)
    assert info.value.exit_code == EXIT_HARD_STOP
    assert committed(rd)[-1] == ("baseline", "evaluate", "error") and state(rd)["status"] == "failed"
    assert (rd / "baseline" / "inference" / "unreachable_kpi.txt").is_file()


# --- regression gate -----------------------------------------------------------------------------------------


def test_regression_gate_halts_and_accept_regression_continues(demo_ws: Path, fake: dict,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(fake_backend.KNOBS, "regress_from_iter", 1)  # iter1's model forgets: FAR ≈ 89 %
    rd = new_run(demo_ws, max_iterations=2, kpi_target_pct=0.0)
    with pytest.raises(RegressionHalt, match=r"regression gate: iter1 scored 88\.\d+%.*baseline: 20\.75%") as info:
        run_loop(rd)
    assert info.value.exit_code == EXIT_REGRESSION and "--accept-regression" in (info.value.hint or "")
    doc = state(rd)
    assert doc["status"] == "in_progress"
    halt = doc["halt"]
    assert halt["iter"] == "iter1" and halt["value"] == pytest.approx(88.679245283)  # 47/53 PASS rows above
    assert halt["best"] == pytest.approx(20.754716981)  # baseline: 11/53
    assert halt["resume_command"] == f"deftpipe deft --resume {rd} --accept-regression"
    assert committed(rd)[-1] == ("iter1", "evaluate", "ok")
    assert all(stage != "loop_stop" for _, stage, _ in committed(rd))
    n = len(committed(rd))
    with pytest.raises(RegressionHalt, match=r"halted by the regression gate at iter1"):
        run_loop(rd)  # a plain resume does not clear it
    assert len(committed(rd)) == n

    monkeypatch.setitem(fake_backend.KNOBS, "regress_from_iter", None)
    outcome = run_loop(rd, accept_regression=True)
    assert outcome.status == "complete" and not state(rd).get("halt")
    assert [h["iter"] for h in state(rd)["halt_history"]] == ["iter1"]
    its = state(rd)["iterations"]
    spec = (rd / "specs" / "iter2_train_spec.yaml").read_text()
    assert f"pretrained_model_path: {its['baseline']['best_ckpt_path']}" in spec  # best so far, not iter1
    assert outcome.best_iteration != "iter1"


# --- one process per run -------------------------------------------------------------------------------------


def test_second_process_on_the_same_run_is_refused(demo_ws: Path, fake: dict) -> None:
    rd = new_run(demo_ws, max_iterations=1)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            sys.path.insert(0, {str(REPO / 'src')!r})
            from deftpipe.workspace.io import RunLock
            lock = RunLock({str(rd / '.lock')!r}).acquire()
            print("locked", flush=True)
            sys.stdin.readline()
            lock.release()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        before = (rd / "deft_state.json").read_bytes()
        with pytest.raises(StateConflict, match=rf"another deftpipe process \(PID {holder.pid}\) is running"):
            run_loop(rd)
        assert (rd / "deft_state.json").read_bytes() == before
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=30)
    assert run_loop(rd, until="train").status == "in_progress"  # released: the run goes on
