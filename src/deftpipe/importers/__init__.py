"""Dataset importers: turn public inspection datasets into deftpipe workspaces (SPEC §2)."""
from __future__ import annotations

from deftpipe.importers.deeppcb import ImportSummary, import_deeppcb

__all__ = ["ImportSummary", "import_deeppcb"]
