"""Metric contract, FAR math, evaluators and the shipped zero-shot scorer (SPEC §3, §8)."""
from __future__ import annotations

from deftpipe.metrics.contract import Constraint, MetricContract, MetricResult, default_far_contract, select_best
from deftpipe.metrics.evaluators import evaluate_inference_csv, evaluate_scores, read_inference_csv
from deftpipe.metrics.far import FarResult, auroc, candidate_thresholds, confusion_at, far_at_recall, threshold_for_far

__all__ = [
    "Constraint", "FarResult", "MetricContract", "MetricResult", "auroc", "candidate_thresholds", "confusion_at",
    "default_far_contract", "evaluate_inference_csv", "evaluate_scores", "far_at_recall", "read_inference_csv",
    "select_best", "threshold_for_far",
]
