"""A process killed after a trial stored its outcome but before Optuna was told (fault `trial_end`):
the resume tells the stored outcome instead of retrying, so the study runs exactly the trials of an
uninterrupted one (a retry used to leave the failed original counted, one search trial short)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from deftpipe.automl import run_automl
from deftpipe.faults import ENV
from tests.conftest import REPO
from tests.unit.automl.fake_backend import FakeBackend

pytestmark = pytest.mark.slow

_KILLED = textwrap.dedent("""
    import sys
    sys.path.insert(0, {repo!r})
    from deftpipe.automl import run_automl
    from tests.unit.automl.fake_backend import FakeBackend
    run_automl({ws!r}, out_dir={out!r}, backend=FakeBackend(), n_trials=4, epochs=2, seed=3,
               noise_rerun=False, progress=False)
""")


def _params(out: Path) -> list[str]:
    return list(pd.read_csv(out / "trials.csv")["params"])


def test_kill_at_trial_end_resumes_with_the_stored_outcome(ws: Path, fast_tmp: Path) -> None:
    ref = fast_tmp / "ref"
    expected = run_automl(ws, out_dir=ref, backend=FakeBackend(), n_trials=4, epochs=2, seed=3, noise_rerun=False,
                          progress=False)
    out = fast_tmp / "killed"
    script = _KILLED.format(repo=str(REPO), ws=str(ws), out=str(out))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, ENV: "trial_end:2"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    fake = FakeBackend()
    res = run_automl(ws, out_dir=out, backend=fake, n_trials=4, epochs=2, seed=3, noise_rerun=False, progress=False,
                     resume=True)
    frame = pd.read_csv(out / "trials.csv")
    assert len(frame) == 4 and set(frame["state"]) == {"complete"}
    assert "retry_of" not in frame or frame["retry_of"].isna().all()
    assert _params(out) == _params(ref)
    assert len(fake.train_requests) == 2  # trials 2 and 3 only; trial 1 finished before the kill
    assert (res.rec_id, res.score) == (expected.rec_id, expected.score)
