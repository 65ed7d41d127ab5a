"""`deftpipe run` (the three phases after one approval) and `deftpipe preflight` (print the plan only)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from deftpipe.cli.app import JsonOpt, LogLevelOpt, Session, app, echo, guarded, session

_FIELDS = ("max_iterations", "recommendations", "algorithm", "kpi_target_pct", "zero_shot_gate", "seed", "epochs",
           "noise_rerun", "num_sdg", "mining_top_k", "min_similarity", "rca_top_k", "device", "backend",
           "phase3_warm_start", "finetune_lr_scale", "keep_checkpoints", "time_budget")


def _settings(workspace: Path | None, config: Path | None, flags: dict[str, Any],
              overrides: list[str]) -> tuple[Any, dict[str, str]]:
    """CLI flags win over the run config file, which wins over defaults; sources recorded per field."""
    import yaml

    from deftpipe.errors import ConfigError
    from deftpipe.pipeline.run import PipelineSettings

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if config is not None:
        if not config.exists():
            raise ConfigError(f"--config {config}: file not found.")
        raw = yaml.safe_load(config.read_text()) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"--config {config}: expected a mapping of settings, got {type(raw).__name__}.")
        unknown = sorted(set(raw) - set(_FIELDS) - {"workspace", "overrides"})
        if unknown:
            import difflib

            tips = [f"{u} (did you mean {difflib.get_close_matches(u, _FIELDS, n=1)[0]}?)"
                    if difflib.get_close_matches(u, _FIELDS, n=1) else u for u in unknown]
            raise ConfigError(f"--config {config}: unknown setting(s) {', '.join(tips)}; known: {', '.join(_FIELDS)}.")
        for key, value in raw.items():
            values[key] = value
            sources[key] = "config file"
    for key, value in flags.items():
        if value is not None:
            values[key] = value
            sources[key] = "user"
    ws = workspace or values.pop("workspace", None)
    values.pop("workspace", None)
    if ws is None:
        raise ConfigError("run needs --workspace (or `workspace:` in --config).")
    if "max_iterations" not in values:
        if values.get("time_budget") is None:
            raise ConfigError("run needs --max-iterations N or --time-budget DURATION (the DEFT loop's iteration cap).")
        from deftpipe.pipeline.budget import UNCAPPED

        values["max_iterations"] = UNCAPPED  # the pre-flight sets it from the budget before anything runs
    cfg_overrides = list(values.pop("overrides", []) or [])
    return PipelineSettings(workspace=Path(ws), overrides=tuple(cfg_overrides + overrides), **values), sources


def _print_preflight(pf: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    from deftpipe.cli.app import console

    for section in pf.sections:
        table = Table(title=section.title, title_justify="left", show_header=False)
        for _ in range(3):
            table.add_column()
        for item in section.items:
            table.add_row(escape(item.key), escape(str(item.value)), escape(f"[{item.source}]"))
        console.print(table)
    echo("Gates that can still halt the run:")
    for gate in pf.gates:
        echo(f"  - {gate}")


def _common(workspace: Path | None, config: Path | None, max_iterations: int | None, recommendations: int | None,
            algorithm: str | None, kpi_target: float | None, zero_shot_gate: str | None, seed: int | None,
            epochs: int | None, noise_rerun: str | None, num_sdg: int | None, mining_top_k: int | None,
            backend: str | None, override: list[str],
            keep_checkpoints: str | None = None, time_budget: str | None = None) -> tuple[Any, dict[str, str]]:
    from deftpipe.errors import ConfigError

    if noise_rerun not in (None, "on", "off"):
        raise ConfigError(f"--noise-rerun is '{noise_rerun}'; choose on or off.")
    flags = {"max_iterations": max_iterations, "recommendations": recommendations, "algorithm": algorithm,
             "kpi_target_pct": kpi_target, "zero_shot_gate": zero_shot_gate, "seed": seed, "epochs": epochs,
             "noise_rerun": None if noise_rerun is None else noise_rerun == "on", "num_sdg": num_sdg,
             "mining_top_k": mining_top_k, "backend": backend, "keep_checkpoints": keep_checkpoints,
             "time_budget": time_budget}
    return _settings(workspace, config, flags, override)


WorkspaceOpt = Annotated[Path | None, typer.Option("--workspace", "-w", help="Workspace root.")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="run.yaml with these settings (flags win).")]
IterOpt = Annotated[int | None, typer.Option("--max-iterations", help="DEFT iterations at most (required).")]
RecOpt = Annotated[int | None, typer.Option("--recommendations", help="AutoML trials per phase (default 5).")]
AlgoOpt = Annotated[str | None, typer.Option("--algorithm", help="bayesian|gp|hyperband|asha|random|grid.")]
KpiOpt = Annotated[float | None, typer.Option("--kpi-target", help="FAR target in % at 100% recall (default 5).")]
GateOpt = Annotated[str | None, typer.Option("--zero-shot-gate", help="warn (default) or halt.")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Seed for everything (default 0).")]
EpochOpt = Annotated[int | None, typer.Option("--epochs", help="Epochs per training (default: spec).")]
NoiseOpt = Annotated[str | None, typer.Option("--noise-rerun", help="on (default) or off.")]
SdgOpt = Annotated[int | None, typer.Option("--num-sdg", help="Synthetic pairs per DEFT iteration (default 20).")]
TopkOpt = Annotated[int | None, typer.Option("--mining-top-k", help="Mined neighbours per target (default 5).")]
BackendOpt = Annotated[str | None, typer.Option("--backend", hidden=True, help="Model backend (default native).")]
OverrideOpt = Annotated[list[str], typer.Option("-o", "--override", help="Spec override key=value.")]
BudgetOpt = Annotated[str | None, typer.Option(
    "--time-budget", help="Wall time for the whole run (90m, 2h, 1h30m): sets max iterations from measured "
                          "timings; with --max-iterations the smaller wins.")]
KeepOpt = Annotated[str | None, typer.Option(
    "--keep-checkpoints", help="best_latest (default: best_val + latest per trial / iteration) or all.")]


@app.command("preflight")
def preflight_cmd(workspace: WorkspaceOpt = None, config: ConfigOpt = None, max_iterations: IterOpt = None,
                  recommendations: RecOpt = None, algorithm: AlgoOpt = None, kpi_target: KpiOpt = None,
                  zero_shot_gate: GateOpt = None, seed: SeedOpt = None, epochs: EpochOpt = None,
                  noise_rerun: NoiseOpt = None, num_sdg: SdgOpt = None, mining_top_k: TopkOpt = None,
                  backend: BackendOpt = None, override: OverrideOpt = [],  # noqa: B006
                  keep_checkpoints: KeepOpt = None, time_budget: BudgetOpt = None,
                  measure: Annotated[bool, typer.Option("--measure/--no-measure", help="Time real training steps.")] = True,
                  ) -> None:
    """Print the consolidated pre-flight of `deftpipe run` without running anything."""
    from deftpipe.pipeline import preflight

    def body() -> None:
        settings, sources = _common(workspace, config, max_iterations, recommendations, algorithm, kpi_target,
                                    zero_shot_gate, seed, epochs, noise_rerun, num_sdg, mining_top_k, backend, override,
                                    keep_checkpoints, time_budget)
        _print_preflight(preflight.build(settings, sources=sources, measure=measure))

    guarded(body)


@app.command("run")
def run_cmd(workspace: WorkspaceOpt = None, config: ConfigOpt = None, max_iterations: IterOpt = None,
            recommendations: RecOpt = None, algorithm: AlgoOpt = None, kpi_target: KpiOpt = None,
            zero_shot_gate: GateOpt = None, seed: SeedOpt = None, epochs: EpochOpt = None,
            noise_rerun: NoiseOpt = None, num_sdg: SdgOpt = None, mining_top_k: TopkOpt = None,
            backend: BackendOpt = None, override: OverrideOpt = [],  # noqa: B006
            keep_checkpoints: KeepOpt = None, time_budget: BudgetOpt = None,
            resume: Annotated[Path | None, typer.Option("--resume", help="Continue this run directory.")] = None,
            accept_regression: Annotated[bool, typer.Option("--accept-regression", help="Clear a regression halt.")] = False,
            measure: Annotated[bool, typer.Option("--measure/--no-measure", help="Time real training steps.")] = True,
            yes: Annotated[bool, typer.Option("--yes", "-y", help="Approve the pre-flight without asking.")] = False,
            quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only one line per stage (no progress lines).")] = False,
            json_out: JsonOpt = False,
            log_level: LogLevelOpt = "info",
            ) -> None:
    """Phase 1 AutoML -> Phase 2 DEFT loop -> Phase 3 warm-started AutoML, after one approval."""
    from deftpipe.pipeline import preflight
    from deftpipe.pipeline.run import load_config, run_phases, save_config
    from deftpipe.ui import events

    def finish(s: Session, out: Any) -> None:
        s.result.update(deliverable=out.deliverable, trajectory=out.trajectory, phase3_skipped=out.phase3_skipped)
        echo(f"Run directory: {out.results_dir}")

    def in_session(body: Any) -> None:
        with session("run", json_mode=json_out, log_level=log_level, quiet=quiet) as s:
            body(s)

    if resume is not None:
        def body_resume(s: Session) -> None:
            rd = Path(resume).resolve()
            settings = load_config(rd)
            s.results_dir = rd
            s.say(f"Resuming {rd}")
            events.publish("run_start", results_dir=rd, resumed=True)
            finish(s, run_phases(rd, settings, emit=s.say, accept_regression=accept_regression,
                                 progress_factory=s.progress_factory))
        guarded(lambda: in_session(body_resume))
        return

    def body(s: Session) -> None:
        from deftpipe.cli.cmd_deft import approve
        from deftpipe.state import new_run_dir
        from deftpipe.workspace.io import write_json_atomic, write_text_atomic
        from deftpipe.workspace.layout import Workspace

        settings, sources = _common(workspace, config, max_iterations, recommendations, algorithm, kpi_target,
                                    zero_shot_gate, seed, epochs, noise_rerun, num_sdg, mining_top_k, backend, override,
                                    keep_checkpoints, time_budget)
        pf = preflight.build(settings, sources=sources, measure=measure)
        settings = pf.settings or settings  # a --time-budget decided max_iterations
        if s.verbose or not yes:  # the plan must be on screen when someone is asked to approve it
            _print_preflight(pf)
        approve(True, yes)
        ws = Workspace.at(settings.workspace)
        rd = new_run_dir(ws.results_root, workspace_root=ws.root)
        write_text_atomic(rd / "preflight.md", pf.to_markdown())
        write_json_atomic(rd / "preflight.json", pf.to_dict())
        digest = save_config(rd, settings)
        s.results_dir = rd
        echo(f"Approved. Run directory: {rd} (config sha256 {digest[:12]})")
        events.publish("run_start", results_dir=rd, resumed=False, config_sha256=digest)
        finish(s, run_phases(rd, settings, emit=s.say, progress_factory=s.progress_factory))

    guarded(lambda: in_session(body))
