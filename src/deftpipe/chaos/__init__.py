"""Chaos checks: kill a real `deftpipe run` at named fault points and at random instants, resume it,
and compare the finished run with an uninterrupted reference (`bench/chaos.py`, `tests/integration/test_chaos.py`).

`digest` reads a finished run into a comparable, path- and time-free form; `driver` starts, kills
and resumes the CLI as subprocesses. Nothing here is imported by the pipeline itself.
"""
from __future__ import annotations

from deftpipe.chaos.digest import RunDigest, compare_digests, digest_run
from deftpipe.chaos.driver import ChaosReport, Kill, plan_kills, quick_run_argv, run_chaos, run_reference

__all__ = ["ChaosReport", "Kill", "RunDigest", "compare_digests", "digest_run", "plan_kills", "quick_run_argv",
           "run_chaos", "run_reference"]
