"""Fixtures for AutoML tests: a tiny workspace on tmpfs (SQLite fsyncs are the slow part) and the fake backend."""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import make_workspace
from tests.unit.automl.fake_backend import FakeBackend


@pytest.fixture
def fast_tmp(tmp_path: Path) -> Iterator[Path]:
    shm = Path("/dev/shm")
    if shm.is_dir():
        d = Path(tempfile.mkdtemp(prefix="deftpipe-automl-", dir=shm))
        yield d
        shutil.rmtree(d, ignore_errors=True)
    else:
        yield tmp_path


@pytest.fixture
def ws(fast_tmp: Path) -> Path:
    return make_workspace(fast_tmp / "ws", n_train=6, n_val=24, n_kpi=6, size=16)


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend()
