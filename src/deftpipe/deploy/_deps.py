"""Lazy imports of the optional ONNX packages (`deftpipe[onnx]`) behind a friendly DependencyMissing."""
from __future__ import annotations

from types import ModuleType

from deftpipe.errors import DependencyMissing

INSTALL_HINT = "pip install 'deftpipe[onnx]'  (installs onnx and onnxruntime)"


def _import(name: str, purpose: str) -> ModuleType:
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise DependencyMissing(
            f"{purpose} needs the optional package '{name}', which is not installed ({exc}).",
            hint=INSTALL_HINT,
        ) from exc


def import_onnx(purpose: str) -> ModuleType:
    return _import("onnx", purpose)


def import_onnxruntime(purpose: str) -> ModuleType:
    return _import("onnxruntime", purpose)
