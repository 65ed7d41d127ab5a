"""render_report: every run state renders, the reason is prominent, and the file is self-contained and small."""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from deftpipe.errors import ContractError
from deftpipe.report import REPORT_FILE, render_report
from deftpipe.report import render as render_mod
from tests.unit.report.builders import FAIL_MESSAGE

MakeRun = Callable[[str], Path]


def _headline(html: str) -> str:
    """The headline banner only: what a reader sees first."""
    start = html.index('id="headline"')
    return html[start:html.index('id="trajectory"')]


def test_complete_run_has_every_section(make_run: MakeRun) -> None:
    rd = make_run("complete")
    out = render_report(rd)
    assert out == rd / REPORT_FILE
    html = out.read_text(encoding="utf-8")
    for anchor in ('id="headline"', 'id="trajectory"', 'id="iter1-routing"', 'id="iter1-sdg"',
                   'id="iter1-data_mining"', 'id="iter1-data_merge"', 'id="iter1-train"', 'id="iter1-evaluate"',
                   'id="baseline-rca"', 'id="automl"', 'id="timeline"', 'id="preflight"', 'id="provenance"'):
        assert anchor in html, anchor
    head = _headline(html)
    assert "Complete" in head and "metric_met" in head and "iter1" in head and "PASS" in head
    assert html.count('alt="NG ') == 3  # the SDG gallery: one pair per synthetic object
    assert "holdout (deliverable)" in html
    for mark in ("disqualified", "pruned", "noise re-run", "winner"):
        assert mark in html, mark
    assert "TP 4" in html  # confusion at the threshold: every defect above it
    assert "max_iterations</td>" in html  # pre-flight table rendered as HTML


def test_in_progress_names_next_stage(make_run: MakeRun) -> None:
    html = render_report(make_run("in_progress")).read_text(encoding="utf-8")
    head = _headline(html)
    assert "In progress" in head
    assert "iter1 · train" in head
    assert "not written yet" in head


def test_halted_run_shows_reason_and_resume_command(make_run: MakeRun) -> None:
    rd = make_run("halted")
    head = _headline(render_report(rd).read_text(encoding="utf-8"))
    assert "Halted by the regression gate" in head
    assert "FAR rose from 40% to 95%" in head
    assert f"deftpipe deft --resume {rd} --accept-regression" in head


def test_failed_run_shows_stage_and_error(make_run: MakeRun) -> None:
    head = _headline(render_report(make_run("failed")).read_text(encoding="utf-8"))
    assert "Failed" in head
    assert "Hard stop at iter1 · data_merge" in head
    assert FAIL_MESSAGE in head


@pytest.mark.parametrize("kind", ["complete", "in_progress", "halted", "failed"])
def test_report_is_self_contained(make_run: MakeRun, kind: str) -> None:
    html = render_report(make_run(kind)).read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"<script|<link|<iframe|@import|url\(", html, re.I)
    srcs = re.findall(r'src="([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/") for s in srcs)
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert all(h.startswith("#") for h in hrefs)


def test_large_thumbnails_are_downscaled(make_run: MakeRun) -> None:
    rd = make_run("complete")
    thumbs = next((rd / "baseline" / "rca_results").glob("*/thumbnails"))
    rng = np.random.default_rng(0)
    for i in range(10):  # ten 1500 px noise images: ~23 MB raw, far over the size limit if embedded
        cv2.imwrite(str(thumbs / f"{i + 2:02d}_PASS_big{i}.png"), rng.integers(0, 255, (1500, 1500), np.uint8))
    out = render_report(rd)
    assert out.stat().st_size < 10 * 1024 * 1024
    assert out.stat().st_size < 3 * 1024 * 1024


def test_missing_optional_artifacts_still_render(make_run: MakeRun) -> None:
    rd = make_run("complete")
    for name in ("preflight.md", "provenance.json", "best_model.json", "iter1/mining_filter/knn_summary.csv",
                 "iter1/train/train_log.jsonl", "automl_phase1/trials.csv"):
        (rd / name).unlink()
    for folder in (rd / "iter1" / "dataset" / "images", rd / "holdout"):
        for p in sorted(folder.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
    (rd / "iter1" / "mining_filter" / "mining_pool.csv").unlink()  # in state, gone from disk
    html = render_report(rd).read_text(encoding="utf-8")
    assert "preflight.md not found" in html and "provenance.json not found" in html
    assert "KPI set was used for model selection" in html
    assert 'id="automl"' not in html


def test_unreadable_artifact_is_noted_not_fatal(make_run: MakeRun) -> None:
    rd = make_run("complete")
    (rd / "holdout" / "holdout_result.json").write_text("{not json")
    html = render_report(rd).read_text(encoding="utf-8")
    assert "holdout/holdout_result.json: could not be read" in html


def test_no_state_raises(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="deft_state.json does not exist"):
        render_report(tmp_path)


def test_write_is_atomic(make_run: MakeRun, monkeypatch: pytest.MonkeyPatch) -> None:
    rd = make_run("complete")
    (rd / REPORT_FILE).write_text("previous report")

    def crash(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("deftpipe.workspace.io.os.replace", crash)
    with pytest.raises(OSError, match="disk full"):
        render_report(rd)
    assert (rd / REPORT_FILE).read_text() == "previous report"
    assert not [p for p in rd.iterdir() if p.name.endswith(".tmp")]


def test_out_argument_writes_elsewhere(make_run: MakeRun, tmp_path: Path) -> None:
    rd = make_run("in_progress")
    out = render_report(rd, out=tmp_path / "elsewhere" / "r.html")
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert not (rd / REPORT_FILE).exists()


def test_figures_are_cached_by_data(make_run: MakeRun, chart_calls: list[str]) -> None:
    rd = make_run("complete")
    render_report(rd)
    first = len(chart_calls)
    assert first >= 5
    render_report(rd)
    assert len(chart_calls) == first  # nothing redrawn
    data = json.loads((rd / "iter1" / "train" / "train_log.jsonl").read_text().splitlines()[0])
    (rd / "iter1" / "train" / "train_log.jsonl").write_text(json.dumps({**data, "train_loss": 0.01}) + "\n")
    render_report(rd)
    assert chart_calls[first:] == ["draw_loss"]


def test_render_reads_disk_not_memory(make_run: MakeRun) -> None:
    """A second render after another commit shows it: nothing is kept between calls but the cache."""
    from deftpipe.state import StateStore

    rd = make_run("in_progress")
    assert "iter1 · train" in _headline(render_report(rd).read_text(encoding="utf-8"))
    with StateStore.open(rd) as store:
        ckpt = rd / "iter1" / "train" / "model_epoch_001_step_001.pth"
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        ckpt.write_bytes(b"w")
        store.commit("iter1", "train", artifacts={"best_ckpt_path": ckpt}, summary="trained", duration_sec=1)
    assert "iter1 · evaluate" in _headline(render_report(rd).read_text(encoding="utf-8"))


def test_template_has_no_logic_beyond_presentation() -> None:
    text = (Path(render_mod.__file__).parent / "templates" / "report.html.j2").read_text()
    assert "{% set" not in text and "{% macro" not in text and "{% import" not in text
