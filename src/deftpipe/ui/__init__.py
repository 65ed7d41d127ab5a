"""Terminal helpers shared by commands and stages (progress reporting)."""
from __future__ import annotations

from deftpipe.ui.progress import ProgressFn, make_progress, progress_reporter

__all__ = ["ProgressFn", "make_progress", "progress_reporter"]
