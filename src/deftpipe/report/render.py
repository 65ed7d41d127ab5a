"""Render `RESULTS_DIR/DEFT_Loop_Report.html` from the committed state and the artifacts on disk.

Reads only (`deft_state.json` through `read_state`, never the lock); writes the
report atomically and figure/data caches under `RESULTS_DIR/cache/report/`. The
HTML is self-contained: inline CSS, images as data URIs, no scripts, no links out.

Example:
    from deftpipe.report import render_report
    html_path = render_report(Path("ws/results/run_20260504_065500"))
"""
from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from deftpipe.report._cache import ReportCache, env_disabled
from deftpipe.report._view import build_view
from deftpipe.report.status import load_doc
from deftpipe.workspace.io import write_text_atomic

REPORT_FILE = "DEFT_Loop_Report.html"
_TEMPLATE = "report.html.j2"


@lru_cache(maxsize=1)
def _template() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template(_TEMPLATE)


def build_report_html(results_dir: Path | str, *, use_cache: bool = True) -> str:
    """The report HTML as a string (nothing written except the figure cache).

    Raises:
        ContractError: no `deft_state.json` in `results_dir`, or a malformed one.
    """
    rd, doc = load_doc(results_dir)
    cache = ReportCache(rd, enabled=use_cache and not env_disabled())
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    view = build_view(doc, rd, cache, generated_at=now)
    html = _template().render(**view)
    cache.flush()
    return html


def render_report(results_dir: Path | str, *, out: Path | None = None) -> Path:
    """Write the self-contained HTML report of a run (in progress, halted, failed or complete).

    Args:
        results_dir: the run directory holding `deft_state.json`.
        out: where to write; default `RESULTS_DIR/DEFT_Loop_Report.html`.

    Returns:
        The path written.

    Raises:
        ContractError: no `deft_state.json` in `results_dir`, or a malformed one. Missing or
            unreadable optional artifacts never raise: the report notes them.
    """
    rd = Path(results_dir).expanduser().resolve()
    html = build_report_html(rd)
    target = Path(out) if out is not None else rd / REPORT_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(target, html)
    return target
