"""The handoffs between phases (SPEC §7): Phase 1 -> 2 (merged spec + pre-seeded baseline) and 2 -> 3.

The user's `baseline_spec.yaml` is never modified; the winning checkpoint is
copied (size checked) into RESULTS_DIR/baseline/train/ under the naming rule.
"""
from __future__ import annotations

import json
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deftpipe.errors import ContractError
from deftpipe.state import StateStore
from deftpipe.workspace.io import write_text_atomic
from deftpipe.workspace.layout import Workspace
from deftpipe.workspace.spec import deep_merge, dump_spec, load_spec

MERGED_SPEC = "baseline_spec_automl.yaml"
_CKPT_RE = re.compile(r"model_epoch_(\d+)_step_(\d+)\.pth$")


def read_best_rec(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ContractError(f"{path}: best_rec.json not found; Phase 1 did not finish.")
    return json.loads(path.read_text())


def merged_spec(ws: Workspace, best_rec: Mapping[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Winning hyperparameters (budget keys already stripped by AutoML) deep-merged onto the user's spec."""
    base = load_spec(ws.spec_path, overrides)
    return deep_merge(base, best_rec["best"]["specs"])


def write_merged_spec(results_dir: Path, ws: Workspace, spec: Mapping[str, Any]) -> Path:
    """RESULTS_DIR/specs/baseline_spec_automl.yaml (+ a 'latest run' copy in the workspace's specs/)."""
    text = dump_spec(spec)
    path = results_dir / "specs" / MERGED_SPEC
    write_text_atomic(path, text)
    write_text_atomic(ws.root / "specs" / MERGED_SPEC, text)
    return path


def copy_winner_checkpoint(best_rec: Mapping[str, Any], results_dir: Path) -> Path:
    """Copy Phase 1's checkpoint into baseline/train/ under model_epoch_<EEE>_step_<SSS>.pth."""
    best = best_rec["best"]
    src = Path(best["checkpoint_uri"])
    if not src.is_file() or src.stat().st_size == 0:
        raise ContractError(f"Phase 1 winner checkpoint {src} is missing or empty; re-run Phase 1 (--resume).")
    match = _CKPT_RE.search(src.name)
    epoch = int(best.get("checkpoint_epoch", match.group(1) if match else 0))
    step = int(best.get("checkpoint_step", match.group(2) if match else 0))
    dest_dir = results_dir / "baseline" / "train"
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"model_epoch_{epoch:03d}_step_{step:03d}.pth"
    tmp = dest.with_name(dest.name + ".partial")
    shutil.copyfile(src, tmp)
    if tmp.stat().st_size != src.stat().st_size:
        raise ContractError(f"copying {src} to {dest} gave a different size; check free disk space and retry.")
    tmp.replace(dest)
    return dest


def preseed_baseline(store: StateStore, checkpoint: Path, *, train_metric: float) -> None:
    """Mark the baseline as trained by Phase 1: the loop evaluates this checkpoint and never retrains it."""
    store.commit("baseline", "train", artifacts={"best_ckpt_path": checkpoint},
                 fields={"source": "automl_phase1", "train_metric": float(train_metric)},
                 summary=f"baseline reuses Phase 1's winner ({checkpoint.name}); no baseline training",
                 duration_sec=0, preseeded=True)


def phase3_inputs(doc: Mapping[str, Any], results_dir: Path) -> tuple[Path, Path, str]:
    """(training CSV, warm-start checkpoint, best iteration label) for Phase 3 — never final_automl."""
    from deftpipe.deft.context import INPUTS_DIR

    iterations = doc["iterations"]
    combined = [lab for lab in iterations if lab.startswith("iter") and iterations[lab].get("combined_training_csv")]
    combined.sort(key=lambda lab: int(lab[4:]))
    train_csv = Path(iterations[combined[-1]]["combined_training_csv"]) if combined \
        else results_dir / INPUTS_DIR / "training.csv"
    fa = doc.get("final_artifacts") or {}
    best_label = None
    best_model = fa.get("best_model_json")
    if best_model and Path(best_model).exists():
        best_label = json.loads(Path(best_model).read_text()).get("iteration")
    if not best_label or best_label == "final_automl":
        raise ContractError(f"{results_dir}: DEFT finished without a deliverable; Phase 3 needs one.")
    return train_csv, Path(iterations[best_label]["best_ckpt_path"]), str(best_label)
