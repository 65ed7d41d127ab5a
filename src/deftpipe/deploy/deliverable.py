"""The deliverable of a finished run (SPEC §10): `best_model.json` + its checkpoint, and the facts a scorer needs.

`ModelInfo` is the one description of a deliverable's inputs and operating point; it
is built from a checkpoint (PyTorch path) or from ONNX metadata (onnxruntime path),
and `to_metadata` / `info_from_metadata` round-trip it exactly, so both paths
preprocess and decide identically.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deftpipe.errors import ContractError
from deftpipe.state.best_model import BEST_MODEL_FILE, read_best_model
from deftpipe.workspace.spec import ImageSettings

if TYPE_CHECKING:
    from deftpipe.backends.native.data import Normalization

ONNX_FORMAT = "deftpipe-onnx/1"
SCORE_OUTPUT = "siamese_score"
DECISION_COLUMN = "decision"
DEFECT = "defect"
PASS = "PASS"
# The native backend builds its tolerant difference map with a 1 px tolerance (registration's default).
TOLERANCE = 1
DECISION_RULE = f"'{DEFECT}' if {SCORE_OUTPUT} > threshold + tie_margin (strict) else '{PASS}'"
# SPEC §3 puts the FAR@100 threshold exactly on a KPI (PASS) score. PyTorch and onnxruntime differ by ~1e-7, which
# could push that one row across a strict `>`; deciding at threshold + tie_margin, a margin above that noise but
# below half the gap to the next KPI score, keeps every KPI decision identical to the report's in both runtimes.
TIE_MARGIN_CAP = 1e-5
# Metadata keys every deftpipe ONNX file carries (values are JSON strings); predict needs the first block.
REQUIRED_METADATA: tuple[str, ...] = (
    "format", "threshold", "lights", "image", "normalization", "input_mode", "max_shift_px", "tolerance", "labels",
)


@dataclass(frozen=True)
class ModelInfo:
    """What scoring a pair needs besides the weights: inputs, preprocessing and the operating threshold."""

    threshold: float
    image: ImageSettings
    normalization: Normalization
    input_mode: str
    max_shift_px: int
    tolerance: int
    label_names: tuple[str, ...]
    tie_margin: float = 0.0

    @property
    def decision_threshold(self) -> float:
        """Scores strictly above this are defects (see DECISION_RULE)."""
        return self.threshold + self.tie_margin

    @property
    def has_diff(self) -> bool:
        return self.input_mode == "registered_diff"

    @property
    def n_channels(self) -> int:
        """Channels of `test` and of `golden` (lights × colours); `diff` has twice as many."""
        return len(self.image.lights) * (1 if self.image.grayscale else 3)

    def describe_inputs(self) -> str:
        """One line for error hints: which files and sizes this model takes."""
        colour = "grey" if self.image.grayscale else "colour"
        return (f"this model takes {self.image.width}x{self.image.height} {colour} {self.image.image_ext} images, "
                f"one per light in the order {list(self.image.lights)}")

    def input_specs(self) -> list[dict[str, Any]]:
        """The ONNX graph inputs, documented (float32 NCHW, normalized as `normalization` says)."""
        h, w, c = self.image.height, self.image.width, self.n_channels
        specs = [
            {"name": "test", "shape": ["batch", c, h, w], "dtype": "float32",
             "content": "test image, channels = lights in input order; (x/255 - mean[c]) / std[c]"},
            {"name": "golden", "shape": ["batch", c, h, w], "dtype": "float32",
             "content": ("golden image registered to the test (integer shift within ±max_shift_px)"
                         if self.has_diff else "golden image") + "; (x/255 - mean[c]) / std[c]"},
        ]
        if self.has_diff:
            specs.append({"name": "diff", "shape": ["batch", 2 * c, h, w], "dtype": "float32",
                          "content": "tolerant difference maps (one per channel), then plain |test - registered "
                                     "golden| maps; d/255/std[c]"})
        return specs


def info_from_checkpoint(loaded: Any, *, threshold: float, tie_margin: float = 0.0) -> ModelInfo:
    """ModelInfo of a `deftpipe.backends.native.infer.LoadedModel` at the run's operating threshold."""
    from deftpipe.backends.native.model import LABEL_NAMES

    img = ImageSettings.from_spec(loaded.spec)
    info = ModelInfo(float(threshold), img, loaded.norm, loaded.arch.input_mode, int(loaded.max_shift_px),
                     TOLERANCE, tuple(LABEL_NAMES), float(tie_margin))
    if info.n_channels != loaded.arch.in_channels:
        raise ContractError(
            f"checkpoint '{loaded.path}': its spec's input_map {list(img.lights)} gives {info.n_channels} channel(s) "
            f"but its weights take {loaded.arch.in_channels}; the checkpoint is inconsistent — re-train it."
        )
    return info


def to_metadata(info: ModelInfo, extra: Mapping[str, Any]) -> dict[str, str]:
    """ONNX `metadata_props`: every value a JSON string (the `info` fields plus `extra` provenance)."""
    img = info.image
    doc: dict[str, Any] = {
        "format": ONNX_FORMAT,
        "threshold": info.threshold,
        "tie_margin": info.tie_margin,
        "decision_rule": DECISION_RULE,
        "lights": list(img.lights),
        "input_map": {light: i for i, light in enumerate(img.lights)},
        "image": {"width": img.width, "height": img.height, "image_ext": img.image_ext, "grayscale": img.grayscale},
        "normalization": info.normalization.to_dict(),
        "input_mode": info.input_mode,
        "max_shift_px": info.max_shift_px,
        "tolerance": info.tolerance,
        "labels": list(info.label_names),
        "inputs": info.input_specs(),
        "output": {"name": SCORE_OUTPUT, "shape": ["batch"], "dtype": "float32",
                   "content": "logit(defect) - logit(PASS); higher = more likely defect"},
        **extra,
    }
    return {key: json.dumps(value, allow_nan=False) for key, value in doc.items()}


def parse_metadata(props: Mapping[str, str], *, source: str) -> dict[str, Any]:
    """Decode JSON-string metadata; raises ContractError when it is not a deftpipe export."""
    missing = [k for k in REQUIRED_METADATA if k not in props]
    if missing:
        raise ContractError(
            f"'{source}' is not a deftpipe ONNX export (metadata lacks {missing}); "
            "create it with `deftpipe export RESULTS_DIR --onnx OUT.onnx`."
        )
    out: dict[str, Any] = {}
    for key, text in props.items():
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text  # a foreign key someone added by hand; deftpipe's own keys are always JSON
    if out["format"] != ONNX_FORMAT:
        raise ContractError(f"'{source}': metadata format {out['format']!r} is not {ONNX_FORMAT!r}; "
                            "re-export it with this deftpipe version.")
    return out


def info_from_metadata(meta: Mapping[str, Any]) -> ModelInfo:
    from deftpipe.backends.native.data import Normalization

    if int(meta["tolerance"]) != TOLERANCE:
        raise ContractError(f"ONNX metadata: tolerance {meta['tolerance']} is not supported (this deftpipe builds "
                            f"difference maps with tolerance {TOLERANCE}); re-export with this deftpipe version.")
    img = meta["image"]
    settings = ImageSettings(lights=tuple(meta["lights"]), image_ext=str(img["image_ext"]), width=int(img["width"]),
                             height=int(img["height"]), grayscale=bool(img["grayscale"]))
    return ModelInfo(float(meta["threshold"]), settings, Normalization.from_dict(meta["normalization"]),
                     str(meta["input_mode"]), int(meta["max_shift_px"]), int(meta["tolerance"]),
                     tuple(meta["labels"]), float(meta.get("tie_margin", 0.0)))  # 0: exports before the margin


@dataclass(frozen=True)
class Deliverable:
    """A finished run's `best_model.json` (validated, and as written) and where it lives."""

    results_dir: Path
    best_model: dict[str, Any]

    @property
    def checkpoint(self) -> Path:
        return Path(self.best_model["checkpoint"])

    @property
    def threshold(self) -> float:
        return float(self.best_model["threshold"])

    def tie_margin(self) -> float:
        """min(TIE_MARGIN_CAP, half the gap from the threshold to the next KPI score above it).

        The KPI scores are the deliverable iteration's inference CSV (from deft_state.json); without
        it the cap is used.
        """
        scores = self._kpi_scores()
        above = [s for s in scores if s > self.threshold]
        if not above:
            return TIE_MARGIN_CAP
        nxt = min(above)
        margin = min(TIE_MARGIN_CAP, (nxt - self.threshold) / 2)
        # A gap of a few ulps (the threshold "just below the lowest score") can round threshold + margin up to
        # the next score itself; then no margin fits and the strict rule is used as it is.
        return margin if self.threshold + margin < nxt else 0.0

    def _kpi_scores(self) -> list[float]:
        import csv

        state_path = self.results_dir / "deft_state.json"
        try:
            state = json.loads(state_path.read_text(encoding="utf-8"))
            rec = state["iterations"][self.best_model["iteration"]]
            path = Path(rec["inference_csv"])
            with path.open(newline="", encoding="utf-8") as fh:
                return [float(row[SCORE_OUTPUT]) for row in csv.DictReader(fh)]
        except (OSError, KeyError, TypeError, ValueError):
            return []


def load_deliverable(results_dir: Path | str) -> Deliverable:
    """Read `RESULTS_DIR/best_model.json`.

    Raises:
        ContractError: the folder or its best_model.json is missing or breaks the contract.
    """
    rd = Path(results_dir).expanduser().resolve()
    if not rd.is_dir():
        raise ContractError(f"RESULTS_DIR '{results_dir}' is not a folder; give the run directory "
                            "(e.g. WS/results/run_<UTC>) that holds best_model.json.")
    path = rd / BEST_MODEL_FILE
    if not path.is_file():
        raise ContractError(
            f"'{rd}' has no {BEST_MODEL_FILE}: it is not a finished run (the file is written when the run ends, at "
            "loop_stop).",
            hint=f"Finish the run first (`deftpipe deft --resume {rd}`), or point at the run directory that holds "
                 f"{BEST_MODEL_FILE}.",
        )
    read_best_model(path)  # validates keys and values
    return Deliverable(rd, json.loads(path.read_text(encoding="utf-8")))


def training_csv(deliverable: Deliverable, checkpoint_spec: Mapping[str, Any] | None = None) -> Path | None:
    """The training CSV the deliverable was trained on: the training spec's `train_dataset.csv_path`.

    Relative paths resolve against the workspace root (`images_dir` of best_model.json); the
    checkpoint's own spec is the fallback when the training spec file is gone.
    """
    import yaml

    from deftpipe.workspace.spec import get

    specs: list[Mapping[str, Any]] = []
    spec_file = Path(deliverable.best_model["training_spec"])
    if spec_file.is_file():
        loaded = yaml.safe_load(spec_file.read_text(encoding="utf-8"))
        if isinstance(loaded, Mapping):
            specs.append(loaded)
    if checkpoint_spec:
        specs.append(checkpoint_spec)
    for spec in specs:
        value = get(spec, "dataset.classify.train_dataset.csv_path")
        if value:
            p = Path(str(value)).expanduser()
            return p if p.is_absolute() else Path(deliverable.best_model["images_dir"]) / p
    return None
