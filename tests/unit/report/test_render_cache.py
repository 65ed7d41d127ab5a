"""A render in a fresh process reuses what earlier renders cached on disk: state, figures, page (no redraw)."""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from deftpipe.report import render as render_mod
from deftpipe.report import render_report

MakeRun = Callable[[str], Path]


def _forbid(what: str) -> Callable[..., object]:
    def fail(*args: object, **kwargs: object) -> object:
        raise AssertionError(f"{what} was called although its result is cached")
    return fail


def test_second_render_draws_nothing_and_skips_validation_and_jinja(make_run: MakeRun, chart_calls: list[str],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    rd = make_run("complete")
    first = render_report(rd).read_text(encoding="utf-8")
    n_drawn = len(chart_calls)
    assert n_drawn >= 5
    render_mod._template.cache_clear()  # as in a fresh process
    monkeypatch.setattr(render_mod, "load_doc", _forbid("load_doc (pydantic validation)"))
    monkeypatch.setattr(render_mod, "_render_page", _forbid("the Jinja render"))
    second = render_report(rd).read_text(encoding="utf-8")
    assert len(chart_calls) == n_drawn  # counted: not one figure redrawn
    strip = render_mod._NOW_TOKEN
    assert strip not in second and "generated " in second
    cut = second.index(" · generated ")
    assert second[:cut] == first[:cut]


def test_a_commit_invalidates_the_cached_state_and_page(make_run: MakeRun) -> None:
    from deftpipe.state import StateStore

    rd = make_run("in_progress")
    assert "iter1 · train" in render_report(rd).read_text(encoding="utf-8")
    with StateStore.open(rd) as store:
        ckpt = rd / "iter1" / "train" / "model_epoch_001_step_001.pth"
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        ckpt.write_bytes(b"w")
        store.commit("iter1", "train", artifacts={"best_ckpt_path": ckpt}, summary="trained", duration_sec=1)
    assert "iter1 · evaluate" in render_report(rd).read_text(encoding="utf-8")
    pages = list((rd / "cache" / "report").glob("page_*.html"))
    assert len(pages) == 1  # the stale page was dropped


def test_cached_render_in_a_fresh_process_imports_no_heavy_library(make_run: MakeRun) -> None:
    rd = make_run("complete")
    render_report(rd)
    code = ("import sys, json; from deftpipe.report import render_report; render_report(sys.argv[1]); "
            "print(json.dumps([m for m in ('matplotlib', 'pydantic', 'jinja2', 'pandas', 'cv2') if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code, str(rd)], check=True, capture_output=True, text=True).stdout
    assert json.loads(out.strip().splitlines()[-1]) == []
