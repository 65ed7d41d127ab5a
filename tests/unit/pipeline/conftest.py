"""Bridge test fixtures: the cached tiny demo workspace, its per-test copies, the `fake_pipeline` backend."""
from __future__ import annotations

from tests.unit.pipeline.support import demo_template, pipe, pipe_ws  # noqa: F401
