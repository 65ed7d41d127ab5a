"""Read-only validation of a whole workspace (SPEC §2): spec, CSVs, image files, overlaps.

Collects every problem as one line naming file, row and fix, so a user fixes
them all in one pass; never writes anything and never imports torch.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from deftpipe.errors import ConfigError, ContractError
from deftpipe.workspace.content_hash import content_hashes
from deftpipe.workspace.layout import Workspace
from deftpipe.workspace.paths import ImageLocator
from deftpipe.workspace.spec import ImageSettings, load_spec
from deftpipe.workspace.tables import read_samples_csv, row_keys

MAX_LISTED_ROWS = 20


@dataclass
class TableReport:
    name: str
    path: Path
    n_rows: int = 0
    labels: dict[str, int] = field(default_factory=dict)
    n_missing_files: int = 0
    n_bad_images: int = 0


@dataclass
class WorkspaceReport:
    workspace: Path
    lights: tuple[str, ...] = ()
    image_size: tuple[int, int] | None = None
    tables: list[TableReport] = field(default_factory=list)
    overlaps: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    spec: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "workspace": str(self.workspace),
            "lights": list(self.lights),
            "image_size": list(self.image_size) if self.image_size else None,
            "tables": [
                {"name": t.name, "path": str(t.path), "rows": t.n_rows, "labels": t.labels,
                 "missing_files": t.n_missing_files, "bad_images": t.n_bad_images}
                for t in self.tables
            ],
            "overlaps": self.overlaps,
            "problems": self.problems,
        }


def _rows_list(indices: Sequence[int]) -> str:
    lines = [str(int(i) + 2) for i in indices[:MAX_LISTED_ROWS]]
    more = f" and {len(indices) - MAX_LISTED_ROWS} more" if len(indices) > MAX_LISTED_ROWS else ""
    return ", ".join(lines) + more


# A folder referenced by at least this many paths is listed once instead of stat-ing each file.
_LIST_FOLDER_FROM = 32


def _file_exists_checker() -> Callable[[str], bool]:
    """`os.path.isfile`, answered from one directory listing once a folder is busy (a million rows cost seconds)."""
    hits: dict[str, int] = {}
    listings: dict[str, set[str] | None] = {}

    def listing(folder: str) -> set[str] | None:
        if folder not in listings:
            try:
                with os.scandir(folder or "/") as it:
                    listings[folder] = {e.name for e in it if e.is_file()}  # is_file follows symlinks, like isfile
            except FileNotFoundError:
                listings[folder] = set()
            except OSError:
                listings[folder] = None  # unreadable listing: fall back to stat per file
        return listings[folder]

    def exists(path: str) -> bool:
        folder, _, name = path.rpartition("/")
        n = hits[folder] = hits.get(folder, 0) + 1
        if n > _LIST_FOLDER_FROM:
            names = listing(folder)
            if names is not None:
                return name in names
        return os.path.isfile(path)

    return exists


def find_missing(paths_per_light: Sequence[Sequence[str]]) -> list[int]:
    """Row indices whose file (any light) does not exist."""
    n = len(paths_per_light[0]) if paths_per_light else 0
    missing: list[int] = []
    exists = _file_exists_checker()
    for i in range(n):
        for light_paths in paths_per_light:
            if not exists(light_paths[i]):
                missing.append(i)
                break
    return missing


def _check_images(rows: pd.DataFrame, locator: ImageLocator, settings: ImageSettings, *, name: str,
                  problems: list[str]) -> int:
    """Decode every test/golden file once; report corrupt, mis-sized and mismatched pairs. Returns bad count."""
    from deftpipe.workspace.images import read_stack

    tests, goldens = locator.frame_paths(rows, csv_name=name)
    size = (settings.height, settings.width)

    def check(i: int) -> str | None:
        where = f"{name} line {i + 2}"
        t_paths = [tests[k][i] for k in range(len(tests))]
        g_paths = [goldens[k][i] for k in range(len(goldens))]
        try:
            for p in t_paths + g_paths:
                locator.check_file_confined(p, where=where)
            t = read_stack(t_paths, grayscale=settings.grayscale, size=None, where=where)
            g = read_stack(g_paths, grayscale=settings.grayscale, size=None, where=where)
        except ContractError as exc:
            return exc.message
        if t.shape != g.shape:
            return (f"{where}: test image is {t.shape[2]}x{t.shape[1]} but golden is {g.shape[2]}x{g.shape[1]}; "
                    "test and golden must have the same size.")
        if t.shape[1:] != size:
            return (f"{where}: images are {t.shape[2]}x{t.shape[1]} but the spec says {size[1]}x{size[0]} "
                    "(dataset.classify.image_width/height); fix the spec or resize the images.")
        return None

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(check, range(len(rows))))
    bad = [r for r in results if r]
    problems.extend(bad[:MAX_LISTED_ROWS])
    if len(bad) > MAX_LISTED_ROWS:
        problems.append(f"{name}: {len(bad) - MAX_LISTED_ROWS} more bad image(s) not listed.")
    return len(bad)


def validate_workspace(ws_path: Path | str, overrides: Iterable[str] = (), *, decode: bool = True) -> WorkspaceReport:
    """Check everything SPEC §2 promises about a workspace; problems are collected, not raised."""
    ws = Workspace.at(ws_path)
    report = WorkspaceReport(workspace=ws.root)
    if not ws.root.is_dir():
        report.problems.append(f"{ws.root}: workspace folder not found; create one with `deftpipe init {ws_path}`.")
        return report
    try:
        spec = load_spec(ws.spec_path, overrides)
        report.spec = spec
        settings = ImageSettings.from_spec(spec)
    except ConfigError as exc:
        report.problems.append(exc.message)
        return report
    report.lights = settings.lights
    report.image_size = (settings.height, settings.width)
    try:
        locator = ImageLocator(ws.images_dir, ws.root, settings.lights, settings.image_ext)
    except ContractError as exc:
        report.problems.append(exc.message)
        return report

    csvs = [("training", ws.training_csv, True), ("validation", ws.validation_csv, True),
            ("kpi", ws.kpi_csv, True), ("holdout", ws.holdout_csv, False), ("mining_pool", ws.mining_pool_csv, False)]
    loaded: dict[str, pd.DataFrame] = {}
    hashable: set[str] = set()  # tables whose every image was checked confined and decodable
    for name, path, required in csvs:
        if not required and not os.path.lexists(path):
            continue
        rel = path.relative_to(ws.root).as_posix()
        table = TableReport(name=name, path=path)
        report.tables.append(table)
        real = os.path.realpath(path)
        if not (real == str(ws.root) or real.startswith(str(ws.root).rstrip(os.sep) + os.sep)):
            report.problems.append(
                f"{rel}: resolves to '{real}' (through a symlink), outside the workspace '{ws.root}'; "
                "copy the CSV into the workspace instead of linking."
            )
            continue
        try:
            rows = read_samples_csv(path, name=rel)
            tests, goldens = locator.frame_paths(rows, csv_name=rel)  # confinement first: nothing outside is opened
        except ContractError as exc:
            report.problems.append(exc.message)
            continue
        table.n_rows = len(rows)
        table.labels = {str(k): int(v) for k, v in rows["label"].value_counts().sort_index().items()}
        missing = find_missing(tests + goldens)
        table.n_missing_files = len(missing)
        if missing:
            first = missing[0]
            report.problems.append(
                f"{rel}: {len(missing)} row(s) with missing image files (lines {_rows_list(missing)}); "
                f"e.g. line {first + 2} expects '{tests[0][first]}' and its golden/other lights. "
                "Fix input_path/golden_path/object_name or add the images."
            )
            continue
        if decode:
            table.n_bad_images = _check_images(rows, locator, settings, name=rel, problems=report.problems)
        loaded[name] = rows
        if decode and not table.n_bad_images:
            hashable.add(name)

    if "training" in loaded:
        train = loaded["training"]
        train_keys = set(row_keys(train))
        # Only files already checked (confined, decodable) are hashed: a bad table is compared by row key alone.
        train_hashes = set(content_hashes(train, locator)) if "training" in hashable else set()
        for other in ("validation", "kpi", "holdout"):
            if other not in loaded:
                continue
            rows = loaded[other]
            by_key = row_keys(rows).isin(train_keys)
            by_hash = (content_hashes(rows, locator).isin(train_hashes) if train_hashes and other in hashable
                       else by_key & False)
            leak = by_key | by_hash
            report.overlaps[f"training<->{other}"] = int(leak.sum())
            if leak.any():
                idx = list(rows.index[leak])
                report.problems.append(
                    f"{other} CSV: {int(leak.sum())} row(s) also in the training set (same row or identical "
                    f"test-image bytes; lines {_rows_list(idx)}); remove them from one of the two sets."
                )
    return report
