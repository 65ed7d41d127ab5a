"""The interface for heavy generators (e.g. GPU diffusion inpainting), registered like the CPU ones.

A heavy generator never downloads anything: it loads weights from a local path the
user gives, and says it is unavailable (so the engine falls back to the CPU
generators and records why) when the weights, its packages or its device are missing.
Subclasses implement `_load` and `_inpaint`; region proposal, composition and the
outside-the-mask guarantee are done here.

Example:
    class DiffusionInpaint(BaseHeavyGenerator):
        name = "diffusion_inpaint"
        supported_labels = frozenset({"foreign_material", "scratch"})
        required_modules = ("torch", "diffusers")
        def _load(self): ...            # build the pipeline from self.weights_path on self.device
        def _inpaint(self, test, mask, label, rng, params): ...   # (C, H, W) uint8 painted inside mask
    register_generator(DiffusionInpaint(weights_path="/models/inpaint", device="cuda"))
"""
from __future__ import annotations

import importlib.util
from abc import abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from deftpipe.sdg._imaging import compose, dilate, fill_poly_soft, blob_polygon, pick
from deftpipe.sdg._layout import estimate_layout
from deftpipe.sdg.registry import BaseGenerator, GenerateOutput


class BaseHeavyGenerator(BaseGenerator):
    """A generator backed by a large local model; outranks the CPU generators when available."""

    priority: ClassVar[int] = 10
    required_modules: ClassVar[tuple[str, ...]] = ()

    def __init__(self, weights_path: Path | str | None = None, *, device: str = "cpu") -> None:
        self.weights_path = Path(weights_path) if weights_path is not None else None
        self.device = device
        self._model: Any = None

    def available(self) -> tuple[bool, str]:
        if self.weights_path is None or not self.weights_path.exists():
            return False, f"{self.name}: local weights '{self.weights_path}' not found (nothing is downloaded)"
        missing = [m for m in self.required_modules if importlib.util.find_spec(m) is None]
        if missing:
            return False, f"{self.name}: packages {missing} are not installed"
        if self.device.startswith("cuda") and importlib.util.find_spec("torch") is not None:
            import torch  # lazily: the SDG engine itself never needs torch

            if not torch.cuda.is_available():
                return False, f"{self.name}: device '{self.device}' requested but no CUDA device is visible"
        return True, ""

    def propose_region(self, test: np.ndarray, golden: np.ndarray, rng: np.random.Generator,
                       params: dict[str, Any]) -> np.ndarray:
        """Where to paint (bool (H, W)): by default a blob near the part body; override per defect family."""
        layout = estimate_layout(golden, align_to=test)
        h, w = layout.shape
        cx, cy = layout.centre(layout.body)
        cx = float(pick(params, "x", lambda: np.clip(cx + rng.uniform(-0.2, 0.2) * w, 4, w - 5)))
        cy = float(pick(params, "y", lambda: np.clip(cy + rng.uniform(-0.2, 0.2) * h, 4, h - 5)))
        r = float(pick(params, "radius_px", lambda: rng.uniform(0.06, 0.15) * min(h, w)))
        return fill_poly_soft(h, w, blob_polygon(rng, cx, cy, r, r, roughness=0.25)) > 0.5

    def generate(self, test: np.ndarray, golden: np.ndarray, rng: np.random.Generator,
                 params: Mapping[str, Any]) -> GenerateOutput:
        ok, why = self.available()
        if not ok:
            raise RuntimeError(why)
        if self._model is None:
            self._model = self._load()
        used = dict(params)
        label = str(used.pop("label", next(iter(self.supported_labels), "")))
        region = self.propose_region(test, golden, rng, used)
        painted = self._inpaint(test, region, label, rng, used)
        mask = dilate(region, 1)
        used.update(weights_path=str(self.weights_path), device=self.device)
        return compose(test, painted, mask), mask, used

    @abstractmethod
    def _load(self) -> Any:
        """Build the model from `self.weights_path` on `self.device`; must not reach the network."""

    @abstractmethod
    def _inpaint(self, test: np.ndarray, region: np.ndarray, label: str, rng: np.random.Generator,
                 params: dict[str, Any]) -> np.ndarray:
        """Return (C, H, W) uint8 with `label` painted inside `region` (pixels outside are discarded)."""
