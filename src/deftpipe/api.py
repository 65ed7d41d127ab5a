"""Python API mirroring the CLI: calling a function is the approval (no prompt).

Example:
    import deftpipe
    out = deftpipe.run_pipeline("demo_ws", max_iterations=1, recommendations=2, epochs=2, noise_rerun=False)
    out.results_dir, out.deliverable, out.trajectory
"""
from __future__ import annotations

from pathlib import Path
from typing import Any


def run_deft(workspace: Path | str, *, max_iterations: int, resume: Path | str | None = None,
             accept_regression: bool = False, on_event: Any = None, log_level: str = "info", **settings: Any) -> Any:
    """Phase 2 alone (trains its own baseline). `settings` are DeftSettings fields (epochs, seed, num_sdg, ...).

    `log_level` (debug|info|warning|error) sets what the `deftpipe` loggers pass on; RESULTS_DIR/logs/
    keeps at least info.
    """
    from deftpipe.deft.context import DeftSettings
    from deftpipe.deft.loop import run_loop
    from deftpipe.deft.run import create_run
    from deftpipe.ui.runlog import log_level as level_scope

    with level_scope(log_level):
        if resume is not None:
            return run_loop(Path(resume), accept_regression=accept_regression, on_event=on_event)
        rd = create_run(DeftSettings(workspace=Path(workspace), max_iterations=max_iterations, **settings))
        return run_loop(rd, on_event=on_event)


def run_pipeline(workspace: Path | str, *, max_iterations: int, resume: Path | str | None = None,
                 accept_regression: bool = False, on_event: Any = None, log_level: str = "info",
                 **settings: Any) -> Any:
    """All three phases. `settings` are PipelineSettings fields (recommendations, algorithm, epochs, seed, ...).

    `log_level` as in `run_deft`. Structured run events: `deftpipe.ui.events.listen(fn)` around the call.
    """
    from deftpipe.ui.runlog import log_level as level_scope

    with level_scope(log_level):
        return _run_pipeline(workspace, max_iterations=max_iterations, resume=resume,
                             accept_regression=accept_regression, on_event=on_event, **settings)


def _run_pipeline(workspace: Path | str, *, max_iterations: int, resume: Path | str | None,
                  accept_regression: bool, on_event: Any, **settings: Any) -> Any:
    from deftpipe.pipeline import preflight
    from deftpipe.pipeline.run import PipelineSettings, load_config, run_phases, save_config
    from deftpipe.state import new_run_dir
    from deftpipe.workspace.io import write_json_atomic, write_text_atomic
    from deftpipe.workspace.layout import Workspace

    emit = on_event or (lambda line: None)
    if resume is not None:
        rd = Path(resume).resolve()
        return run_phases(rd, load_config(rd), emit=emit, accept_regression=accept_regression)
    ps = PipelineSettings(workspace=Path(workspace), max_iterations=max_iterations, **settings)
    sources = {"max_iterations": "user", **{k: "user" for k in settings}}
    # A time_budget needs the timing run; with both, the smaller of it and max_iterations wins.
    pf = preflight.build(ps, sources=sources, measure=ps.time_budget is not None)
    ps = pf.settings or ps
    ws = Workspace.at(workspace)
    rd = new_run_dir(ws.results_root, workspace_root=ws.root)
    write_text_atomic(rd / "preflight.md", pf.to_markdown())
    write_json_atomic(rd / "preflight.json", pf.to_dict())
    save_config(rd, ps)
    return run_phases(rd, ps, emit=emit)


def run_automl(workspace: Path | str, **kwargs: Any) -> Any:
    """Phase 1 / 3 engine alone; see deftpipe.automl.run_automl for the keyword arguments."""
    from deftpipe.automl import run_automl as _run

    return _run(workspace, **kwargs)


def rerun(results_dir: Path | str, *, out: Path | str | None = None, on_event: Any = None) -> Any:
    """Repeat a `run_pipeline` / `run_deft` run into a new folder and compare every number (result.ok, .mismatches)."""
    from deftpipe.pipeline.rerun import rerun as _rerun

    return _rerun(results_dir, out=out, on_event=on_event)
