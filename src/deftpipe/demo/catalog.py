"""What the synthetic AOI demo dataset contains: lights, labels, component kinds, scales and split plans.

Everything here is data; the generator reads it and nothing else decides sizes or
label mixes. The planted gaps (labels absent or very rare in base training but
present in KPI, holdout and the mining pool) are declared here too.
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from deftpipe.errors import ConfigError
from deftpipe.workspace.layout import (
    HOLDOUT_CSV_REL,
    KPI_CSV_REL,
    MINING_POOL_CSV_REL,
    PASS_LABEL,
    TRAINING_CSV_REL,
    VALIDATION_CSV_REL,
)

LIGHTS: tuple[str, ...] = ("LightA", "LightB")  # LightA: diffuse top light; LightB: low-angle ring light
IMAGE_EXT = ".png"
COMPONENT_KINDS: tuple[str, ...] = ("chip_resistor", "capacitor", "sot", "ic")
KIND_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {"chip_resistor": 0.33, "capacitor": 0.33, "sot": 0.17, "ic": 0.17}
)
DEFECT_LABELS: tuple[str, ...] = (
    "missing", "shift", "tombstone", "bridge", "excess_solder", "insufficient_solder", "foreign_material", "scratch",
)
LABELS: tuple[str, ...] = (PASS_LABEL, *DEFECT_LABELS)
# Labels the base training data lacks (or nearly lacks): what a data-improvement loop should find.
GAP_LABELS: tuple[str, ...] = ("bridge", "foreign_material")
# A defect only occurs on kinds where it is physically possible (a two-terminal chip cannot bridge its own leads,
# a multi-lead package does not tombstone).
ALLOWED_KINDS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    PASS_LABEL: COMPONENT_KINDS,
    "missing": COMPONENT_KINDS,
    "shift": COMPONENT_KINDS,
    "tombstone": ("chip_resistor", "capacitor"),
    "bridge": ("sot", "ic"),
    "excess_solder": COMPONENT_KINDS,
    "insufficient_solder": COMPONENT_KINDS,
    "foreign_material": COMPONENT_KINDS,
    "scratch": COMPONENT_KINDS,
})
REFDES_PREFIX: Mapping[str, str] = MappingProxyType({"chip_resistor": "R", "capacitor": "C", "sot": "Q", "ic": "U"})
ROWS_PER_BOARD = 20


@dataclass(frozen=True)
class SplitPlan:
    """One CSV of the demo workspace: where it goes, how many defects, and their mix.

    `defect_weights` are relative; `min_one` labels get at least one row whenever the
    split has at least as many defect rows as such labels.
    """

    name: str
    split_id: int
    csv_rel: Path
    defect_share: float
    defect_weights: Mapping[str, float]
    min_one: tuple[str, ...] = ()


_BASE_MIX = MappingProxyType({
    "missing": 1.0, "shift": 1.0, "tombstone": 1.0, "excess_solder": 1.0, "insufficient_solder": 1.0,
    "scratch": 1.0, "bridge": 0.0, "foreign_material": 0.15,
})
_KPI_MIX = MappingProxyType({label: 1.0 for label in DEFECT_LABELS})
_POOL_MIX = MappingProxyType({
    "missing": 0.6, "shift": 0.6, "tombstone": 0.6, "excess_solder": 0.6, "insufficient_solder": 0.6,
    "scratch": 0.6, "bridge": 3.0, "foreign_material": 3.0,
})
SPLITS: tuple[SplitPlan, ...] = (
    SplitPlan("train", 1, TRAINING_CSV_REL, 0.10, _BASE_MIX),
    SplitPlan("val", 2, VALIDATION_CSV_REL, 0.10, _BASE_MIX),
    SplitPlan("kpi", 3, KPI_CSV_REL, 0.11, _KPI_MIX, GAP_LABELS),
    SplitPlan("holdout", 4, HOLDOUT_CSV_REL, 0.11, _KPI_MIX, GAP_LABELS),
    SplitPlan("pool", 5, MINING_POOL_CSV_REL, 0.14, _POOL_MIX, GAP_LABELS),
)


@dataclass(frozen=True)
class ScaleConfig:
    """Pairs per split, image size and training schedule of one demo scale (holdout has the KPI set's size)."""

    name: str
    image_size: int
    n_train: int
    n_val: int
    n_kpi: int
    n_pool: int
    num_epochs: int | None = None  # train.num_epochs of the generated spec; None keeps the template's

    def n_rows(self, split: str) -> int:
        return {"train": self.n_train, "val": self.n_val, "kpi": self.n_kpi, "holdout": self.n_kpi,
                "pool": self.n_pool}[split]

    @property
    def n_total(self) -> int:
        return sum(self.n_rows(plan.name) for plan in SPLITS)


SCALES: Mapping[str, ScaleConfig] = MappingProxyType({
    "tiny": ScaleConfig("tiny", 32, 120, 40, 60, 60),
    "small": ScaleConfig("small", 64, 400, 120, 200, 300),
    # 2 epochs: `make demo` (5 + 5 trials, 2 DEFT iterations) must finish in 8 minutes on 2 CPU cores (SPEC §7).
    # One run costs ~471 s of single-thread CPU at 2 epochs, ~637 s at 3 (README, "The medium demo").
    "medium": ScaleConfig("medium", 64, 1500, 400, 600, 2000, num_epochs=2),
    "large": ScaleConfig("large", 64, 15000, 4000, 6000, 20000),
})


def resolve_scale(name: str) -> ScaleConfig:
    """The ScaleConfig called `name`; unknown names list the choices and suggest the closest."""
    if name in SCALES:
        return SCALES[name]
    near = difflib.get_close_matches(str(name), list(SCALES), n=1)
    tip = f" Did you mean '{near[0]}'?" if near else ""
    raise ConfigError(f"--scale '{name}' is not a demo scale; choose one of {list(SCALES)}.{tip}")
