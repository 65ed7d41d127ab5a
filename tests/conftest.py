"""Shared fixtures. Torch uses one thread in tests so parallel helpers and CI stay predictable."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
# pytest-xdist workers inherit COLUMNS=80; a Rich console created at import would then keep 80 columns for
# the whole session, ignoring the width a test passes to CliRunner. Tests choose their width themselves.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)
REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DEEPPCB = SHARED / "data" / "deeppcb"


def require_all() -> bool:
    return os.environ.get("DEFTPIPE_REQUIRE_ALL") == "1"


@pytest.fixture(autouse=True)
def _torch_threads() -> None:
    """One torch thread per test process — only when a test already imported torch (importing it costs seconds)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


@pytest.fixture
def tiny_ws(tmp_path: Path) -> Path:
    """A small valid hand-made workspace (12/6/6 pairs of 32 px, two lights)."""
    from tests.helpers import make_workspace

    return make_workspace(tmp_path / "ws")
