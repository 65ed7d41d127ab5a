"""Scorers for `deftpipe predict`: a run's PyTorch checkpoint or an exported ONNX file, behind one interface.

Both take the same normalized float batches (built by the native backend's `BatchMaker`)
and return `siamese_score` = logit(defect) − logit(PASS) as float32, so the only
difference between the two paths is the runtime that evaluates the graph.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from deftpipe.deploy.deliverable import (
    ModelInfo,
    info_from_checkpoint,
    info_from_metadata,
    load_deliverable,
    parse_metadata,
)
from deftpipe.errors import ConfigError, ContractError

if TYPE_CHECKING:
    import numpy as np
    import torch


class Scorer(Protocol):
    """Scores normalized batches; `info` says how to build them and where the threshold sits."""

    info: ModelInfo
    kind: str          # "pytorch" or "onnx"
    source: Path       # RESULTS_DIR or the .onnx file
    device: torch.device

    def score(self, test: torch.Tensor, golden: torch.Tensor, diff: torch.Tensor | None) -> np.ndarray: ...


@dataclass
class TorchScorer:
    """The run's deliverable checkpoint, evaluated by PyTorch (`kind` = "pytorch")."""

    info: ModelInfo
    model: Any
    source: Path
    device: torch.device
    kind: str = "pytorch"

    def score(self, test: torch.Tensor, golden: torch.Tensor, diff: torch.Tensor | None) -> np.ndarray:
        import torch

        from deftpipe.backends.native.model import scores_from_logits

        with torch.no_grad():
            return scores_from_logits(self.model(test, golden, diff).float()).cpu().numpy()


@dataclass
class OnnxScorer:
    """An exported ONNX file evaluated by onnxruntime (`kind` = "onnx"); `metadata` is its decoded metadata."""

    info: ModelInfo
    session: Any
    metadata: dict[str, Any]
    source: Path
    device: torch.device
    kind: str = "onnx"

    def score(self, test: torch.Tensor, golden: torch.Tensor, diff: torch.Tensor | None) -> np.ndarray:
        feeds = {"test": test.cpu().numpy(), "golden": golden.cpu().numpy()}
        if diff is not None:
            feeds["diff"] = diff.cpu().numpy()
        return self.session.run(["siamese_score"], feeds)[0]


def load_torch_scorer(results_dir: Path | str, *, device: str = "auto") -> TorchScorer:
    """The deliverable of RESULTS_DIR at its stored threshold."""
    from deftpipe.backends.native.infer import load_model
    from deftpipe.backends.native.train import resolve_device

    deliverable = load_deliverable(results_dir)
    dev = resolve_device(device)
    loaded = load_model(deliverable.checkpoint, device=dev)
    info = info_from_checkpoint(loaded, threshold=deliverable.threshold, tie_margin=deliverable.tie_margin())
    return TorchScorer(info, loaded.model, deliverable.results_dir, dev)


def onnx_session(model: bytes | str, *, device: str = "cpu", purpose: str = "predict") -> Any:
    """An onnxruntime session: CPU for "cpu"; the CUDA provider first for "auto" (when present) and "cuda[:N]"."""
    from deftpipe.deploy._deps import import_onnxruntime

    ort = import_onnxruntime(purpose)
    providers = ["CPUExecutionProvider"]
    if device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    elif device.startswith("cuda"):
        raise ConfigError(f"--device {device}: onnxruntime has no CUDA provider here "
                          f"(available: {ort.get_available_providers()}); use --device cpu or auto.")
    return ort.InferenceSession(model, providers=providers)


def read_onnx_metadata(path: Path | str) -> dict[str, Any]:
    """The decoded deftpipe metadata of an exported ONNX file (JSON values parsed)."""
    session = _open_onnx(Path(path), device="cpu")
    return parse_metadata(session.get_modelmeta().custom_metadata_map, source=str(path))


def _open_onnx(path: Path, *, device: str) -> Any:
    if not path.is_file():
        raise ContractError(f"ONNX model '{path}' not found; create it with "
                            f"`deftpipe export RESULTS_DIR --onnx {path}`.")
    try:
        return onnx_session(str(path), device=device)
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
        if isinstance(exc, ConfigError):
            raise
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ContractError(f"ONNX model '{path}' cannot be loaded by onnxruntime ({first}); "
                            "re-export it with `deftpipe export`.") from exc


def load_onnx_scorer(path: Path | str, *, device: str = "auto") -> OnnxScorer:
    import torch

    p = Path(path).expanduser().resolve()
    session = _open_onnx(p, device=device)
    meta = parse_metadata(session.get_modelmeta().custom_metadata_map, source=str(p))
    return OnnxScorer(info_from_metadata(meta), session, meta, p, torch.device("cpu"))


def load_scorer(model: Path | str, *, device: str = "auto") -> TorchScorer | OnnxScorer:
    """RESULTS_DIR (a folder with best_model.json) -> PyTorch; a `.onnx` file -> onnxruntime.

    Raises:
        ConfigError: `model` is neither.
    """
    p = Path(model).expanduser()
    if p.is_dir():
        return load_torch_scorer(p, device=device)
    if p.suffix.lower() == ".onnx":
        return load_onnx_scorer(p, device=device)
    if not p.exists():
        raise ConfigError(f"--model '{model}' does not exist; give a run directory (RESULTS_DIR with "
                          "best_model.json) or an exported .onnx file.")
    raise ConfigError(f"--model '{model}' is neither a run directory nor a .onnx file; give RESULTS_DIR "
                      "(with best_model.json) or the file written by `deftpipe export`.")
