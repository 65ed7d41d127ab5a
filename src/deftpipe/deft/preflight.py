"""DEFT's own pre-flight: every setting with its source (user / spec / default) and the read-only checks.

Runs before anything is written; the CLI prints it and asks once.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from deftpipe.backends.registry import check_keep_checkpoints
from deftpipe.deft.context import DeftSettings
from deftpipe.errors import ContractError
from deftpipe.workspace import disk
from deftpipe.workspace.layout import Workspace
from deftpipe.workspace.spec import get, load_spec
from deftpipe.workspace.validate import WorkspaceReport, validate_workspace


@dataclass
class Preflight:
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # (setting, value, source)
    report: WorkspaceReport | None = None
    gates: list[str] = field(default_factory=list)

    def to_markdown(self) -> str:
        lines = ["| setting | value | source |", "|---|---|---|"]
        lines += [f"| {k} | {v} | {s} |" for k, v, s in self.rows]
        if self.report:
            lines += ["", "| CSV | rows | labels |", "|---|---|---|"]
            lines += [f"| {t.name} | {t.n_rows} | {', '.join(f'{k}={v}' for k, v in t.labels.items())} |"
                      for t in self.report.tables]
            lines += [""] + [f"- overlap {k}: {v}" for k, v in self.report.overlaps.items()]
        lines += ["", "Gates that can still halt the run:"] + [f"- {g}" for g in self.gates]
        return "\n".join(lines) + "\n"


def build_preflight(settings: DeftSettings, *, given: set[str]) -> Preflight:
    """Settings table + workspace validation; raises ContractError listing every workspace problem."""
    from deftpipe.deft.run import check_backend, spec_overrides

    ws = Workspace.at(settings.workspace)
    check_backend(settings.backend)
    check_keep_checkpoints(settings.keep_checkpoints)
    pf = Preflight()
    report = validate_workspace(ws.root, spec_overrides(settings))
    pf.report = report
    if not report.ok:
        raise ContractError(
            f"{ws.root}: the workspace has {len(report.problems)} problem(s):\n  " + "\n  ".join(report.problems),
            hint=f"Fix them, then re-run; `deftpipe validate-workspace {settings.workspace}` lists them too.")
    spec_path = Path(settings.spec_path) if settings.spec_path else ws.spec_path
    spec = load_spec(spec_path, list(settings.overrides))
    pf.rows.append(("workspace", str(ws.root), "user"))
    pf.rows.append(("spec", str(spec_path), "user" if "spec_path" in given else "default"))
    for f in fields(DeftSettings):
        if f.name in ("workspace", "spec_path", "overrides"):
            continue
        value: Any = getattr(settings, f.name)
        source = "user" if f.name in given else "default"
        if f.name == "epochs" and value is None:
            value, source = get(spec, "train.num_epochs"), "spec"
        pf.rows.append((f.name, str(value), source))
    pf.rows.append(("free disk", _disk_check(ws, settings, spec, report), "check"))
    for key in ("train.optim.lr", "train.optim.optim", "dataset.classify.batch_size", "model.backbone.type",
                "model.classify.input_mode"):
        pf.rows.append((key, str(get(spec, key)), "user" if any(o.startswith(key + "=") for o in settings.overrides)
                        else "spec"))
    pf.gates = [
        "missing/empty mining pool with routed rows, or no new rows at all (hard stop, exit 4)",
        "missing files or leakage into validation/KPI/holdout at data merge (hard stop, exit 4)",
        "KPI unreachable at RCA (hard stop, exit 4)",
        "regression gate after each iteration's evaluate (halt, exit 5; resume with --accept-regression)",
        "an input file changed since approval (hard stop on resume)",
    ]
    return pf


def _disk_check(ws: Workspace, settings: DeftSettings, spec: dict[str, Any], report: WorkspaceReport) -> str:
    """Refuse (InsufficientDisk) when the loop would not fit on the disk; else the pre-flight's free-disk value."""
    n_rows = sum(t.n_rows for t in report.tables if t.name != "mining_pool")
    epochs = settings.epochs or int(get(spec, "train.num_epochs"))
    need = disk.estimate_bytes(
        n_rows=n_rows, image_bytes=disk.sample_image_bytes(ws.images_dir, str(get(spec, "dataset.classify.image_ext")),
                                                          len(report.lights)),
        n_trainings=settings.max_iterations + 1,
        checkpoints_each=disk.checkpoints_per_training(settings.keep_checkpoints, epochs),
        n_sdg=settings.max_iterations * settings.num_sdg)
    free, _ = disk.require_free_disk(ws.results_root, need, command="deft",
                                     smaller="fewer --max-iterations / --num-sdg, --keep-checkpoints best_latest")
    return disk.describe(free, need)
