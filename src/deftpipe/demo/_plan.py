"""Row tables of the demo splits and the image writer that renders them.

Which label, kind and board each row gets is drawn from RNGs keyed by
(seed, split), and every image from an RNG keyed by (seed, split, row index), so
the output is byte-identical for a seed whatever the number of worker processes.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from deftpipe.demo.catalog import (
    ALLOWED_KINDS,
    DEFECT_LABELS,
    KIND_WEIGHTS,
    LIGHTS,
    REFDES_PREFIX,
    ROWS_PER_BOARD,
    ScaleConfig,
    SplitPlan,
)
from deftpipe.demo.synth import BoardStyle, sample_board_style, synthesize_pair
from deftpipe.errors import ContractError
from deftpipe.workspace.layout import PASS_LABEL

CSV_COLUMNS: tuple[str, ...] = ("input_path", "golden_path", "label", "object_name", "boardname", "component_kind")
# Salts that keep the split-level RNG streams apart from the per-row ones.
_LABEL_SALT, _KIND_SALT, _STYLE_SALT = 1_000_001, 1_000_002, 1_000_003


def allocate_labels(n_rows: int, plan: SplitPlan) -> dict[str, int]:
    """Rows per label: round(n * defect_share) defects split by weight (largest remainder), the rest PASS."""
    n_defect = int(round(n_rows * plan.defect_share))
    weights = {label: float(plan.defect_weights.get(label, 0.0)) for label in DEFECT_LABELS}
    counts = {label: 0 for label in DEFECT_LABELS}
    budget = n_defect
    if n_defect >= len(plan.min_one):
        for label in plan.min_one:
            counts[label] = 1
        budget -= len(plan.min_one)
    total = sum(weights.values())
    if budget > 0 and total > 0:
        quotas = {label: budget * w / total for label, w in weights.items()}
        floors = {label: math.floor(q) for label, q in quotas.items()}
        left = budget - sum(floors.values())
        # Largest remainder first; label order breaks ties so the allocation never depends on dict order.
        order = sorted(DEFECT_LABELS, key=lambda lb: (-(quotas[lb] - floors[lb]), DEFECT_LABELS.index(lb)))
        for label in DEFECT_LABELS:
            counts[label] += floors[label]
        for label in order[:left]:
            counts[label] += 1
    out = {PASS_LABEL: n_rows - sum(counts.values())}
    out.update(counts)
    return out


def split_table(scale: ScaleConfig, plan: SplitPlan, seed: int) -> pd.DataFrame:
    """The CSV rows of one split (columns CSV_COLUMNS), boards named after the split so no board is shared."""
    n = scale.n_rows(plan.name)
    counts = allocate_labels(n, plan)
    labels = np.array([label for label, k in counts.items() for _ in range(k)], dtype=object)
    np.random.default_rng([seed, plan.split_id, _LABEL_SALT]).shuffle(labels)
    kind_rng = np.random.default_rng([seed, plan.split_id, _KIND_SALT])
    rows = []
    for i, label in enumerate(labels):
        kinds = ALLOWED_KINDS[str(label)]
        p = np.array([KIND_WEIGHTS[k] for k in kinds])
        kind = kinds[int(kind_rng.choice(len(kinds), p=p / p.sum()))]
        board = f"{plan.name}_board{i // ROWS_PER_BOARD + 1:03d}"
        rows.append({
            "input_path": f"{plan.name}/{board}/test",
            "golden_path": f"{plan.name}/{board}/golden",
            "label": str(label),
            "object_name": f"{REFDES_PREFIX[kind]}{1001 + i % ROWS_PER_BOARD}@1",
            "boardname": board,
            "component_kind": kind,
        })
    return pd.DataFrame(rows, columns=list(CSV_COLUMNS))


@dataclass(frozen=True)
class RenderJob:
    """Everything a worker needs to render and write one row's images."""

    images_dir: str
    input_path: str
    golden_path: str
    object_name: str
    label: str
    kind: str
    size: int
    seed: tuple[int, ...]
    style_seed: tuple[int, ...]


def render_jobs(frame: pd.DataFrame, *, images_dir: Path, size: int, seed: int, split_id: int) -> list[RenderJob]:
    jobs = []
    for i, row in enumerate(frame.itertuples(index=False)):
        board = i // ROWS_PER_BOARD
        jobs.append(RenderJob(str(images_dir), row.input_path, row.golden_path, row.object_name, row.label,
                              row.component_kind, size, (seed, split_id, i), (seed, split_id, _STYLE_SALT, board)))
    return jobs


def _write_png(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise ContractError(f"could not write image '{path}'; check that the disk has space and the folder is writable.")


def run_jobs(jobs: Iterable[RenderJob]) -> int:
    """Render and write each job's test and golden images for every light; returns the number of rows done."""
    done = 0
    styles: dict[tuple[int, ...], BoardStyle] = {}
    made: set[Path] = set()
    for job in jobs:
        style = styles.get(job.style_seed)
        if style is None:
            style = styles[job.style_seed] = sample_board_style(np.random.default_rng(list(job.style_seed)))
        pair = synthesize_pair(job.label, job.kind, size=job.size, seed=job.seed, style=style)
        root = Path(job.images_dir)
        for folder, stack in ((job.input_path, pair.test), (job.golden_path, pair.golden)):
            target = root / folder
            if target not in made:
                target.mkdir(parents=True, exist_ok=True)
                made.add(target)
            for k, light in enumerate(LIGHTS):
                _write_png(target / f"{job.object_name}_{light}.png", stack[k])
        done += 1
    return done
