"""`deftpipe rerun`: repeat a run from its saved configuration into a new run folder, then compare the numbers.

SPEC §9: same machine + same thread count + same seed -> same numbers. The settings come from what the
original run saved (`pipeline_config.json` for `deftpipe run`; `provenance.json`'s resolved DeftSettings for
`deftpipe deft`), torch's thread count is set as recorded, and every difference between the recorded and
the current host, packages, code or threads is reported before anything runs (then mismatches are expected).

    original RD ──plan_rerun──► settings + warnings ──(approval)──► execute_rerun ──► new RD ──compare──► table
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from deftpipe.errors import ConfigError, RegressionHalt, StageFailed
from deftpipe.pipeline.compare import Comparison, compare
from deftpipe.workspace.io import write_json_atomic, write_text_atomic
from deftpipe.workspace.layout import Workspace

EmitFn = Callable[[str], None]
REPORT_FILE = "rerun_comparison.json"


@dataclass(frozen=True)
class RerunPlan:
    """What a rerun repeats, read from the original run folder; nothing written yet."""

    original_dir: Path
    kind: str  # "run" (three phases) | "deft" (the loop alone)
    workspace: Path
    settings: Any  # PipelineSettings | DeftSettings
    torch_threads: int | None
    warnings: tuple[str, ...]
    preflight: Any
    out: Path | None = None

    def summary_lines(self) -> list[str]:
        s = self.settings
        threads = f"torch threads {self.torch_threads} (as recorded)" if self.torch_threads else \
            "torch threads: not recorded (default for this host)"
        return [f"rerun of: {self.original_dir} (deftpipe {self.kind})",
                f"workspace: {self.workspace}",
                f"seed {s.seed}, backend {s.backend}, epochs {s.epochs or 'from spec'}, max iterations "
                f"{s.max_iterations}, {threads}",
                f"new run folder: {self.out or Workspace.at(self.workspace).results_root / 'run_<UTC>'}"]


@dataclass(frozen=True)
class RerunResult:
    """Every compared number of both runs; `ok` when none differs."""

    original_dir: Path
    rerun_dir: Path
    kind: str
    comparisons: tuple[Comparison, ...]
    warnings: tuple[str, ...]
    stopped: str | None = None  # the rerun's hard stop / halt, when it had one (the original may have had it too)

    @property
    def mismatches(self) -> list[Comparison]:
        return [c for c in self.comparisons if not c.match]

    @property
    def ok(self) -> bool:
        return not self.mismatches


def _read(path: Path, what: str) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ConfigError(f"{path} not found: {path.parent} has no {what}, so it cannot be rerun.",
                          hint="Pass a run folder made by `deftpipe run` or `deftpipe deft` (its 'Run directory:').") \
            from None
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: unreadable ({exc}); the run folder is damaged and cannot be rerun.") from exc


def _deft_settings(state: dict[str, Any], prov: dict[str, Any]) -> Any:
    """The DeftSettings of a `deftpipe deft` run, from provenance.json (workspace: the state's absolute root)."""
    from deftpipe.deft.context import DeftSettings

    recorded = dict(prov.get("resolved_config") or {})
    known = {f.name for f in fields(DeftSettings)}
    values = {k: v for k, v in recorded.items() if k in known}
    values["workspace"] = Path(state["config"]["workspace_root"])
    values["overrides"] = tuple(values.get("overrides") or ())
    values["spec_path"] = Path(values["spec_path"]) if values.get("spec_path") else None
    return DeftSettings(**values)


def _check_out(out: Path, ws: Workspace) -> Path:
    out = Path(out).absolute()
    real, root = Path(os.path.realpath(out)), Path(os.path.realpath(ws.root))
    if not real.is_relative_to(root) or real == root:
        raise ConfigError(f"--out {out}: run folders must stay inside the workspace {ws.root} (SPEC §9); "
                          f"pick a folder under {ws.results_root}.")
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {out}: folder exists and is not empty; pick a new folder (or omit --out).")
    return out


def plan_rerun(results_dir: Path | str, *, out: Path | str | None = None) -> RerunPlan:
    """Read the original run, rebuild its settings, run the pre-flight checks; writes nothing.

    Raises:
        ConfigError: not a run folder, an unreadable one, or a bad `out`.
        ContractError / InsufficientDisk: the pre-flight refuses (workspace problems, low disk).
    """
    from deftpipe.provenance import environment, environment_differences
    from deftpipe.workspace.io import sha256_file

    rd = Path(results_dir).resolve()
    if not rd.is_dir():
        raise ConfigError(f"{results_dir}: no such run folder; pass the folder printed as 'Run directory:'.")
    warnings: list[str] = []
    if (rd / "pipeline_config.json").exists():
        from deftpipe.pipeline import preflight
        from deftpipe.pipeline.run import load_config

        kind, settings = "run", load_config(rd)
        if getattr(settings, "time_budget", None) is not None:
            # the saved max_iterations is what the budget decided then; re-deciding from a new timing could differ
            settings = replace(settings, time_budget=None)
        # a run stopped inside Phase 1 has neither file yet (provenance is written when the loop starts)
        prov = _read(rd / "provenance.json", "provenance.json") if (rd / "provenance.json").exists() else {}
        state = _read(rd / "deft_state.json", "deft_state.json") if (rd / "deft_state.json").exists() else {}
        if not prov:
            warnings.append("no provenance.json (the run stopped in Phase 1): host, packages and threads are unchecked")
        pf = preflight.build(settings, sources={k: "config file" for k in settings.to_json()}, measure=False)
    else:
        from deftpipe.deft.preflight import build_preflight

        prov = _read(rd / "provenance.json", "provenance.json")
        state = _read(rd / "deft_state.json", "deft_state.json")
        kind, settings = "deft", _deft_settings(state, prov)
        pf = build_preflight(settings, given=set())
    ws = Workspace.at(settings.workspace)
    if state.get("status") != "complete":
        warnings.append(f"the original run's status is '{state.get('status', 'not started')}', not complete: numbers "
                        "it never produced show as missing")
    threads = (prov.get("threads") or {}).get("torch_threads")
    current = environment()
    if threads is not None:
        current["threads"]["torch_threads"] = int(threads)  # set as recorded before anything runs
    warnings += environment_differences(prov, current)
    for name, rec in (prov.get("inputs") or {}).items():
        path = Path(rec.get("path", ""))
        if path.is_relative_to(rd):
            continue  # written by the run itself (Phase 1's merged spec)
        now = sha256_file(path) if path.is_file() else None
        if now != rec.get("sha256"):
            what = "is missing" if now is None else "changed"
            warnings.append(f"input {name} ({path}) {what} since the original run")
    return RerunPlan(original_dir=rd, kind=kind, workspace=ws.root, settings=settings,
                     torch_threads=int(threads) if threads is not None else None, warnings=tuple(warnings),
                     preflight=pf, out=_check_out(Path(out), ws) if out is not None else None)


def _new_dir(plan: RerunPlan) -> Path:
    from deftpipe.state import new_run_dir

    if plan.out is not None:
        plan.out.mkdir(parents=True, exist_ok=True)
        return plan.out
    ws = Workspace.at(plan.workspace)
    return new_run_dir(ws.results_root, workspace_root=ws.root)


def _run(plan: RerunPlan, rd: Path, emit: EmitFn) -> None:
    if plan.kind == "run":
        from deftpipe.pipeline.run import run_phases, save_config

        write_text_atomic(rd / "preflight.md", plan.preflight.to_markdown())
        write_json_atomic(rd / "preflight.json", plan.preflight.to_dict())
        save_config(rd, plan.settings)
        run_phases(rd, plan.settings, emit=emit)
    else:
        from deftpipe.deft.loop import run_loop
        from deftpipe.deft.run import create_run

        create_run(plan.settings, results_dir=rd)
        write_text_atomic(rd / "preflight.md", plan.preflight.to_markdown())
        run_loop(rd, on_event=emit)


def execute_rerun(plan: RerunPlan, *, emit: EmitFn | None = None) -> RerunResult:
    """Run the plan into a new run folder (call only after approval) and compare; writes `rerun_comparison.json`."""
    emit = emit or (lambda line: None)
    previous = None
    if plan.torch_threads is not None:
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(plan.torch_threads)
    rd = _new_dir(plan)
    emit(f"Rerun directory: {rd}")
    stopped: str | None = None
    try:
        _run(plan, rd, emit)
    except (StageFailed, RegressionHalt) as exc:  # the original may have stopped the same way: compare anyway
        stopped = f"{type(exc).__name__}: {exc.message}"
        emit(f"[rerun] stopped: {stopped}")
    finally:
        if previous is not None:
            import torch

            torch.set_num_threads(previous)
    result = RerunResult(original_dir=plan.original_dir, rerun_dir=rd, kind=plan.kind,
                         comparisons=tuple(compare(plan.original_dir, rd)), warnings=plan.warnings, stopped=stopped)
    write_json_atomic(rd / REPORT_FILE, {
        "original": str(plan.original_dir), "ok": result.ok, "warnings": list(plan.warnings), "stopped": stopped,
        "n_compared": len(result.comparisons), "n_mismatches": len(result.mismatches),
        "mismatches": [{"key": c.key, "original": c.original, "rerun": c.rerun} for c in result.mismatches]})
    return result


def rerun(results_dir: Path | str, *, out: Path | str | None = None, on_event: EmitFn | None = None) -> RerunResult:
    """Repeat a run and compare its numbers (calling it is the approval).

    Example:
        res = deftpipe.rerun("demo_ws/results/run_20250101_120000")
        res.ok, [(c.key, c.original, c.rerun) for c in res.mismatches], res.warnings
    """
    return execute_rerun(plan_rerun(results_dir, out=out), emit=on_event)
