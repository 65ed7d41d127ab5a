"""The consolidated pre-flight of SPEC §7: nine sections, every value tagged with its source, every
read-only check actually run. Nothing is written; the caller saves it after approval."""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from deftpipe.errors import ConfigError, ContractError
from deftpipe.pipeline import budget
from deftpipe.workspace import disk
from deftpipe.workspace.layout import Workspace
from deftpipe.workspace.spec import get, load_spec
from deftpipe.workspace.validate import validate_workspace

# Environment variables a backend may need; only SET/UNSET is ever shown.
CREDENTIALS: dict[str, tuple[str, ...]] = {"native": (), "tao": ("NGC_API_KEY", "NGC_ORG")}


@dataclass
class Item:
    key: str
    value: Any
    source: str  # user | config file | spec | default | measured | check


@dataclass
class Section:
    title: str
    items: list[Item] = field(default_factory=list)

    def add(self, key: str, value: Any, source: str) -> None:
        self.items.append(Item(key, value, source))


@dataclass
class PipelinePreflight:
    sections: list[Section]
    gates: list[str]
    estimate: dict[str, Any]
    # The settings the run must use: a --time-budget replaced max_iterations (None: the caller's, unchanged).
    settings: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {"sections": [{"title": s.title, "items": [{"key": i.key, "value": i.value, "source": i.source}
                                                         for i in s.items]} for s in self.sections],
                "gates": self.gates, "estimate": self.estimate}

    def to_markdown(self) -> str:
        out = ["# deftpipe pre-flight", ""]
        for s in self.sections:
            out += [f"## {s.title}", "", "| item | value | source |", "|---|---|---|"]
            out += [f"| {i.key} | {i.value} | {i.source} |" for i in s.items]
            out.append("")
        out += ["## Gates that can still halt the run", ""] + [f"- {g}" for g in self.gates] + [""]
        return "\n".join(out)


def _fmt_s(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def _mem_gib() -> float | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return None


def build(settings: Any, *, sources: dict[str, str], measure: bool = True) -> PipelinePreflight:
    """Run every read-only check and build the nine sections; raises ContractError on workspace problems."""
    from deftpipe.pipeline import estimate as est

    ws = Workspace.at(settings.workspace)
    overrides = list(settings.spec_overrides())
    report = validate_workspace(ws.root, overrides)
    if not report.ok:
        raise ContractError(
            f"{ws.root}: the workspace has {len(report.problems)} problem(s):\n  " + "\n  ".join(report.problems),
            hint=f"Fix them and re-run; `deftpipe validate-workspace {settings.workspace}` lists them too.")
    spec = load_spec(ws.spec_path, overrides)
    src = lambda name: sources.get(name, "default")  # noqa: E731
    tables = {t.name: t for t in report.tables}

    n = {k: tables[k].n_rows if k in tables else 0 for k in ("training", "validation", "kpi", "holdout", "mining_pool")}
    epochs = settings.epochs or int(get(spec, "train.num_epochs"))
    timing: Any = None
    plan: Any = None
    if settings.time_budget is not None:
        # A budget is measured first: the disk estimate below depends on the iteration count it decides.
        if not measure:
            raise ConfigError("--time-budget needs the measured training speed, and --no-measure skips it.",
                              hint="Drop --no-measure, or give --max-iterations N instead of a time budget.")
        timing = est.measure_training(ws, overrides, backend_name=settings.backend, device=settings.device)
        settings, sources, plan = budget.apply(
            settings, sources, lambda m: _estimates(timing, settings, n, epochs, max_iterations=m), epochs=epochs)
    # before torch is imported for the device line (without a budget): a refusal costs no seconds
    keep = getattr(settings, "keep_checkpoints", "best_latest")
    disk_need = est.disk_estimate(
        n_train=n["training"], n_val=n["validation"], n_kpi=n["kpi"] + n["holdout"],
        image_bytes=disk.sample_image_bytes(ws.images_dir, str(get(spec, "dataset.classify.image_ext")),
                                            len(report.lights)),
        recommendations=settings.recommendations, max_iterations=settings.max_iterations, num_sdg=settings.num_sdg,
        checkpoints_each=disk.checkpoints_per_training(keep, epochs))
    free, _ = disk.require_free_disk(ws.results_root, disk_need, command="run",
                                     smaller="fewer --recommendations / --max-iterations, --keep-checkpoints best_latest")
    s1 = Section("1. Workspace, host, backend, network")
    s1.add("workspace", str(ws.root), "user")
    s1.add("host", socket.gethostname(), "check")
    try:
        import torch

        cuda = torch.cuda.is_available()
        device = torch.cuda.get_device_name(0) if cuda else f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    except ImportError:
        device = "torch not importable"
    s1.add("device", device, "check")
    mem = _mem_gib()
    s1.add("memory", f"{mem:.1f} GiB" if mem else "unknown", "check")
    s1.add("free disk", disk.describe(free, disk_need), "check")
    s1.add("checkpoints kept", f"{keep} per trial / iteration", src("keep_checkpoints"))
    s1.add("backend", settings.backend, src("backend"))
    s1.add("network mode", "offline (nothing is downloaded at run time)", "default")

    s2 = Section("2. Credentials (values never shown)")
    needed = CREDENTIALS.get(settings.backend, ())
    if not needed:
        s2.add("credentials", f"none needed by the {settings.backend} backend", "check")
    for var in needed:
        s2.add(var, "SET" if os.environ.get(var) else "UNSET", "check")

    s3 = Section("3. Runtime packages")
    for pkg in ("torch", "optuna", "faiss-cpu", "opencv-python-headless", "pandas", "numpy"):
        try:
            s3.add(pkg, f"PRESENT {metadata.version(pkg)}", "check")
        except metadata.PackageNotFoundError:
            s3.add(pkg, "MISSING", "check")

    s4 = Section("4. Datasets")
    for t in report.tables:
        labels = ", ".join(f"{k}={v}" for k, v in t.labels.items())
        s4.add(t.name, f"{t.n_rows} rows ({labels})", "check")
    for k, v in report.overlaps.items():
        s4.add(f"overlap {k}", v, "check")
    s4.add("lights / size", f"{', '.join(report.lights)} / {report.image_size[1]}x{report.image_size[0]}"
           if report.image_size else "?", "spec")

    s5 = Section("5. Phase 1 — AutoML baseline")
    s5.add("algorithm", settings.algorithm, src("algorithm"))
    s5.add("recommendations", settings.recommendations, src("recommendations"))
    s5.add("epochs per trial", epochs, "user" if settings.epochs else "spec")
    s5.add("pinned", "train.num_epochs, dataset.classify.batch_size", "default")
    s5.add("score", "FAR@100% recall on the validation set (never KPI / holdout)", "default")
    s5.add("noise re-run", "on" if settings.noise_rerun else "off", src("noise_rerun"))
    s5.add("zero-shot gate", settings.zero_shot_gate, src("zero_shot_gate"))

    s6 = Section("6. Phase 2 — DEFT loop")
    s6.add("baseline", "pre-seeded from Phase 1's winner (no baseline training)", "default")
    s6.add("max iterations", settings.max_iterations, src("max_iterations"))
    if plan is not None:
        s6.add("time budget", budget.describe(plan, settings.time_budget), src("time_budget"))
    s6.add("KPI target", f"FAR < {settings.kpi_target_pct:g}% at Recall=100%", src("kpi_target_pct"))
    s6.add("synthetic defects per iteration", settings.num_sdg, src("num_sdg"))
    s6.add("fine-tuning LR scale", settings.finetune_lr_scale, src("finetune_lr_scale"))
    s6.add("mining top-k / min similarity", f"{settings.mining_top_k} / {settings.min_similarity}", src("mining_top_k"))
    s6.add("mining pool", f"{n['mining_pool']} rows" if n["mining_pool"] else "none", "check")

    s7 = Section("7. Phase 3 — AutoML refinement")
    s7.add("training CSV", "the last DEFT iteration's train_combined_iter<N>.csv (base CSV if the baseline met the KPI)",
           "default")
    if getattr(settings, "phase3_warm_start", True):
        s7.add("warm start", "every trial from the best DEFT iteration's checkpoint (never final_automl)",
               src("phase3_warm_start"))
    else:
        s7.add("warm start", "OFF: every trial starts from fresh weights (cold-start ablation)", src("phase3_warm_start"))
    s7.add("validation set", "the same base validation CSV as Phase 1", "default")
    s7.add("deliverable rule", "Phase 3 wins only if better on the KPI set; else the loop's best stays", "default")

    s8 = Section("8. Compute estimate")
    estimate: dict[str, Any] = {}
    if measure:
        timing = timing or est.measure_training(ws, overrides, backend_name=settings.backend, device=settings.device)
        estimate = _estimates(timing, settings, n, epochs, max_iterations=settings.max_iterations)
        if plan is not None:
            estimate["budget"] = plan.to_json()
        estimate["measured"] = {"pairs": timing.pairs_measured, "seconds": timing.seconds_measured,
                                "seconds_per_pair_epoch": timing.seconds_per_pair_epoch,
                                "seconds_per_training": timing.seconds_per_training}
        s8.add("measured", f"{timing.pairs_measured} pairs x 2 epochs in {timing.seconds_measured:.1f}s: "
                           f"{1 / timing.seconds_per_pair_epoch:.0f} pairs/s, {timing.seconds_per_training:.1f}s "
                           "per training for decode and setup", "measured")
        for key in ("phase1_s", "phase2_s", "phase3_s", "total_s"):
            s8.add(key.replace("_s", ""), _fmt_s(estimate[key]), "measured")
    else:
        s8.add("estimate", "skipped (--no-measure)", "user")

    s9 = Section("9. Confirmation")
    s9.add("approve", "type 'go' (or pass --yes); nothing asks again after this", "default")
    gates = [
        "zero-shot gate after Phase 1 (halt mode only)",
        "DEFT hard stops: empty/missing pool with routed rows, no new rows, leakage or missing files at merge, "
        "KPI unreachable (exit 4; Phase 3 is skipped)",
        "regression gate after each DEFT iteration (exit 5; resume with --accept-regression)",
        "an input file changed since approval (hard stop on resume)",
    ]
    return PipelinePreflight(sections=[s1, s2, s3, s4, s5, s6, s7, s8, s9], gates=gates, estimate=estimate,
                             settings=settings)


def _estimates(timing: Any, settings: Any, n: dict[str, int], epochs: int, *, max_iterations: int) -> dict[str, Any]:
    from deftpipe.pipeline import estimate as est

    return est.phase_estimates(timing, n_train=n["training"], n_val=n["validation"], n_kpi=n["kpi"],
                               n_pool=n["mining_pool"], epochs=epochs, recommendations=settings.recommendations,
                               max_iterations=max_iterations, num_sdg=settings.num_sdg,
                               mining_top_k=settings.mining_top_k, noise_rerun=settings.noise_rerun)
