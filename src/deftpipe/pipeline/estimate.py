"""Compute and disk estimates for the pre-flight, from a measured timing of real training steps.

Trains the real model for one short epoch on a small slice of this workspace in
a temporary folder outside the workspace (nothing under results/ is written).
"""
from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deftpipe.workspace.layout import Workspace
from deftpipe.workspace.spec import load_spec
from deftpipe.workspace.tables import read_samples_csv


@dataclass(frozen=True)
class Timing:
    seconds_per_pair_epoch: float
    pairs_measured: int
    seconds_measured: float


def measure_training(ws: Workspace, overrides: list[str], *, backend_name: str = "native", n_rows: int = 64,
                     device: str = "auto") -> Timing:
    """One epoch on `n_rows` training rows (validated on 16): seconds per pair-epoch, decode included."""
    from deftpipe.backends import create_backend
    from deftpipe.backends.base import TrainRequest
    from deftpipe.workspace.io import write_csv_atomic

    spec = load_spec(ws.spec_path, [*overrides, "train.num_epochs=1", "train.checkpoint_interval=1",
                                    "train.validation_interval=1"])
    rows = read_samples_csv(ws.training_csv)
    val = read_samples_csv(ws.validation_csv)
    tmp = Path(tempfile.mkdtemp(prefix="deftpipe-timing-"))
    try:
        train_part = rows.sample(n=min(n_rows, len(rows)), random_state=0)
        val_part = val.sample(n=min(16, len(val)), random_state=0)
        write_csv_atomic(tmp / "train.csv", train_part)
        write_csv_atomic(tmp / "val.csv", val_part)
        started = time.perf_counter()
        create_backend(backend_name).train(TrainRequest(
            spec=spec, train_csv=tmp / "train.csv", val_csv=tmp / "val.csv", images_dir=ws.images_dir,
            workspace_root=ws.root, out_dir=tmp / "out", cache_dir=None, seed=0, device=device))
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    pairs = len(train_part) + len(val_part)
    return Timing(seconds_per_pair_epoch=seconds / pairs, pairs_measured=pairs, seconds_measured=seconds)


def phase_estimates(timing: Timing, *, n_train: int, n_val: int, n_kpi: int, n_pool: int, epochs: int,
                    recommendations: int, max_iterations: int, num_sdg: int, mining_top_k: int,
                    noise_rerun: bool) -> dict[str, Any]:
    """Seconds per phase: trials x epochs x pairs, iterations x (growing training set), KPI/pool inference."""
    per = timing.seconds_per_pair_epoch
    trials1 = recommendations + (4 if noise_rerun else 0)
    phase1 = trials1 * epochs * (n_train + n_val) * per
    infer = (n_kpi + n_val) * per * 0.35  # inference ~1/3 of a training step per pair
    growth = num_sdg + 20 * mining_top_k
    phase2 = 2 * infer + sum(epochs * (n_train + k * growth + n_val) * per + 2 * infer + n_pool * per * 0.35
                             for k in range(1, max_iterations + 1))
    n3 = n_train + max_iterations * growth
    phase3 = trials1 * epochs * (n3 + n_val) * per
    return {"phase1_s": phase1, "phase2_s": phase2, "phase3_s": phase3, "total_s": phase1 + phase2 + phase3}


def disk_estimate(*, n_train: int, n_val: int, n_kpi: int, image_bytes: int, recommendations: int,
                  max_iterations: int, num_sdg: int, checkpoint_bytes: int = 2_000_000) -> int:
    """Bytes a run writes: checkpoints (2 per trial/iteration), decode cache, inference CSVs, SDG images."""
    ckpts = (2 * recommendations * 2 + 2 * (max_iterations + 1)) * checkpoint_bytes
    cache = (n_train + n_val + n_kpi) * image_bytes * 3
    sdg = max_iterations * num_sdg * image_bytes * 2
    return int(ckpts + cache + sdg + 10_000_000)
