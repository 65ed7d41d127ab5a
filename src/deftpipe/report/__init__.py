"""The run report and status: read-only views of a run directory (HTML report, status summary).

Example:
    from deftpipe.report import render_report, run_status
    render_report(results_dir)              # -> RESULTS_DIR/DEFT_Loop_Report.html
    run_status(results_dir)["current_stage"]  # {'iter': 'iter2', 'stage': 'sdg'} or None
"""
from __future__ import annotations

from deftpipe.report.render import REPORT_FILE, build_report_html, render_report
from deftpipe.report.status import run_status

__all__ = ["REPORT_FILE", "build_report_html", "render_report", "run_status"]
