"""Render `RESULTS_DIR/DEFT_Loop_Report.html` from the committed state and the artifacts on disk.

Reads only (`deft_state.json` through `read_state`, never the lock); writes the
report atomically and figure/data caches under `RESULTS_DIR/cache/report/`. The
HTML is self-contained: inline CSS, images as data URIs, no scripts, no links out.

A render in a fresh process stays fast because everything slow is cached on disk
by what it depends on: the validated state by the state file's signature (no
pydantic), figures by their data hash (no matplotlib), the page by the hash of
its view and template (no Jinja), the compiled template as Jinja bytecode.

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
_TEMPLATE_PATH = Path(__file__).parent / "templates" / _TEMPLATE
_STATE_FILE = "deft_state.json"  # = state.records.STATE_FILE; not imported: that module pulls in pydantic
# The render time is substituted after the cached page is read, so an unchanged run reuses its page.
_NOW_TOKEN = "@@deftpipe-report-generated-at@@"


@lru_cache(maxsize=4)
def _template(bytecode_dir: str | None = None) -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATE_PATH.parent)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        bytecode_cache=jinja2.FileSystemBytecodeCache(bytecode_dir) if bytecode_dir else None,
    )
    return env.get_template(_TEMPLATE)


def _render_page(view: dict[str, Any], cache: ReportCache) -> str:
    bytecode_dir: str | None = None
    if cache.enabled:
        try:
            (cache.dir / "jinja").mkdir(parents=True, exist_ok=True)
            bytecode_dir = str(cache.dir / "jinja")
        except OSError:
            bytecode_dir = None
    return str(_template(bytecode_dir).render(**view))


def build_report_html(results_dir: Path | str, *, use_cache: bool = True) -> str:
    """The report HTML as a string (nothing written except the figure cache).

    Raises:
        ContractError: no `deft_state.json` in `results_dir`, or a malformed one.
    """
    rd = Path(results_dir).expanduser().resolve()
    cache = ReportCache(rd, enabled=use_cache and not env_disabled())
    doc = cache.derived("state", rd / _STATE_FILE, lambda _p: load_doc(rd)[1]) if cache.enabled else None
    if doc is None:  # no cache, or no state file: load_doc validates (and raises the ContractError)
        rd, doc = load_doc(rd)
    view = build_view(doc, rd, cache, generated_at=_NOW_TOKEN)
    html = cache.page(view, lambda: _render_page(view, cache), template=_TEMPLATE_PATH)
    cache.flush()
    return html.replace(_NOW_TOKEN, datetime.now(timezone.utc).isoformat(timespec="seconds"))


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
    write_text_atomic(target, html, fault_site="report_render")
    return target
