"""The chaos comparison: normalizes what may differ (paths, run names, `<TS>` folders, trial numbers) and
flags what may not (stages, CSV bytes, metrics, orphan temp files, a journal out of step, missing deliverable)."""
from __future__ import annotations

import json
from pathlib import Path

from deftpipe.chaos import compare_digests, digest_run

EVENTS = [{"seq": 1, "iter": "baseline", "stage": "train", "status": "ok", "ts": "2026-01-01T00:00:00+00:00"},
          {"seq": 2, "iter": "baseline", "stage": "evaluate", "status": "ok", "ts": "2026-01-01T00:01:00+00:00"}]


def _run(ws: Path, name: str, *, far: float = 12.5, csv_rows: str = "a,1\n", events: list | None = None) -> Path:
    rd = ws / "results" / name
    (rd / "iter1" / "dataset").mkdir(parents=True)
    (rd / "baseline" / "rca_results" / name[4:19]).mkdir(parents=True)
    ckpt = rd / "final_automl" / "trial_0003" / "model.pth"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"w")
    events = EVENTS if events is None else events
    gaps = str(rd / "baseline/rca_results" / name[4:19])
    doc = {"status": "complete", "current_iteration": 1, "events": events,
           "iterations": {"baseline": {"far_pct": far, "rca_gaps_parquet": gaps}}}
    (rd / "deft_state.json").write_text(json.dumps(doc))
    (rd / "loop_log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    (rd / "best_model.json").write_text(json.dumps({"checkpoint": str(ckpt), "far_pct": far}))
    (rd / "iter1" / "dataset" / "train_combined_iter1.csv").write_text(
        f"input_path,n\nresults/{name}/iter1/x,0\n{csv_rows}")
    return rd


def test_same_content_in_other_folders_and_run_names_is_equal(tmp_path: Path) -> None:
    a = _run(tmp_path / "ws_a", "run_20260101_000000")
    b = _run(tmp_path / "ws_b", "run_20260202_111111_1")
    assert compare_digests(digest_run(a), digest_run(b)) == []


def test_metric_and_csv_changes_are_named(tmp_path: Path) -> None:
    a = _run(tmp_path / "ws_a", "run_20260101_000000")
    b = _run(tmp_path / "ws_b", "run_20260101_000000", far=25.0, csv_rows="a,2\n")
    diffs = compare_digests(digest_run(a), digest_run(b))
    assert any(d.startswith("iter1/dataset/train_combined_iter1.csv: contents differ from line 3") for d in diffs)
    assert "metrics.iterations.baseline.far_pct: reference 12.5 vs interrupted 25.0" in diffs


def test_integrity_problems_of_the_interrupted_run(tmp_path: Path) -> None:
    a = _run(tmp_path / "ws_a", "run_20260101_000000")
    b = _run(tmp_path / "ws_b", "run_20260101_000000", events=[EVENTS[0], {**EVENTS[1], "seq": 3}, EVENTS[0]])
    (b / ".deft_state.json.123.deftpipe-tmp").write_text("{")
    (b / "loop_log.jsonl").write_text(json.dumps(EVENTS[0]) + "\n")
    (b / "broken.json").write_text("{")
    (b / ".lock").write_text("{}")
    diffs = "\n".join(compare_digests(digest_run(a), digest_run(b)))
    for expected in ("orphan temp file", "broken.json: not valid JSON", "lock file left behind",
                     "event seq is [1, 3, 1]", "baseline/train committed twice", "loop_log.jsonl: 1 line(s) disagree",
                     "committed stages differ"):
        assert expected in diffs
