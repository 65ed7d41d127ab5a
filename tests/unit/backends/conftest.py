"""Fixtures of the native backend tests (data builders live in `_tiny.py`)."""
from __future__ import annotations

import pytest

from tests.unit.backends._tiny import TinyWorkspace, make_tiny_workspace


@pytest.fixture(scope="session")
def tiny_ws(tmp_path_factory: pytest.TempPathFactory) -> TinyWorkspace:
    return make_tiny_workspace(tmp_path_factory.mktemp("tiny_ws"))
