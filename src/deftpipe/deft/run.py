"""Starting and resuming a DEFT run: the run folder, rebased input copies, initial state, provenance.

Nothing is written before the caller has approved (`approved=True`); a changed
input file since approval is a hard stop on resume (state.check_input_digests).
"""
from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from deftpipe.backends.registry import check_keep_checkpoints
from deftpipe.deft.context import INPUTS_DIR, DeftSettings
from deftpipe.deft.data_merge import rebase
from deftpipe.errors import ConfigError
from deftpipe.provenance import write_provenance
from deftpipe.state import StateStore, new_run_dir
from deftpipe.state.store import digest_files
from deftpipe.workspace.io import write_csv_atomic, write_text_atomic
from deftpipe.workspace.layout import Workspace
from deftpipe.workspace.spec import dump_spec, load_spec
from deftpipe.workspace.tables import read_samples_csv


def spec_overrides(settings: DeftSettings) -> list[str]:
    out = list(settings.overrides)
    if settings.epochs is not None:
        out.append(f"train.num_epochs={settings.epochs}")
        out.append(f"train.checkpoint_interval={min(settings.epochs, 1)}")
        out.append(f"train.validation_interval={min(settings.epochs, 1)}")
    return out


def input_files(ws: Workspace, spec_path: Path) -> dict[str, Path]:
    files = {"specs_file": spec_path, "training_csv": ws.training_csv, "validation_csv": ws.validation_csv,
             "kpi_test_csv": ws.kpi_csv}
    if ws.holdout_csv.exists():
        files["holdout_csv"] = ws.holdout_csv
    if ws.mining_pool_csv.exists():
        files["mining_pool_csv"] = ws.mining_pool_csv
    return files


def check_backend(name: str) -> None:
    """Unknown backend names are refused before anything is written (the closest name is suggested)."""
    import difflib

    from deftpipe.backends.registry import registered_backends

    known = registered_backends()
    if name not in known:
        near = difflib.get_close_matches(name, known, n=1)
        tip = f" Did you mean '{near[0]}'?" if near else ""
        raise ConfigError(f"unknown backend '{name}'; known: {known}.{tip}")


def create_run(settings: DeftSettings, *, results_dir: Path | None = None) -> Path:
    """Create RESULTS_DIR with its initial state; returns it. Call only after approval."""
    from deftpipe.metrics.contract import default_far_contract

    ws = Workspace.at(settings.workspace)
    if settings.max_iterations < 0:
        raise ConfigError(f"--max-iterations must be >= 0, got {settings.max_iterations}.")
    if not 0 < settings.finetune_lr_scale <= 10:
        raise ConfigError(f"--finetune-lr-scale must be in (0, 10], got {settings.finetune_lr_scale}.")
    check_backend(settings.backend)
    check_keep_checkpoints(settings.keep_checkpoints)
    spec_path = Path(settings.spec_path).resolve() if settings.spec_path else ws.spec_path
    overrides = spec_overrides(settings)
    spec = load_spec(spec_path, overrides)
    rd = results_dir or new_run_dir(ws.results_root, workspace_root=ws.root)
    rd.mkdir(parents=True, exist_ok=True)
    files = input_files(ws, spec_path)
    # Loop CSVs live in workspace-root coordinates; the user's CSVs are rebased once, never modified.
    for name, key in (("training", "training_csv"), ("validation", "validation_csv"), ("kpi", "kpi_test_csv"),
                      ("holdout", "holdout_csv")):
        if key in files:
            rows = read_samples_csv(files[key], name=str(files[key]))
            write_csv_atomic(rd / INPUTS_DIR / f"{name}.csv", rebase(rows, "images"))
    write_text_atomic(rd / "specs" / "baseline_spec.yaml", dump_spec(spec))
    contract = default_far_contract(settings.kpi_target_pct)
    config: dict[str, Any] = {
        "specs_file": str(spec_path), "training_csv": str(files["training_csv"]),
        "validation_csv": str(files["validation_csv"]), "kpi_test_csv": str(files["kpi_test_csv"]),
        "holdout_csv": str(files["holdout_csv"]) if "holdout_csv" in files else None,
        "images_dir": str(ws.images_dir),
        "mining_pool_csv": str(files["mining_pool_csv"]) if "mining_pool_csv" in files else None,
        "mining_images_root": str(ws.images_dir),
        "batch_size": int(spec["dataset"]["classify"]["batch_size"]),
        "num_epochs": int(spec["train"]["num_epochs"]), "num_gpus": 0, "device": settings.device,
        "sdg": {"num_sdg": settings.num_sdg, "base": settings.sdg_base, "generators": []},
        "mining_filter": {"top_k_per_target": settings.mining_top_k, "metric": "cosine",
                          "min_similarity": settings.min_similarity, "filter_by_label": True,
                          "history_aware": {"enabled": True, "identity": "filepath",
                                            "history_file": str(rd / "mining_history.json")}},
        "regression_margin": settings.regression_margin,
        "workspace_root": str(ws.root), "seed": settings.seed, "rca_top_k": settings.rca_top_k,
        "backend": settings.backend, "spec_overrides": overrides, "embedder": settings.embedder,
        "keep_checkpoints": settings.keep_checkpoints,
        "finetune_lr_scale": settings.finetune_lr_scale,
    }
    store = StateStore.create(rd, kpi_target=contract.kpi_target(), metric_contract=contract.to_dict(),
                              max_iterations=settings.max_iterations, config=config)
    store.record_input_digests(digest_files(list(files.values())))
    write_provenance(rd, inputs=files, seed=settings.seed,
                     resolved_config={k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()},
                     command=list(sys.argv), with_torch=settings.backend == "native")
    return rd
