"""Report test fixtures: run directories in each state, and charts stubbed out (matplotlib is slow to draw)."""
from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit.report.builders import build_run

# A valid 1x1 PNG: fast tests check structure, not pixels (tests marked slow draw real charts).
TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


@pytest.fixture
def chart_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    from deftpipe.report import _charts

    calls: list[str] = []
    for name in ("draw_trajectory", "draw_loss", "draw_scores", "draw_similarity", "draw_automl"):
        def fake(data: object, _name: str = name) -> bytes:
            calls.append(_name)
            return TINY_PNG
        monkeypatch.setattr(_charts, name, fake)
    return calls


@pytest.fixture
def make_run(tmp_path: Path, chart_calls: list[str]) -> Callable[[str], Path]:
    def make(kind: str) -> Path:
        return build_run(tmp_path / f"run_{kind}", kind)
    return make
