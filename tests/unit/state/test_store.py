from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from deftpipe.errors import ConfigError, ContractError, StageFailed, StateConflict
from deftpipe.state.records import JOURNAL_FILE, STATE_FILE
from deftpipe.state.store import StateStore, digest_files, duration_to_int, read_state
from deftpipe.workspace.io import read_jsonl

from tests.conftest import SHARED

from .conftest import FAR_CONTRACT, new_store, run_next, stage_artifacts, write_file


def _bytes(rd: Path) -> tuple[bytes, bytes]:
    journal = rd / JOURNAL_FILE
    return (rd / STATE_FILE).read_bytes(), journal.read_bytes() if journal.exists() else b""


def test_create_load_round_trip(store: StateStore, rd: Path) -> None:
    loaded = StateStore.load(rd)
    assert loaded.state == store.state
    s = loaded.state
    assert (s.version, s.format, s.status, s.current_iteration) == (4, "deftpipe/1", "in_progress", 0)
    assert s.results_dir == str(rd)
    assert s.metric_contract.name == "far_pct"
    assert s.config.sdg.num_sdg == 20 and s.config.mining_filter.min_similarity == 0.9
    assert datetime.fromisoformat(s.started_at).utcoffset() is not None
    assert loaded.next_stage() == ("baseline", "train")


def test_create_refuses_existing_state(store: StateStore, rd: Path) -> None:
    with pytest.raises(StateConflict, match="already exists.*refusing to overwrite"):
        new_store(rd)


def test_state_view_is_read_only(store: StateStore) -> None:
    with pytest.raises(Exception, match="frozen"):
        store.state.status = "complete"  # type: ignore[misc]
    doc = store.document
    doc["status"] = "failed"
    assert store.state.status == "in_progress"


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda rd: rd / "train" / "missing.pth", "best_ckpt_path.*does not exist"),
        (lambda rd: write_file(rd / "train" / "empty.pth", b""), "best_ckpt_path.*empty file"),
        (lambda rd: (rd / "train" / "emptydir").mkdir(parents=True) or rd / "train" / "emptydir",
         "best_ckpt_path.*empty folder"),
        (lambda rd: write_file(rd.parent / "outside.pth"), "best_ckpt_path.*outside RESULTS_DIR"),
    ],
)
def test_commit_rejects_bad_artifacts_and_changes_nothing(store: StateStore, rd: Path, make, match: str) -> None:
    run_next(store)  # seq 1 on disk, journal non-empty
    before = _bytes(rd)
    bad = make(rd)
    with pytest.raises(ContractError, match=match):
        store.commit("baseline", "evaluate", artifacts={"inference_csv": write_file(rd / "ok.csv"),
                                                        "best_ckpt_path": bad},
                     summary="evaluate", duration_sec=3)
    assert _bytes(rd) == before


def test_commit_rejects_symlink_escaping_results_dir(store: StateStore, rd: Path) -> None:
    target = write_file(rd.parent / "elsewhere.pth")
    link = rd / "train" / "link.pth"
    link.parent.mkdir(parents=True)
    link.symlink_to(target)
    before = _bytes(rd)
    with pytest.raises(ContractError, match="outside RESULTS_DIR"):
        store.commit("baseline", "train", artifacts={"best_ckpt_path": link}, summary="t", duration_sec=1)
    assert _bytes(rd) == before


def test_artifacts_stored_absolute_and_event_shape(store: StateStore, rd: Path) -> None:
    write_file(rd / "baseline/train/m.pth")
    ended = datetime(2026, 5, 4, 6, 55, tzinfo=timezone.utc)
    ev = store.commit("baseline", "train", artifacts={"best_ckpt_path": "baseline/train/m.pth"},
                      fields={"best_ckpt_kind": "best_val"}, summary="trained\n2 epochs",
                      duration_sec=0.2, ended_at=ended)
    assert (ev.seq, ev.ts, ev.duration_sec, ev.summary) == (1, "2026-05-04T06:55:00+00:00", 1, "trained 2 epochs")
    rec = store.state.iterations["baseline"]
    assert rec.best_ckpt_path == str(rd / "baseline/train/m.pth")
    assert (rec.stage_completed, rec.status, rec.best_ckpt_kind) == ("train", "in_progress", "best_val")
    journal = read_jsonl(rd / JOURNAL_FILE)
    assert journal == [json.loads(json.dumps(store.document["events"][0]))]
    assert set(journal[0]) == {"seq", "ts", "iter", "stage", "status", "summary", "duration_sec"}


def test_unknown_field_and_path_in_fields_rejected(store: StateStore, rd: Path) -> None:
    with pytest.raises(ContractError, match="Did you mean 'threshold'"):
        store.commit("baseline", "train", fields={"treshold": 0.5}, summary="t", duration_sec=1)
    with pytest.raises(ContractError, match="pass it in artifacts="):
        store.commit("baseline", "train", fields={"best_ckpt_path": "/x"}, summary="t", duration_sec=1)


def test_seq_from_disk_two_stores(rd: Path, store: StateStore) -> None:
    other = StateStore.load(rd)
    run_next(store)
    run_next(other)  # other's memory says 0 events; disk says 1
    run_next(store)
    assert [e.seq for e in StateStore.load(rd).state.events] == [1, 2, 3]
    assert [e["seq"] for e in read_jsonl(rd / JOURNAL_FILE)] == [1, 2, 3]


def test_committed_stage_is_never_redone_and_order_enforced(store: StateStore, rd: Path) -> None:
    run_next(store)
    with pytest.raises(StateConflict, match="already committed"):
        store.commit("baseline", "train", artifacts=stage_artifacts(rd, "baseline", "train"),
                     summary="again", duration_sec=1)
    with pytest.raises(StateConflict, match="out of order; the next stage of this run is baseline/evaluate"):
        store.commit("baseline", "rca", artifacts=stage_artifacts(rd, "baseline", "rca"), summary="r",
                     duration_sec=1)


@pytest.mark.parametrize(("seconds", "expected"), [(0.0, 1), (0.01, 1), (1.0, 1), (1.2, 2), (59.999, 60)])
def test_durations_are_int_at_least_one(seconds: float, expected: int) -> None:
    assert duration_to_int(seconds) == expected


def test_duration_zero_only_for_preseeded_baseline_train(store: StateStore, rd: Path) -> None:
    with pytest.raises(ContractError, match="only the baseline train event can be pre-seeded"):
        store.commit("iter1", "routing", summary="x", duration_sec=0, preseeded=True)
    with pytest.raises(ContractError, match="duration_sec must be >= 0"):
        duration_to_int(-1)
    ev = store.commit("baseline", "train", artifacts=stage_artifacts(rd, "baseline", "train"),
                      fields={"source": "automl_phase1", "train_metric": 3.1},
                      summary="baseline reuses Phase 1's winner", duration_sec=0, preseeded=True)
    assert ev.duration_sec == 0
    rec = store.state.iterations["baseline"]
    assert (rec.source, rec.train_metric, rec.stage_completed) == ("automl_phase1", 3.1, "train")
    assert store.next_stage() == ("baseline", "evaluate")


def test_error_commit_fails_the_run(store: StateStore, rd: Path) -> None:
    run_next(store)
    run_next(store)
    why = write_file(rd / "baseline/rca_results/T/unreachable_kpi.txt", b"no defect rows")
    store.commit("baseline", "rca", status="error", artifacts={}, summary="KPI unreachable: no defect rows",
                 duration_sec=1)
    assert why.exists()
    s = store.state
    assert (s.status, s.iterations["baseline"].status, s.events[-1].status) == ("failed", "failed", "error")
    assert store.next_stage() is None
    with pytest.raises(StateConflict, match="failed runs are never resumed"):
        run_next_stage_anyway(store, rd)
    with pytest.raises(StateConflict, match="never changed to 'in_progress'"):
        store.set_status("in_progress")


def run_next_stage_anyway(store: StateStore, rd: Path) -> None:
    store.commit("iter1", "routing", artifacts=stage_artifacts(rd, "iter1", "routing"), summary="r", duration_sec=1)


def test_mark_failed(store: StateStore) -> None:
    run_next(store)
    ev = store.mark_failed("evaluate", "inference crashed: CUDA OOM")
    assert (ev.iter, ev.stage, ev.status, ev.seq) == ("baseline", "evaluate", "error", 2)
    assert store.state.status == "failed"
    assert store.document["failure"]["message"] == "inference crashed: CUDA OOM"
    with pytest.raises(StateConflict, match="already 'failed'"):
        store.mark_failed("evaluate", "again")


def test_halt_and_clear_halt(store: StateStore, rd: Path) -> None:
    for _ in range(3):
        run_next(store)
    store.set_halt(reason="regression", iter_label="iter1", value=30.0, best=10.0, margin=10.0)
    s = store.state
    assert s.status == "in_progress" and s.halt is not None
    assert s.halt.resume_command == f"deftpipe deft --resume {rd} --accept-regression"
    assert store.next_stage() is None
    with pytest.raises(StateConflict, match="halted by the regression gate"):
        run_next_stage_anyway(store, rd)
    assert store.clear_halt() is True
    assert store.state.halt is None
    assert store.document["halt_history"][0]["value"] == 30.0
    assert store.next_stage() == ("iter1", "routing")
    assert store.clear_halt() is False


def test_complete_commits_loop_stop_and_final_artifacts(tmp_path: Path) -> None:
    rd = tmp_path / "run"
    s = new_store(rd, max_iterations=0)
    run_next(s)
    with pytest.raises(StateConflict, match="has not reached loop_stop"):
        s.complete({})
    run_next(s)
    best = write_file(rd / "best_model.json", b"{}")
    s.complete({"best_model": best}, summary="metric not met after 0 iterations")
    st = s.state
    assert st.status == "complete" and st.completed_at is not None
    assert st.events[-1].stage == "loop_stop" and st.iterations["baseline"].stage_completed == "loop_stop"
    assert st.final_artifacts == {"best_model": str(best.resolve())}
    with pytest.raises(StateConflict, match="already complete"):
        s.complete({})
    # Phase 3 registers final_automl after the loop completed
    ckpt = write_file(rd / "final_automl/trial_0001/m.pth")
    s.commit("final_automl", "evaluate", artifacts={"best_ckpt_path": ckpt},
             fields={"threshold": 0.1}, summary="phase 3 winner registered", duration_sec=5)
    assert s.state.iterations["final_automl"].status == "complete"


def test_update_config_records_changes(store: StateStore) -> None:
    run_next(store)
    changes = store.update_config(num_epochs=5, mining_filter={"top_k_per_target": 10})
    assert [(c["key"], c["old"], c["new"]) for c in changes] == [
        ("num_epochs", 2, 5), ("mining_filter.top_k_per_target", 5, 10)]
    assert all(c["applies_from"] == "baseline/evaluate" for c in changes)
    s = store.state
    assert s.config.num_epochs == 5 and s.config.mining_filter.top_k_per_target == 10
    assert len(store.document["config_changes"]) == 2
    assert store.update_config(num_epochs=5) == []
    with pytest.raises(ConfigError, match="Did you mean 'num_epochs'"):
        store.update_config(num_epoch=3)
    with pytest.raises(ConfigError, match="num_sdg"):
        store.update_config(sdg={"num_sdg": -1})


def test_input_digest_change_is_a_hard_stop(store: StateStore, rd: Path) -> None:
    csv = write_file(rd.parent.parent / "train/base/training_set.csv", b"input_path,golden_path,label,object_name\n")
    store.record_input_digests(digest_files([csv]))
    store.check_input_digests()
    csv.write_bytes(b"input_path,golden_path,label,object_name\na,b,PASS,C1@1\n")
    with pytest.raises(StageFailed, match=r"training_set\.csv changed since approval") as info:
        store.check_input_digests()
    assert info.value.exit_code == 4
    csv.unlink()
    with pytest.raises(StageFailed, match="file missing"):
        store.check_input_digests()


def test_last_events_and_is_committed(store: StateStore) -> None:
    for _ in range(3):
        run_next(store)
    assert [e.stage for e in store.last_events(2)] == ["evaluate", "rca"]
    assert store.is_committed("baseline", "evaluate")
    assert not store.is_committed("iter1", "routing")


def test_malformed_state_names_the_field(store: StateStore, rd: Path) -> None:
    doc = json.loads((rd / STATE_FILE).read_text())
    doc["iterations"] = {"baseline": {"status": "done"}}
    doc["unknown_extra"] = {"kept": True}
    (rd / STATE_FILE).write_text(json.dumps(doc))
    with pytest.raises(ContractError, match=r"field 'iterations\.baseline\.status'"):
        read_state(rd)
    doc["iterations"] = {}
    (rd / STATE_FILE).write_text(json.dumps(doc))
    assert read_state(rd).model_extra == {"unknown_extra": {"kept": True}}
    run_next(store)
    assert store.document["unknown_extra"] == {"kept": True}  # extra keys survive a commit
    (rd / STATE_FILE).write_text("{not json")
    with pytest.raises(ContractError, match="not valid JSON"):
        read_state(rd)


def test_newer_version_refused_and_migration_hook(store: StateStore, rd: Path, monkeypatch) -> None:
    from deftpipe.state import records

    doc = json.loads((rd / STATE_FILE).read_text())
    (rd / STATE_FILE).write_text(json.dumps({**doc, "version": 5}))
    with pytest.raises(ContractError, match="schema version 5 is newer.*upgrade deftpipe"):
        read_state(rd)
    old = {**doc, "version": 3}
    old["config"] = {**doc["config"], "epochs": 7}
    del old["config"]["num_epochs"]
    (rd / STATE_FILE).write_text(json.dumps(old))
    with pytest.raises(ContractError, match="version 3 has no migration"):
        read_state(rd)

    def v3_to_v4(d: dict) -> dict:
        d["config"]["num_epochs"] = d["config"].pop("epochs")
        return {**d, "version": 4}

    monkeypatch.setitem(records.MIGRATIONS, 3, v3_to_v4)
    assert read_state(rd).config.num_epochs == 7


def test_tao_state_with_anomalygen_is_read_and_written_as_sdg(rd: Path) -> None:
    example = SHARED / "reference/tao/deft_state.example.json"
    if not example.exists():
        pytest.skip(f"TAO reference example not present at {example}")
    tao = json.loads(example.read_text())
    tao["results_dir"] = str(rd)
    tao["events"].append({"seq": 2, "ts": "2026-05-04T07:00:00+00:00", "iter": "baseline", "stage": "evaluate",
                          "status": "ok", "summary": "e", "duration_sec": 3})
    tao["events"].append({"seq": 3, "ts": "2026-05-04T07:01:00+00:00", "iter": "baseline", "stage": "rca",
                          "status": "ok", "summary": "r", "duration_sec": 3})
    tao["events"].append({"seq": 4, "ts": "2026-05-04T07:02:00+00:00", "iter": "iter1", "stage": "anomalygen",
                          "status": "ok", "summary": "a", "duration_sec": 3})
    tao["iterations"] = {"baseline": {"status": "complete", "stage_completed": "rca"},
                         "iter1": {"status": "in_progress", "stage_completed": "anomalygen"}}
    (rd / STATE_FILE).write_text(json.dumps(tao))
    store = StateStore.load(rd)
    assert store.state.events[-1].stage == "sdg"
    assert store.state.config.sdg.num_sdg == 20
    assert store.next_stage() == ("iter1", "data_mining")
    run_next(store)
    on_disk = json.loads((rd / STATE_FILE).read_text())
    assert on_disk["format"] == "deftpipe/1"
    assert on_disk["iterations"]["iter1"]["stage_completed"] == "data_mining"
    assert [e["stage"] for e in on_disk["events"]][3] == "sdg"
    assert "anomalygen" not in (rd / JOURNAL_FILE).read_text()


def test_moved_run_dir_is_refused(store: StateStore, rd: Path) -> None:
    moved = rd.parent / "run_moved"
    rd.rename(moved)
    with pytest.raises(ContractError, match="the run was\\s+moved|was moved"):
        read_state(moved)


def test_contract_in_state(store: StateStore) -> None:
    assert store.state.metric_contract.model_dump()["constraints"][0]["name"] == FAR_CONTRACT["constraints"][0]["name"]


def test_non_finite_value_rejected_naming_the_field(store: StateStore, rd: Path) -> None:
    before = _bytes(rd)
    with pytest.raises(ContractError, match=r"field 'iterations\.baseline\.val_loss' is NaN"):
        store.commit("baseline", "train", artifacts=stage_artifacts(rd, "baseline", "train"),
                     fields={"val_loss": float("nan")}, summary="t", duration_sec=1)
    assert _bytes(rd) == before


def test_create_rejects_relative_config_path(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match=r"config: field 'training_csv'.*absolute path"):
        StateStore.create(tmp_path / "run", kpi_target="k", metric_contract=FAR_CONTRACT, max_iterations=1,
                          config={"training_csv": "train/base/training_set.csv"})
    assert not (tmp_path / "run" / STATE_FILE).exists()
