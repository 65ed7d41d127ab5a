"""Whole studies on the fake backend (SQLite storage on tmpfs). Marked slow: each study takes 1-4 s."""
from __future__ import annotations

import builtins
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from deftpipe.automl import best_rec, run_automl
from deftpipe.errors import ConfigError, DependencyMissing
from tests.conftest import REPO
from tests.unit.automl.fake_backend import FakeBackend

pytestmark = pytest.mark.slow


def _run(ws: Path, out: Path, backend: Any, **kw: Any) -> Any:
    kw.setdefault("n_trials", 4)
    kw.setdefault("epochs", 3)
    kw.setdefault("noise_rerun", False)
    return run_automl(ws, out_dir=out, backend=backend, progress=False, **kw)


def _trials(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "trials.csv")


@pytest.mark.parametrize("algorithm", ["bayesian", "gp", "hyperband", "asha", "random", "grid"])
def test_every_algorithm_runs(ws: Path, fast_tmp: Path, algorithm: str) -> None:
    out = fast_tmp / algorithm
    if algorithm == "gp" and importlib.util.find_spec("scipy") is None:
        with pytest.raises(DependencyMissing, match="scipy"):
            _run(ws, out, FakeBackend(), algorithm=algorithm)
        return
    res = _run(ws, out, FakeBackend(), algorithm=algorithm, n_trials=3, epochs=2)
    assert best_rec.schema_errors(json.loads(res.best_rec_path.read_text())) == []
    assert res.checkpoint.is_file() and res.checkpoint.is_absolute()
    frame = _trials(out)
    assert len(frame) == 3 and set(frame["state"]) <= {"complete", "pruned"}
    assert all((out / f"trial_{n:04d}" / "spec.yaml").is_file() for n in frame["number"])


def test_pruned_trials_ran_fewer_epochs(ws: Path, fast_tmp: Path) -> None:
    _run(ws, fast_tmp / "o", FakeBackend(), algorithm="asha", n_trials=8, epochs=9)
    frame = _trials(fast_tmp / "o")
    pruned = frame[frame["state"] == "pruned"]
    assert len(pruned) >= 1
    assert (pruned["budget_epochs"] < 9).all()
    assert (frame[frame["state"] == "complete"]["budget_epochs"] == 9).all()


def test_failed_and_collapsed_trials_are_never_promoted(ws: Path, fast_tmp: Path) -> None:
    # sgd trials collapse with a PERFECT ranking (FAR 0) and adam trials crash: neither may win.
    fake = FakeBackend(collapse_if=lambda p: p["optim"] == "sgd", fail_if=lambda p: p["optim"] == "adam")
    res = _run(ws, fast_tmp / "o", fake, algorithm="grid", n_trials=3,
               space=["train.optim.optim=choice(adamw,adam,sgd)"])
    frame = _trials(fast_tmp / "o").set_index("rec_id")
    by_optim = {json.loads(p)["train.optim.optim"]: r for r, p in frame["params"].items()}
    assert frame.loc[by_optim["sgd"], "state"] == "disqualified"
    assert frame.loc[by_optim["adam"], "state"] == "failed"
    assert res.rec_id == by_optim["adamw"]
    recs = {r["rec_id"]: r["score"] for r in res.best_rec["all_recs"]}
    assert recs[by_optim["sgd"]] is None and recs[by_optim["adam"]] is None


def test_same_seed_same_trial_sequence(ws: Path, fast_tmp: Path) -> None:
    def params(out: str, seed: int) -> list[str]:
        _run(ws, fast_tmp / out, FakeBackend(), algorithm="bayesian", n_trials=5, seed=seed)
        return list(_trials(fast_tmp / out)["params"])

    first = params("a", 7)
    assert params("b", 7) == first
    assert params("c", 8) != first


def test_warm_start_reaches_every_trial(ws: Path, fast_tmp: Path) -> None:
    warm = fast_tmp / "model_epoch_005_step_050.pth"
    warm.write_text("{}")
    fake = FakeBackend()
    _run(ws, fast_tmp / "o", fake, warm_start=warm, n_trials=3)
    assert len(fake.train_requests) == 3
    assert {r.spec["train"]["pretrained_model_path"] for r in fake.train_requests} == {str(warm.resolve())}


def test_kpi_and_holdout_are_never_opened(ws: Path, fast_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (ws / "kpi/holdout_set.csv").write_text((ws / "kpi/testing_set.csv").read_text())
    forbidden = [str((ws / "kpi").resolve())]
    real_open, real_read_csv = builtins.open, pd.read_csv

    def guard(path: Any) -> None:
        if isinstance(path, (str, os.PathLike)) and any(str(Path(path).resolve()).startswith(f) for f in forbidden):
            raise AssertionError(f"AutoML opened {path}")

    def open_guard(file: Any, *a: Any, **k: Any) -> Any:
        guard(file)
        return real_open(file, *a, **k)

    def read_csv_guard(path: Any, *a: Any, **k: Any) -> Any:
        guard(path)
        return real_read_csv(path, *a, **k)

    monkeypatch.setattr(builtins, "open", open_guard)
    monkeypatch.setattr(pd, "read_csv", read_csv_guard)
    _run(ws, fast_tmp / "o", FakeBackend(), n_trials=2)
    with pytest.raises(ConfigError, match="never reads"):
        _run(ws, fast_tmp / "o2", FakeBackend(), val_csv=ws / "kpi/testing_set.csv")


_KILL = textwrap.dedent("""
    import sys
    sys.path.insert(0, {repo!r})
    from deftpipe.automl import run_automl
    from tests.unit.automl.fake_backend import FakeBackend
    run_automl({ws!r}, out_dir={out!r}, backend=FakeBackend(die_on_train=4), n_trials=6, epochs=3, seed=3,
               noise_rerun=False, progress=False)
""")


def test_kill_and_resume_repeats_nothing_and_retries_the_killed_params(ws: Path, fast_tmp: Path) -> None:
    ref = fast_tmp / "ref"
    _run(ws, ref, FakeBackend(), n_trials=6, seed=3)
    uninterrupted = list(_trials(ref)["params"])

    out = fast_tmp / "killed"
    script = _KILL.format(repo=str(REPO), ws=str(ws), out=str(out))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 137, proc.stderr[-2000:]
    fake = FakeBackend()
    res = _run(ws, out, fake, n_trials=6, seed=3, resume=True)
    frame = _trials(out)
    dead = frame[frame["error"].fillna("").str.contains("process died")]
    assert list(dead["number"]) == [3] and dead.iloc[0]["state"] == "failed"
    retry = frame[frame["retry_of"] == 3]
    assert len(retry) == 1 and retry.iloc[0]["params"] == uninterrupted[3]
    assert len(fake.train_requests) == 3                  # the retry + trials 4 and 5; 0..2 not rerun
    live = frame[frame["number"] != 3]["params"].tolist()
    assert live == uninterrupted                          # the resumed study asked what an uninterrupted one did
    assert res.n_trials == 6


def test_existing_study_without_resume_is_refused(ws: Path, fast_tmp: Path) -> None:
    _run(ws, fast_tmp / "o", FakeBackend(), n_trials=1)
    with pytest.raises(ConfigError, match="--resume"):
        _run(ws, fast_tmp / "o", FakeBackend(), n_trials=1)
    with pytest.raises(ConfigError, match="'seed' differs"):
        _run(ws, fast_tmp / "o", FakeBackend(), n_trials=1, seed=5, resume=True)


def test_noise_rerun_picks_by_median_and_marks_reruns(ws: Path, fast_tmp: Path) -> None:
    out = fast_tmp / "o"
    res = _run(ws, out, FakeBackend(), algorithm="grid", n_trials=3, noise_rerun=True, epochs=9,
               space=["train.optim.lr=choice(0.001,0.003,0.01)"])
    frame = _trials(out)
    search, reruns = frame[~frame["is_noise_rerun"]], frame[frame["is_noise_rerun"]]
    ranked = search.sort_values("score")
    assert ranked.iloc[1]["score"] > 2 * ranked.iloc[0]["score"]      # the trigger of SPEC §6
    assert len(reruns) == 4
    assert set(reruns["rerun_of"]) == set(ranked["number"].iloc[:2])
    assert set(reruns["seed"]) == {1000, 2000}
    medians = {}
    for orig in ranked["number"].iloc[:2]:
        runs = [search.set_index("number").loc[orig, "score"], *reruns[reruns["rerun_of"] == orig]["score"]]
        medians[orig] = sorted(runs)[1]
    chosen = min(medians, key=lambda k: medians[k])
    assert res.score == pytest.approx(medians[chosen])
    assert res.best_rec["best"]["score"] == pytest.approx(medians[chosen])
    run_row = frame.set_index("rec_id").loc[res.rec_id]
    assert run_row["score"] == pytest.approx(medians[chosen])
    assert "median" in res.summary_path.read_text()


def test_parallel_threads_run_exactly_the_requested_trials(ws: Path, fast_tmp: Path) -> None:
    res = _run(ws, fast_tmp / "o", FakeBackend(epoch_s=0.05), algorithm="asha", n_trials=5, n_jobs=2)
    frame = _trials(fast_tmp / "o")
    assert len(frame) == 5 and res.n_trials == 5
    assert set(frame["state"]) <= {"complete", "pruned"}
