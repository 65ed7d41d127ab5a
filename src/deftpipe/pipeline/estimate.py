"""Compute and disk estimates for the pre-flight, from a measured timing of real training steps.

Trains the real model for two short epochs on a small slice of this workspace in
a temporary folder outside the workspace (nothing under results/ is written). The
second epoch gives the per-pair speed; what the run spent outside its epochs
(decoding, model setup) is charged once per training.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deftpipe.workspace import disk
from deftpipe.workspace.layout import Workspace
from deftpipe.workspace.spec import load_spec
from deftpipe.workspace.tables import read_samples_csv


@dataclass(frozen=True)
class Timing:
    seconds_per_pair_epoch: float
    pairs_measured: int
    seconds_measured: float
    seconds_per_training: float = 0.0  # fixed cost of one training run: decode, model setup, first-step warm-up


def measure_training(ws: Workspace, overrides: list[str], *, backend_name: str = "native", n_rows: int = 128,
                     device: str = "auto", epochs: int = 2) -> Timing:
    """`epochs` epochs on `n_rows` training rows (validated on a quarter as many): per-pair-epoch and per-run seconds.

    One epoch on 64 rows, as this used to be, charged decoding and warm-up to every pair-epoch and
    overestimated the medium demo ~10x; the last epoch alone is the steady-state speed.
    """
    from deftpipe.backends import create_backend
    from deftpipe.backends.base import TrainRequest
    from deftpipe.workspace.io import read_jsonl, write_csv_atomic

    spec = load_spec(ws.spec_path, [*overrides, f"train.num_epochs={epochs}", "train.checkpoint_interval=1",
                                    "train.validation_interval=1"])
    rows = read_samples_csv(ws.training_csv)
    val = read_samples_csv(ws.validation_csv)
    tmp = Path(tempfile.mkdtemp(prefix="deftpipe-timing-"))
    try:
        train_part = rows.sample(n=min(n_rows, len(rows)), random_state=0)
        val_part = val.sample(n=min(max(16, n_rows // 4), len(val)), random_state=0)
        write_csv_atomic(tmp / "train.csv", train_part)
        write_csv_atomic(tmp / "val.csv", val_part)
        started = time.perf_counter()
        create_backend(backend_name).train(TrainRequest(
            spec=spec, train_csv=tmp / "train.csv", val_csv=tmp / "val.csv", images_dir=ws.images_dir,
            workspace_root=ws.root, out_dir=tmp / "out", cache_dir=None, seed=0, device=device))
        seconds = time.perf_counter() - started
        log = [r for r in read_jsonl(tmp / "out" / "train_log.jsonl") if r.get("seconds") is not None]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    pairs = len(train_part) + len(val_part)
    if len(log) < 2:  # a backend without a per-epoch log: everything counts as per-pair cost
        return Timing(seconds_per_pair_epoch=seconds / (pairs * epochs), pairs_measured=pairs, seconds_measured=seconds)
    epoch_s = [float(r["seconds"]) for r in log]
    return Timing(seconds_per_pair_epoch=epoch_s[-1] / pairs, pairs_measured=pairs, seconds_measured=seconds,
                  seconds_per_training=max(0.0, seconds - sum(epoch_s)))


def phase_estimates(timing: Timing, *, n_train: int, n_val: int, n_kpi: int, n_pool: int, epochs: int,
                    recommendations: int, max_iterations: int, num_sdg: int, mining_top_k: int,
                    noise_rerun: bool) -> dict[str, Any]:
    """Seconds per phase: trials x epochs x pairs, iterations x (growing training set), KPI/pool inference."""
    per = timing.seconds_per_pair_epoch
    run_s = timing.seconds_per_training
    trials1 = recommendations + (4 if noise_rerun else 0)
    phase1 = trials1 * (epochs * (n_train + n_val) * per + run_s)
    infer = (n_kpi + n_val) * per * 0.35  # inference ~1/3 of a training step per pair
    growth = num_sdg + 20 * mining_top_k
    phase2 = 2 * infer + sum(epochs * (n_train + k * growth + n_val) * per + run_s + 2 * infer
                             + n_pool * per * 0.35 for k in range(1, max_iterations + 1))
    n3 = n_train + max_iterations * growth
    phase3 = trials1 * (epochs * (n3 + n_val) * per + run_s)
    return {"phase1_s": phase1, "phase2_s": phase2, "phase3_s": phase3, "total_s": phase1 + phase2 + phase3}


def disk_estimate(*, n_train: int, n_val: int, n_kpi: int, image_bytes: int, recommendations: int,
                  max_iterations: int, num_sdg: int, checkpoints_each: int = 2,
                  checkpoint_bytes: int = disk.CHECKPOINT_BYTES) -> int:
    """Bytes `deftpipe run` writes: two AutoML phases of trials, the DEFT baseline and iterations, caches, SDG."""
    return disk.estimate_bytes(n_rows=n_train + n_val + n_kpi, image_bytes=image_bytes,
                               n_trainings=2 * recommendations + max_iterations + 1, checkpoints_each=checkpoints_each,
                               n_sdg=max_iterations * num_sdg, checkpoint_bytes=checkpoint_bytes)
