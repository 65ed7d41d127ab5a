"""`deftpipe export`: a run's deliverable checkpoint -> one ONNX file carrying its operating point and provenance.

Graph: inputs `test`, `golden` (and `diff` in registered_diff mode), float32 NCHW, already
normalized (see `ModelInfo.input_specs`); output `siamese_score` (N,) = logit(defect) − logit(PASS).
Only the batch axis is dynamic. The file is checked against PyTorch through onnxruntime
before it is written, and written atomically.
"""
from __future__ import annotations

import io
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deftpipe.deploy.deliverable import (
    SCORE_OUTPUT,
    Deliverable,
    ModelInfo,
    info_from_checkpoint,
    load_deliverable,
    to_metadata,
    training_csv,
)
from deftpipe.errors import ConfigError

MIN_OPSET = 17
DEFAULT_OPSET = 17
# |ΔScore| allowed between onnxruntime and PyTorch (SPEC §10); checked on a random batch at export time.
MAX_ABS_DIFF = 1e-4
_CHECK_BATCH = 5


@dataclass(frozen=True)
class ExportResult:
    onnx_path: Path
    metadata: Mapping[str, Any]        # decoded (JSON values parsed), as written into the file
    max_abs_diff: float                # onnxruntime vs PyTorch on the export-time check batch
    warnings: tuple[str, ...] = ()


def export_onnx(results_dir: Path | str, onnx_path: Path | str, *, opset: int = DEFAULT_OPSET) -> ExportResult:
    """Export RESULTS_DIR's deliverable to `onnx_path` with its metadata (threshold, contract, inputs, provenance).

    Raises:
        ContractError: no (valid) best_model.json or checkpoint in RESULTS_DIR.
        ConfigError: opset below 17 or an output path that is a folder.
        DependencyMissing: onnx / onnxruntime not installed.
        RuntimeError: onnxruntime disagrees with PyTorch by more than 1e-4 (nothing is written).
    """
    from deftpipe.deploy._deps import import_onnx, import_onnxruntime

    if opset < MIN_OPSET:
        raise ConfigError(f"--opset {opset}: the export needs opset {MIN_OPSET} or newer.")
    out = Path(onnx_path).expanduser().resolve()
    if out.is_dir():
        raise ConfigError(f"--onnx '{onnx_path}' is a folder; give a file name such as {out / 'model.onnx'}.")
    deliverable = load_deliverable(results_dir)
    onnx = import_onnx("deftpipe export")
    import_onnxruntime("deftpipe export (parity check)")
    import torch

    from deftpipe.backends.native.infer import load_model

    loaded = load_model(deliverable.checkpoint, device=torch.device("cpu"))
    info = info_from_checkpoint(loaded, threshold=deliverable.threshold, tie_margin=deliverable.tie_margin())
    extra, notes = _provenance(deliverable, loaded.spec, opset=opset)
    graph = _score_graph(loaded.model).eval()
    example = _example_inputs(info, _CHECK_BATCH)
    names = ["test", "golden", "diff"][:len(example)]
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The legacy (TorchScript) exporter is used on purpose: the dynamo one needs onnxscript. Its tracer
        # warns about Python-side shape checks, which are constant here because H and W are fixed.
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, example, buffer, input_names=names, output_names=[SCORE_OUTPUT],
                          dynamic_axes={n: {0: "batch"} for n in [*names, SCORE_OUTPUT]},
                          opset_version=opset, do_constant_folding=True, dynamo=False)
    proto = onnx.load_from_string(buffer.getvalue())
    max_diff = _parity(proto.SerializeToString(), graph, example)
    metadata = {**to_metadata(info, extra),
                "export_check": json.dumps({"n_pairs": _CHECK_BATCH, "max_abs_diff": max_diff,
                                            "max_abs_diff_allowed": MAX_ABS_DIFF})}
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "deftpipe"
    proto.doc_string = (f"deftpipe siamese AOI classifier: {SCORE_OUTPUT} = logit(defect) - logit(PASS); "
                        f"defect if {SCORE_OUTPUT} > threshold {info.threshold!r} + tie_margin {info.tie_margin!r}. "
                        "See metadata_props.")
    onnx.checker.check_model(proto)
    from deftpipe.workspace.io import write_atomic

    write_atomic(out, proto.SerializeToString())
    decoded = {k: json.loads(v) for k, v in metadata.items()}
    return ExportResult(out, decoded, max_diff, tuple(notes))


def _score_graph(model: Any) -> Any:
    """The classifier followed by logit(defect) − logit(PASS): the module that is exported."""
    import torch

    from deftpipe.backends.native.model import scores_from_logits

    class ScoreGraph(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.model = inner

        def forward(self, test: torch.Tensor, golden: torch.Tensor, diff: torch.Tensor | None = None) -> torch.Tensor:
            return scores_from_logits(self.model(test, golden, diff))

    return ScoreGraph(model)


def _example_inputs(info: ModelInfo, n: int) -> tuple[Any, ...]:
    import torch

    gen = torch.Generator().manual_seed(0)
    c, h, w = info.n_channels, info.image.height, info.image.width
    test = torch.randn((n, c, h, w), generator=gen)
    golden = test + 0.1 * torch.randn((n, c, h, w), generator=gen)
    if not info.has_diff:
        return test, golden
    return test, golden, torch.rand((n, 2 * c, h, w), generator=gen)


def _parity(model_bytes: bytes, graph: Any, example: tuple[Any, ...]) -> float:
    import numpy as np
    import torch

    from deftpipe.deploy.scorers import onnx_session

    session = onnx_session(model_bytes, device="cpu", purpose="deftpipe export (parity check)")
    feeds = {name: t.numpy() for name, t in zip(("test", "golden", "diff"), example)}
    got = session.run([SCORE_OUTPUT], feeds)[0]
    with torch.no_grad():
        want = graph(*example).numpy()
    diff = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))) if len(want) else 0.0
    if not (got.shape == want.shape and diff <= MAX_ABS_DIFF):
        raise RuntimeError(f"export check failed: onnxruntime and PyTorch scores differ by {diff:.3g} "
                           f"(allowed {MAX_ABS_DIFF:g}; shapes {got.shape} vs {want.shape}); nothing was written.")
    return diff


def _provenance(deliverable: Deliverable, checkpoint_spec: Mapping[str, Any], *, opset: int
                ) -> tuple[dict[str, Any], list[str]]:
    """Metadata about where the deliverable comes from, plus notes for the user (e.g. a training CSV that is gone)."""
    import torch

    from deftpipe import __version__
    from deftpipe.provenance import git_sha
    from deftpipe.workspace.io import sha256_file

    bm = deliverable.best_model
    notes: list[str] = []
    train_csv = training_csv(deliverable, checkpoint_spec)
    train_digest = None
    if train_csv is None:
        notes.append("the training spec names no dataset.classify.train_dataset.csv_path; "
                     "training_data.sha256 is null.")
    elif not train_csv.is_file():
        notes.append(f"training CSV '{train_csv}' no longer exists; training_data.sha256 is null.")
    else:
        train_digest = sha256_file(train_csv)
    run_prov = deliverable.results_dir / "provenance.json"
    run_doc: dict[str, Any] = {}
    if run_prov.is_file():
        try:
            run_doc = json.loads(run_prov.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            notes.append(f"'{run_prov}' is not valid JSON; its fields are left out of the metadata.")
    extra = {
        "metric_contract": bm["metric_contract"],
        "metric_result": bm["metric_result"],
        "holdout_result": bm.get("holdout_result"),
        "far_pct": bm.get("far_pct"),
        "iteration": bm["iteration"],
        "backbone_type": bm["backbone_type"],
        "backbone_frozen": bm["backbone_frozen"],
        "training_data": {"csv_path": None if train_csv is None else str(train_csv), "sha256": train_digest},
        "source_checkpoint": {"path": str(deliverable.checkpoint), "sha256": sha256_file(deliverable.checkpoint)},
        "best_model": {"path": str(deliverable.results_dir / "best_model.json"),
                       "sha256": sha256_file(deliverable.results_dir / "best_model.json")},
        "provenance": {
            "results_dir": str(deliverable.results_dir),
            "run_provenance_sha256": sha256_file(run_prov) if run_prov.is_file() else None,
            "run_command": run_doc.get("command"),
            "seed": run_doc.get("seed"),
            "run_git_sha": run_doc.get("git_sha"),
            "export_git_sha": git_sha(),
        },
        "deftpipe_version": __version__,
        "torch_version": torch.__version__,
        "opset": opset,
    }
    return extra, notes
