"""Evaluate stage: infer both candidates (`best_val`, `latest`) on the KPI set and let the contract pick (SPEC §4)."""
from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deftpipe.backends.base import InferRequest, ModelBackend, ProgressFn

NAME = "evaluate"


@dataclass(frozen=True)
class EvaluateResult:
    chosen_kind: str
    checkpoint: Path
    inference_csv: Path
    metric_result: Any  # deftpipe.metrics.contract.MetricResult
    metric_json: Path
    candidates: tuple[Mapping[str, Any], ...]


def run(backend: ModelBackend, candidates: Mapping[str, Path], *, csv: Path, images_dir: Path, workspace_root: Path,
        out_dir: Path, contract: Any, cache_dir: Path | None = None, device: str = "auto",
        progress: ProgressFn | None = None, iter_label: str = "") -> EvaluateResult:
    """Inference of each distinct candidate checkpoint, metric per candidate, selection by the contract."""
    from deftpipe.metrics.contract import select_best
    from deftpipe.metrics.evaluators import evaluate_inference_csv

    done: dict[Path, Path] = {}
    kinds: list[str] = []
    results: list[Any] = []
    csvs: list[Path] = []
    jsons: list[Path] = []
    for kind, ckpt in candidates.items():
        target = out_dir / kind / "inference.csv"
        ckpt = Path(ckpt)
        if ckpt.resolve() in done:  # best_val == latest: one inference, copied
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(done[ckpt.resolve()], target)
        else:
            backend.infer(InferRequest(checkpoint=ckpt, csv=csv, images_dir=images_dir, workspace_root=workspace_root,
                                       out_csv=target, cache_dir=cache_dir, device=device, progress=progress))
            done[ckpt.resolve()] = target
        metric_json = out_dir / kind / "metric_result.json"
        results.append(evaluate_inference_csv(target, contract, out_json=metric_json, iter_label=iter_label))
        kinds.append(kind)
        csvs.append(target)
        jsons.append(metric_json)
    index, _ = select_best(results, contract)
    summary = tuple({"kind": k, "checkpoint": str(candidates[k]), "value": r.value, "passed": r.passed,
                     "threshold": r.threshold} for k, r in zip(kinds, results))
    return EvaluateResult(chosen_kind=kinds[index], checkpoint=Path(candidates[kinds[index]]),
                          inference_csv=csvs[index], metric_result=results[index], metric_json=jsons[index],
                          candidates=summary)
