"""`deftpipe predict`: score new pairs with a deliverable and decide PASS / defect at its stored threshold.

Pairs come from a CSV (SPEC §2 columns; `label` optional) or a folder of pairs (`deploy.pairs`).
Preprocessing is the native backend's own: decode, register golden to test and build
the difference maps (`load_pair_tensors`), normalize (`BatchMaker`). Writes the rows plus
`siamese_score` (`%.17g`) and `decision` atomically, and a summary beside them.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from deftpipe.deploy.deliverable import DECISION_COLUMN, DECISION_RULE, DEFECT, PASS, SCORE_OUTPUT, ModelInfo
from deftpipe.deploy.pairs import discover_pairs, expected_names, pair_locator
from deftpipe.errors import ConfigError, ContractError
from deftpipe.workspace.paths import ImageLocator

ProgressFn = Callable[[int, int, str], None]
# Rows decoded and preprocessed at a time: bounds memory on large inputs. A multiple of the scoring
# batch keeps batches identical to the backend's own inference (same rows together, same results).
CHUNK_ROWS = 1024
SUMMARY_SUFFIX = ".summary.json"
_PREDICT_COLUMNS: tuple[str, ...] = ("input_path", "golden_path", "object_name")


@dataclass(frozen=True)
class PredictResult:
    out_csv: Path
    summary_path: Path
    n_rows: int
    counts: Mapping[str, int]      # {"defect": n, "PASS": m}
    threshold: float
    model_kind: str                # "pytorch" or "onnx"


def summary_path_for(out_csv: Path | str) -> Path:
    """`<out>.summary.json` beside the output CSV."""
    p = Path(out_csv)
    return p.with_name(p.name + SUMMARY_SUFFIX)


def predict(model: Path | str, *, out_csv: Path | str, csv: Path | str | None = None,
            images_dir: Path | str | None = None, pairs_dir: Path | str | None = None, device: str = "auto",
            progress: ProgressFn | None = None) -> PredictResult:
    """Score every pair of `csv` (paths relative to `images_dir`, default: the CSV's folder) or of `pairs_dir`.

    `model` is a RESULTS_DIR (PyTorch checkpoint of best_model.json) or an exported `.onnx` file.

    Raises:
        ConfigError: not exactly one of csv / pairs_dir, or a bad model path.
        ContractError: a missing light, a wrong image size, an unreadable file (naming file, row and fix).
    """
    from deftpipe.deploy.scorers import load_scorer

    if (csv is None) == (pairs_dir is None):
        raise ConfigError("predict: give exactly one of --csv FILE or --pairs DIR.")
    if pairs_dir is not None and images_dir is not None:
        raise ConfigError("predict: --images-dir goes with --csv; a --pairs folder holds its images itself.")
    out = Path(out_csv).expanduser().resolve()
    if out.is_dir():
        raise ConfigError(f"--out '{out_csv}' is a folder; give a CSV file name such as {out / 'predictions.csv'}.")
    scorer = load_scorer(model, device=device)
    info = scorer.info
    pair_names: tuple[str, ...] | None = None
    if csv is not None:
        source = {"csv": str(Path(csv).expanduser().resolve())}
        frame, locator, name = _csv_input(Path(csv), images_dir, info)
    else:
        pairs = discover_pairs(Path(str(pairs_dir)), lights=info.image.lights, image_ext=info.image.image_ext)
        source = {"pairs_dir": str(pairs.folder)}
        locator = pair_locator(pairs, lights=info.image.lights, image_ext=info.image.image_ext)
        frame, name, pair_names = pairs.rows(), f"pairs folder '{pairs.folder}'", pairs.names
    scores = _score_rows(scorer, frame, locator, name, pair_names, progress)
    result = frame.copy()
    result[SCORE_OUTPUT] = scores
    result[DECISION_COLUMN] = [DEFECT if s > info.decision_threshold else PASS for s in scores]
    n_defect = int((result[DECISION_COLUMN] == DEFECT).sum())
    counts = {DEFECT: n_defect, PASS: len(result) - n_defect}
    from deftpipe.workspace.io import write_csv_atomic, write_json_atomic

    write_csv_atomic(out, result, float_format="%.17g")
    summary = summary_path_for(out)
    write_json_atomic(summary, {
        "out_csv": str(out), "n_rows": len(result), "counts": counts, "threshold": info.threshold, "tie_margin": info.tie_margin,
        "decision_rule": DECISION_RULE, "model": str(scorer.source), "model_kind": scorer.kind,
        "input": source,
    })
    return PredictResult(out, summary, len(result), counts, info.threshold, scorer.kind)


def _csv_input(csv: Path, images_dir: Path | str | None, info: ModelInfo
               ) -> tuple[pd.DataFrame, ImageLocator, str]:
    csv = csv.expanduser().resolve()
    name = f"CSV '{csv}'"
    rows = _read_predict_csv(csv, name)
    root = Path(images_dir).expanduser().resolve() if images_dir is not None else csv.parent
    if not root.is_dir():
        raise ConfigError(f"--images-dir '{images_dir}' is not a folder; give the folder the CSV's "
                          "input_path / golden_path are relative to.")
    # Confinement root = the image root: CSV paths may not climb out of it.
    return rows, ImageLocator(root, root, info.image.lights, info.image.image_ext), name


def _read_predict_csv(csv: Path, name: str) -> pd.DataFrame:
    """SPEC §2 sample CSV, with `label` optional (new pairs have none); extra columns are kept."""
    from deftpipe.workspace.tables import read_samples_csv

    if not csv.is_file():
        raise ContractError(f"{name}: file not found; give a CSV with columns {', '.join(_PREDICT_COLUMNS)} "
                            "(label optional).")
    try:
        header = [str(c).strip() for c in pd.read_csv(csv, dtype=str, nrows=0, encoding="utf-8-sig").columns]
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError):
        header = ["label"]  # let the workspace reader name the problem
    if "label" in header:
        return read_samples_csv(csv, name=name)
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in _PREDICT_COLUMNS if c not in frame.columns]
    if missing:
        raise ContractError(f"{name}: line 1 lacks column(s) {missing}; the header must contain "
                            f"{', '.join(_PREDICT_COLUMNS)} (label optional), found {list(frame.columns)}.")
    if len(frame) == 0:
        raise ContractError(f"{name}: has a header but no rows; add at least one pair.")
    for col in _PREDICT_COLUMNS:
        blank = frame.index[frame[col].str.strip() == ""]
        if len(blank):
            raise ContractError(f"{name} line {int(blank[0]) + 2}: empty '{col}'; fill it in or drop the row.")
    return frame.reset_index(drop=True)


def _score_rows(scorer: Any, rows: pd.DataFrame, locator: ImageLocator, name: str,
                pair_names: tuple[str, ...] | None, progress: ProgressFn | None) -> Any:
    import numpy as np
    import torch

    from deftpipe.backends.native.data import BatchMaker, load_pair_tensors
    from deftpipe.backends.native.infer import INFER_BATCH

    info: ModelInfo = scorer.info
    # The decoder also builds labels; new pairs have none, and they are not used for scoring.
    scoring_rows = rows if "label" in rows.columns else rows.assign(label=PASS)
    maker = BatchMaker(info.normalization, has_diff=info.has_diff, device=scorer.device,
                       channels_last=scorer.device.type == "cuda")
    n = len(rows)
    out: list[np.ndarray] = []
    for start in range(0, n, CHUNK_ROWS):
        chunk = scoring_rows.iloc[start:start + CHUNK_ROWS]
        try:
            data = load_pair_tensors(chunk, locator, info.image, input_mode=info.input_mode,
                                     max_shift=info.max_shift_px, cache_dir=None, csv_name=name)
        except ContractError as exc:
            raise _with_input_hint(exc, info, name, pair_names) from exc
        for idx in torch.arange(len(data)).split(INFER_BATCH):
            test, golden, diff, _ = maker(data, idx)
            out.append(np.asarray(scorer.score(test, golden, diff), dtype=np.float32))
            if progress is not None:
                progress(start + int(idx[-1]) + 1, n, "scoring")
    scores = np.concatenate(out).astype(np.float64) if out else np.zeros(0)
    if not np.isfinite(scores).all():
        bad = int(np.flatnonzero(~np.isfinite(scores))[0])
        raise ContractError(f"{name}: row {bad + 1} got a non-finite {SCORE_OUTPUT}; the model is broken "
                            "(diverged training) — export a healthy run.")
    return scores


def _with_input_hint(exc: ContractError, info: ModelInfo, name: str, pair_names: tuple[str, ...] | None
                     ) -> ContractError:
    """The decoder's error with folder-of-pairs wording ("pair 'X'" instead of a line number) and a hint."""
    message = exc.message
    if pair_names is not None:
        def pair(m: re.Match[str]) -> str:
            k = int(m.group(1)) - 2
            return f"{name}, pair '{pair_names[k]}'" if 0 <= k < len(pair_names) else m.group(0)

        message = re.sub(rf"^{re.escape(name)} line (\d+)", pair, message)
        hint = f"{info.describe_inputs()}: name them {expected_names(info.image.lights, info.image.image_ext)}."
    else:
        hint = (f"{info.describe_inputs()}: each row needs <images-dir>/<input_path|golden_path>/"
                f"<object_name>_<light>{info.image.image_ext} for every light.")
    return ContractError(message, hint=hint)
