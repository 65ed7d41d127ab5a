"""Where things live inside a workspace (SPEC §2) and inside a run directory (SPEC §4)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SPEC_REL = Path("specs/baseline_spec.yaml")
TRAINING_CSV_REL = Path("train/base/training_set.csv")
VALIDATION_CSV_REL = Path("train/base/validation_set.csv")
KPI_CSV_REL = Path("kpi/testing_set.csv")
HOLDOUT_CSV_REL = Path("kpi/holdout_set.csv")
MINING_POOL_CSV_REL = Path("augmentation/mining_pool/mining_pool.csv")
IMAGES_REL = Path("images")
RESULTS_REL = Path("results")

REQUIRED_COLUMNS: tuple[str, ...] = ("input_path", "golden_path", "label", "object_name")
PASS_LABEL = "PASS"


@dataclass(frozen=True)
class Workspace:
    """An absolute workspace root and the standard locations under it.

    Example:
        ws = Workspace.at("demo_ws"); ws.training_csv  # .../demo_ws/train/base/training_set.csv
    """

    root: Path

    @classmethod
    def at(cls, path: Path | str) -> Workspace:
        return cls(Path(path).expanduser().resolve())

    @property
    def spec_path(self) -> Path:
        return self.root / SPEC_REL

    @property
    def images_dir(self) -> Path:
        return self.root / IMAGES_REL

    @property
    def training_csv(self) -> Path:
        return self.root / TRAINING_CSV_REL

    @property
    def validation_csv(self) -> Path:
        return self.root / VALIDATION_CSV_REL

    @property
    def kpi_csv(self) -> Path:
        return self.root / KPI_CSV_REL

    @property
    def holdout_csv(self) -> Path:
        return self.root / HOLDOUT_CSV_REL

    @property
    def mining_pool_csv(self) -> Path:
        return self.root / MINING_POOL_CSV_REL

    @property
    def results_root(self) -> Path:
        return self.root / RESULTS_REL

    def rel(self, path: Path | str) -> str:
        """`path` relative to the workspace root, POSIX style."""
        return Path(path).resolve().relative_to(self.root).as_posix()
