"""The deliverable in use (SPEC §10): ONNX export with its operating point, and `predict` on new pairs.

Example:
    from deftpipe.deploy import export_onnx, predict
    export_onnx("ws/results/run_20250101_120000", "model.onnx")
    predict("model.onnx", pairs_dir="new_pairs", out_csv="predictions.csv")

torch, onnx and onnxruntime are imported when a function runs, so importing this package stays cheap.
"""
from __future__ import annotations

from deftpipe.deploy.export import ExportResult, export_onnx
from deftpipe.deploy.predict import PredictResult, predict
from deftpipe.deploy.scorers import read_onnx_metadata

__all__ = ["ExportResult", "PredictResult", "export_onnx", "predict", "read_onnx_metadata"]
