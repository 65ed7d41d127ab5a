"""DEFT loop fixtures: the cached tiny demo workspace, its per-test copies, the fake backend."""
from __future__ import annotations

from tests.unit.deft.loop_support import demo_template, demo_ws, fake, fast_fsync  # noqa: F401
