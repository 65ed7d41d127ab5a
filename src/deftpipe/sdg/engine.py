"""The SDG engine: routed RCA gaps + PASS training pairs -> synthetic training rows, images and records.

`generate_sdg` is pure apart from reading images: it plans the budget, picks a PASS
base pair of the same component kind per sample and paints on it in memory.
`write_sdg` stages the files under `iter<N>/` and writes `sdg/SDG_result.csv` and
`sdg/allocation.json`. `run_sdg` does both. Rows come back in workspace-root
coordinates (SPEC §4); goldens are byte copies of the source goldens.
"""
from __future__ import annotations

import difflib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from deftpipe.errors import ConfigError, ContractError
from deftpipe.sdg._sampling import Bases, SdgSample, make_sample, routed_order
from deftpipe.sdg.allocation import allocate, quotas
from deftpipe.sdg.registry import (
    BaseGenerator,
    generators_for,
    generic_generators,
    supported_labels,
)
from deftpipe.ui.progress import ProgressFn
from deftpipe.workspace.io import write_atomic, write_csv_atomic, write_json_atomic
from deftpipe.workspace.labels import normalize_labels
from deftpipe.workspace.layout import PASS_LABEL, REQUIRED_COLUMNS
from deftpipe.workspace.paths import ImageLocator

NAME = "sdg"
RESULT_CSV = "SDG_result.csv"
ALLOCATION_JSON = "allocation.json"
BASES = ("test", "golden")
# Columns of the inputs that describe a model run, not a sample: never copied into new training rows.
_NOT_CARRIED = frozenset({"origin", "source", "siamese_score", "weakness", "is_miss", "is_false_alarm", "filepath"})


@dataclass(frozen=True)
class SdgConfig:
    """SDG settings (state `config.sdg`).

    Attributes:
        num_sdg: samples to generate in all, split over routed labels.
        base: "test" paints on the PASS pair's test image (real misalignment kept);
            "golden" paints on a copy of the golden, used as the test image (TAO's mode).
        seed / iteration: sample k draws from `np.random.default_rng([seed, iteration, k])`.
        generators: names of the enabled generators (None = every registered one).
        generic_fallback: allow the generic CutPaste generator where no specific one fits.
        max_base_tries: PASS pairs tried per sample before giving up on a specific generator.
    """

    num_sdg: int = 20
    base: str = "test"
    seed: int = 0
    iteration: int = 1
    generators: tuple[str, ...] | None = None
    generic_fallback: bool = True
    max_base_tries: int = 4

    def __post_init__(self) -> None:
        if not isinstance(self.num_sdg, int) or self.num_sdg < 0:
            raise ConfigError(f"sdg.num_sdg must be a whole number >= 0, got {self.num_sdg!r}.")
        if self.base not in BASES:
            near = difflib.get_close_matches(str(self.base), BASES, n=1)
            tip = f" Did you mean '{near[0]}'?" if near else ""
            raise ConfigError(f"sdg.base is '{self.base}'; choose one of {list(BASES)}.{tip}")
        if self.iteration < 1:
            raise ConfigError(f"SDG runs inside a DEFT iteration (1, 2, ...); got iteration {self.iteration}.")
        if self.max_base_tries < 1:
            raise ConfigError(f"sdg.max_base_tries must be >= 1, got {self.max_base_tries}.")


@dataclass(frozen=True)
class SdgResult:
    """What the stage produced; `rows` are new training rows in workspace-root coordinates."""

    rows: pd.DataFrame
    allocation: dict[str, Any]
    records: pd.DataFrame
    skipped: bool
    skip_reason: str
    result_csv: Path | None = None
    allocation_json: Path | None = None


@dataclass(frozen=True)
class SdgBatch:
    samples: tuple[SdgSample, ...]
    allocation: dict[str, Any]
    extra_columns: tuple[str, ...]
    skipped: bool = False
    skip_reason: str = ""
    warnings: tuple[str, ...] = field(default_factory=tuple)


def _check_inputs(gaps: pd.DataFrame, train_rows: pd.DataFrame) -> None:
    if "label" not in gaps.columns:
        raise ContractError(
            f"sdg: the routed gaps table lacks column 'label' (has {sorted(map(str, gaps.columns))}); "
            "re-run routing to rewrite sdg_gaps.parquet."
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in train_rows.columns]
    if missing:
        raise ContractError(
            f"sdg: the training CSV lacks column(s) {missing} (has {sorted(map(str, train_rows.columns))}); "
            "pass the training CSV of this iteration."
        )


def _resolve_generators(labels: list[str], cfg: SdgConfig) -> dict[str, list[BaseGenerator]]:
    out: dict[str, list[BaseGenerator]] = {}
    generic = generic_generators(enabled=cfg.generators) if cfg.generic_fallback else []
    for label in labels:
        specific = generators_for(label, enabled=cfg.generators)
        if not specific and (label == PASS_LABEL or not generic):
            known = sorted(supported_labels(enabled=cfg.generators))
            near = difflib.get_close_matches(label, known, n=1)
            tip = f" Did you mean '{near[0]}'?" if near else ""
            fix = ("enable the generic 'cutpaste' fallback, register a generator for it, or route it to mining"
                   if label != PASS_LABEL else "enable the 'nuisance' generator")
            raise ContractError(
                f"sdg: routed label '{label}' has no SDG generator; supported labels: {known}.{tip} "
                f"Fix: {fix}."
            )
        out[label] = specific
    return out


def generate_sdg(gaps: pd.DataFrame, train_rows: pd.DataFrame, *, workspace_root: Path, train_images_dir: Path,
                 lights: tuple[str, ...], image_ext: str, cfg: SdgConfig, progress: ProgressFn | None = None) -> SdgBatch:
    """Plan and paint every sample in memory (reads images, writes nothing); `progress` counts samples painted."""
    workspace_root = Path(workspace_root)
    if len(gaps) == 0:
        return SdgBatch((), {}, (), True, "no RCA gaps were routed to synthetic defects; SDG generated nothing")
    _check_inputs(gaps, train_rows)
    gaps = gaps.copy()
    gaps["label"] = normalize_labels(gaps["label"])
    counts = {str(k): int(v) for k, v in gaps["label"].value_counts().items()}
    labels = sorted(counts, key=lambda lab: (-counts[lab], lab))
    gens = _resolve_generators(labels, cfg)
    if cfg.num_sdg == 0:
        return SdgBatch((), {}, (), True, "sdg.num_sdg is 0; SDG generated nothing")
    alloc = allocate(counts, cfg.num_sdg)
    bases = Bases(train_rows, ImageLocator(Path(train_images_dir), workspace_root, tuple(lights), image_ext))
    if bases.rows.empty:
        found = sorted(set(normalize_labels(train_rows["label"])))
        raise ContractError(
            f"sdg: the training CSV has no PASS rows to paint defects on (labels found: {found}); "
            "SDG needs PASS training pairs as bases — add some, or route these gaps to mining only."
        )
    extra_cols = tuple(c for c in train_rows.columns if c not in REQUIRED_COLUMNS and c not in _NOT_CARRIED)
    generic = generic_generators(enabled=cfg.generators) if cfg.generic_fallback else []
    samples: list[SdgSample] = []
    k, n_samples = 0, sum(alloc.values())
    for label in labels:
        routed = routed_order(gaps[gaps["label"] == label]).reset_index(drop=True)
        for j in range(alloc[label]):
            r = routed.iloc[j % len(routed)]
            samples.append(make_sample(k, label, r, bases, gens[label], generic, workspace_root,
                                        tuple(lights), image_ext, extra_cols, cfg))
            k += 1
            if progress is not None:
                progress(k, n_samples, f"painting {label}")
    allocation = {
        "stage": NAME, "iteration": cfg.iteration, "num_sdg": cfg.num_sdg, "base": cfg.base, "seed": cfg.seed,
        "method": "largest_remainder_min1", "routed_rows": {lab: counts[lab] for lab in labels},
        "quota": {lab: round(q, 6) for lab, q in quotas(counts, cfg.num_sdg).items()},
        "allocation": {lab: alloc[lab] for lab in labels},
        "generators": {lab: sorted({s.record["generator"] for s in samples if s.label == lab}) for lab in labels},
        "generic_samples": sum(1 for s in samples if s.record["generic"]),
        "n_samples": len(samples),
    }
    return SdgBatch(tuple(samples), allocation, extra_cols)


def _check_iter_dir(workspace_root: Path, iter_dir: Path, run_rel: str, iteration: int) -> str:
    """`run_rel/iter<N>` checked against `iter_dir`; returns the iteration folder relative to the workspace."""
    rel = f"{run_rel.strip('/')}/iter{iteration}"
    if Path(iter_dir).name != f"iter{iteration}":
        raise ConfigError(f"sdg: iteration folder '{iter_dir}' does not match iteration {iteration} "
                          f"(expected a folder named iter{iteration}).")
    if (workspace_root / rel).resolve() != Path(iter_dir).resolve():
        raise ConfigError(f"sdg: iter_dir '{iter_dir}' is not '{workspace_root / rel}' (workspace + run_rel "
                          f"'{run_rel}'); the rows would point at the wrong place. Pass matching paths.")
    return rel


def write_sdg(batch: SdgBatch, *, workspace_root: Path, iter_dir: Path, run_rel: str, image_ext: str,
              lights: tuple[str, ...], cfg: SdgConfig, progress: ProgressFn | None = None) -> SdgResult:
    """Stage images under `iter<N>/dataset/images/synthetic_iter<N>_{ng,ok}/` and write the SDG records."""
    workspace_root = Path(workspace_root).resolve()
    n = cfg.iteration
    rel = _check_iter_dir(workspace_root, Path(iter_dir), run_rel, n)
    iter_dir = workspace_root / rel
    ng_rel = f"{rel}/dataset/images/synthetic_iter{n}_ng"
    ok_rel = f"{rel}/dataset/images/synthetic_iter{n}_ok"
    sdg_dir = iter_dir / "sdg"
    # An interrupted earlier attempt must not leave stale samples beside the new ones.
    for stale in (workspace_root / ng_rel, workspace_root / ok_rel, sdg_dir):
        if stale.exists():
            shutil.rmtree(stale)
    columns = [*REQUIRED_COLUMNS, *batch.extra_columns, "origin"]
    if batch.skipped:
        return SdgResult(pd.DataFrame(columns=columns), batch.allocation, pd.DataFrame(), True, batch.skip_reason)
    rows = []
    for i, s in enumerate(batch.samples):
        if progress is not None:
            progress(i + 1, len(batch.samples), "staging images")
        for light, payload, golden in zip(lights, s.test_bytes, s.golden_files):
            write_atomic(workspace_root / ng_rel / f"{s.object_name}_{light}{image_ext}", payload)
            write_atomic(workspace_root / ok_rel / f"{s.object_name}_{light}{image_ext}", Path(golden).read_bytes())
        rows.append({"input_path": ng_rel, "golden_path": ok_rel, "label": s.label, "object_name": s.object_name,
                     **s.extra, "origin": "sdg"})
    table = pd.DataFrame(rows, columns=columns)
    records = pd.DataFrame([{**s.record, "input_path": ng_rel, "golden_path": ok_rel} for s in batch.samples])
    result_csv = sdg_dir / RESULT_CSV
    allocation_json = sdg_dir / ALLOCATION_JSON
    write_csv_atomic(result_csv, records)
    write_json_atomic(allocation_json, batch.allocation)
    return SdgResult(table, batch.allocation, records, False, "", result_csv, allocation_json)


def run_sdg(gaps: pd.DataFrame, train_rows: pd.DataFrame, *, workspace_root: Path, train_images_dir: Path,
            lights: tuple[str, ...], image_ext: str, iter_dir: Path, run_rel: str, cfg: SdgConfig,
            progress: ProgressFn | None = None) -> SdgResult:
    """Generate SDG samples for the routed gaps and stage them for iteration `cfg.iteration`.

    Raises:
        ContractError: a routed label no generator supports, no PASS base pair, unreadable base images.
        ConfigError: `iter_dir` and `run_rel` disagree, or a bad `cfg`.
    """
    _check_iter_dir(Path(workspace_root).resolve(), Path(iter_dir), run_rel, cfg.iteration)
    batch = generate_sdg(gaps, train_rows, workspace_root=workspace_root, train_images_dir=train_images_dir,
                         lights=lights, image_ext=image_ext, cfg=cfg, progress=progress)
    return write_sdg(batch, workspace_root=workspace_root, iter_dir=iter_dir, run_rel=run_rel,
                     image_ext=image_ext, lights=lights, cfg=cfg, progress=progress)
