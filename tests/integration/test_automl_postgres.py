"""Distributed AutoML: a coordinator and two `deftpipe automl-worker` processes share one PostgreSQL study.

Needs DEFTPIPE_PG_URL (e.g. postgresql://deftpipe:deftpipe@localhost:5432/deftpipe_test); skipped without it,
except in CI (DEFTPIPE_REQUIRE_ALL=1) where a missing server is a failure. Trials use the fake backend
(`module:factory` backend reference, importable from the repo root) sleeping 1 s per epoch, 2 epochs.
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO, require_all
from tests.helpers import make_workspace

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
BACKEND = "tests.unit.automl.fake_backend:SlowFakeBackend"
N_TRIALS = 6


@pytest.fixture
def pg_url() -> str:
    url = os.environ.get("DEFTPIPE_PG_URL")
    if not url:
        reason = "DEFTPIPE_PG_URL is not set (a PostgreSQL URL such as postgresql://u:p@localhost/db)"
        if require_all():
            pytest.fail(reason + " but DEFTPIPE_REQUIRE_ALL=1")
        pytest.skip(reason)
    return url


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["DEFTPIPE_FAKE_EPOCH_S"] = "1"
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_two_workers_and_the_coordinator_share_one_study(pg_url: str, tmp_path: Path) -> None:
    import optuna

    ws = make_workspace(tmp_path / "ws", n_train=6, n_val=24, n_kpi=6, size=16)
    study = f"pgtest-{uuid.uuid4().hex[:10]}"
    out = tmp_path / "out"
    cli = [sys.executable, "-m", "deftpipe"]
    workers = [subprocess.Popen([*cli, "automl-worker", "--storage", pg_url, "--study", study, "--wait-timeout", "180"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(), cwd=REPO)
               for _ in range(2)]
    try:
        coord = subprocess.run(
            [*cli, "automl", "--workspace", str(ws), "--out", str(out), "--storage", pg_url, "--study-name", study,
             "--backend", BACKEND, "--recommendations", str(N_TRIALS), "--epochs", "2", "--algorithm", "random",
             "--noise-rerun", "off", "--seed", "0", "--yes"],
            capture_output=True, text=True, env=_env(), cwd=REPO, timeout=300)
        if coord.returncode != 0:
            for w in workers:
                w.kill()
        logs = [w.communicate(timeout=180)[0] for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    assert coord.returncode == 0, coord.stdout[-3000:] + coord.stderr[-3000:]
    for w, log in zip(workers, logs):
        assert w.returncode == 0, log[-3000:]
        assert "ran 0 trial" not in log, log[-3000:]          # both workers completed trials

    from deftpipe.automl.study import open_storage

    loaded = optuna.load_study(study_name=study, storage=open_storage(pg_url, heartbeat=False))
    trials = loaded.get_trials(deepcopy=False)
    assert len(trials) == N_TRIALS
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert loaded.user_attrs["released"] is True
    assert (out / "best_rec.json").is_file() and (out / "trials.csv").is_file()
    # released together: every process started its first trial within a few seconds of the first one
    starts = sorted(t.datetime_start for t in trials if t.datetime_start is not None)[:3]
    assert (starts[-1] - starts[0]).total_seconds() < 15
