"""`deftpipe init`: an empty workspace with the SPEC §2 tree, the spec template and CSV headers."""
from __future__ import annotations

from pathlib import Path

from deftpipe.errors import ConfigError
from deftpipe.workspace import layout
from deftpipe.workspace.io import write_text_atomic
from deftpipe.workspace.spec import template_text

HEADER = ",".join(layout.REQUIRED_COLUMNS) + "\n"


def init_workspace(path: Path | str) -> Path:
    """Create the folders and template files; refuses to overwrite anything that exists."""
    ws = layout.Workspace.at(path)
    targets = [ws.spec_path, ws.training_csv, ws.validation_csv, ws.kpi_csv]
    existing = [p for p in targets if p.exists()]
    if existing:
        raise ConfigError(
            f"{ws.root}: already has {', '.join(ws.rel(p) for p in existing)}; "
            "init never overwrites files — pick an empty folder."
        )
    for folder in (ws.images_dir, ws.results_root, ws.mining_pool_csv.parent, ws.root / "specs"):
        folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(ws.spec_path, template_text())
    for csv_path in (ws.training_csv, ws.validation_csv, ws.kpi_csv):
        write_text_atomic(csv_path, HEADER)
    return ws.root
