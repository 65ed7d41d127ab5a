"""Turn an inference CSV into a `MetricResult` through the contract's evaluator (SPEC §3).

Three kinds: `builtin` (computed here), `command` (an external executable, argv
without a shell, minimal environment, timeout) and `artifact` (a JSON an
external system already wrote). Whatever the source, the result JSON is
validated against the contract and `passed` is recomputed, never trusted.
"""
from __future__ import annotations

import contextlib
import difflib
import json
import math
import os
import signal
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deftpipe.errors import ConfigError, ContractError
from deftpipe.metrics.contract import MetricContract, MetricResult
from deftpipe.metrics.far import auroc, far_at_recall
from deftpipe.workspace.io import write_atomic, write_json_atomic
from deftpipe.workspace.labels import is_miscased_pass, normalize_labels
from deftpipe.workspace.layout import PASS_LABEL

SCORE_COLUMN = "siamese_score"
# Only these variables reach a command evaluator: enough to run a script, nothing secret.
ENV_ALLOWLIST = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
STDERR_TAIL_CHARS = 2000


# ---------------------------------------------------------------- inference CSV

def read_inference_csv(path: Path | str) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Rows, float64 scores and is_defect flags of an inference CSV (needs `label` and `siamese_score`).

    Scores are parsed with correct rounding, so values written with `%.17g` come back bit-identical.

    Raises:
        ContractError: missing file/columns, a score that is not a number or not finite (naming the line).
    """
    path = Path(path)
    if not path.is_file():
        raise ContractError(f"{path}: inference CSV not found; run inference first (it writes the input rows + {SCORE_COLUMN}).")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ContractError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]}); re-run inference.") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [c for c in ("label", SCORE_COLUMN) if c not in frame.columns]
    if missing:
        raise ContractError(
            f"{path}: missing column(s) {missing} (found {list(frame.columns)}); an inference CSV is the input rows "
            f"plus '{SCORE_COLUMN}' (higher = more likely defect)."
        )
    if len(frame) == 0:
        raise ContractError(f"{path}: has a header but no rows; nothing to evaluate.")
    raw = frame[SCORE_COLUMN].str.strip()
    try:
        scores = raw.to_numpy(dtype=np.float64)
    except ValueError:
        for i, text in enumerate(raw):
            try:
                float(text)
            except ValueError:
                raise ContractError(
                    f"{path} line {i + 2}: {SCORE_COLUMN} {text!r} is not a number; re-run inference."
                ) from None
        raise
    bad = ~np.isfinite(scores)
    if bad.any():
        i = int(np.argmax(bad))
        raise ContractError(
            f"{path} line {i + 2}: non-finite {SCORE_COLUMN} {raw.iloc[i]!r} ({int(bad.sum())} row(s) in all); "
            "the KPI is unreachable with non-finite scores: fix the model or the inference that wrote them."
        )
    miscased = frame.index[frame["label"].map(is_miscased_pass)]
    if len(miscased):
        raise ContractError(
            f"{path} line {int(miscased[0]) + 2}: label {frame.at[miscased[0], 'label']!r} looks like PASS but is "
            "not spelled exactly 'PASS'; fix the label in the source CSV."
        )
    frame["label"] = normalize_labels(frame["label"])
    return frame, scores, (frame["label"] != PASS_LABEL).to_numpy()


def per_label_counts(labels: Sequence[str] | pd.Series, scores: np.ndarray, threshold: float) -> dict[str, dict[str, int]]:
    """Per label: `n`, `n_flagged` (score > threshold) and, for defect labels, `n_missed`."""
    out: dict[str, dict[str, int]] = {}
    series = pd.Series(np.asarray(labels, dtype=object))
    flagged = np.asarray(scores) > threshold
    for label in sorted(series.unique(), key=lambda x: (x != PASS_LABEL, x)):
        mask = (series == label).to_numpy()
        n_flagged = int(flagged[mask].sum())
        entry = {"n": int(mask.sum()), "n_flagged": n_flagged}
        if label != PASS_LABEL:
            entry["n_missed"] = int(mask.sum()) - n_flagged
        out[str(label)] = entry
    return out


# ---------------------------------------------------------------- builtins

def _far_diagnostics(scores: np.ndarray, is_defect: np.ndarray, labels: Sequence[str] | pd.Series | None,
                     recall_pct: float) -> tuple[Any, dict[str, Any]]:
    primary = far_at_recall(scores, is_defect, recall_pct=recall_pct)
    at100 = primary if recall_pct == 100.0 else far_at_recall(scores, is_defect, recall_pct=100.0)
    at99 = far_at_recall(scores, is_defect, recall_pct=99.0)
    diag: dict[str, Any] = {
        "recall_pct_required": recall_pct,
        "far_at_100_pct": at100.far_pct, "threshold_at_100": at100.threshold,
        "far_at_99_pct": at99.far_pct, "threshold_at_99": at99.threshold,
        "auroc": auroc(scores, is_defect),
        "n_pass": primary.n_pass, "n_defect": primary.n_defect,
        "tp": primary.tp, "fp": primary.fp, "tn": primary.tn, "fn": primary.fn,
    }
    if labels is not None:
        diag["per_label"] = per_label_counts(labels, scores, primary.threshold)
    return primary, diag


def _recall_param(contract: MetricContract) -> float:
    params = contract.evaluator.get("params") or {}
    if "recall_pct" in params:
        value = params["recall_pct"]
    else:
        own = [c for c in contract.constraints if c.name == "recall_pct" and c.operator in (">=", ">")]
        value = own[0].target if own else 100.0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= float(value) <= 100):
        raise ConfigError(f"metric_contract.evaluator.params.recall_pct must be a number in [0, 100], got {value!r}.")
    return float(value)


def _builtin_far_at_recall(scores: np.ndarray, is_defect: np.ndarray, labels: Any,
                           contract: MetricContract) -> dict[str, Any]:
    primary, diag = _far_diagnostics(scores, is_defect, labels, _recall_param(contract))
    available = {"recall_pct": primary.recall_pct, "far_pct": primary.far_pct,
                 "far_at_99_pct": diag["far_at_99_pct"], "auroc": diag["auroc"]}
    return {"name": contract.name, "value": primary.far_pct, "unit": "%", "threshold": primary.threshold,
            "available": available, "diagnostics": diag}


def _builtin_auroc(scores: np.ndarray, is_defect: np.ndarray, labels: Any, contract: MetricContract) -> dict[str, Any]:
    primary, diag = _far_diagnostics(scores, is_defect, labels, 100.0)
    available = {"recall_pct": primary.recall_pct, "far_pct": primary.far_pct,
                 "far_at_99_pct": diag["far_at_99_pct"], "auroc": diag["auroc"]}
    return {"name": contract.name, "value": diag["auroc"], "unit": "", "threshold": primary.threshold,
            "available": available, "diagnostics": diag}


BUILTINS: dict[str, Callable[[np.ndarray, np.ndarray, Any, MetricContract], dict[str, Any]]] = {
    "far_at_recall": _builtin_far_at_recall,
    "auroc": _builtin_auroc,
}


def evaluate_scores(scores: np.ndarray, is_defect: np.ndarray, contract: MetricContract, *,
                    labels: Sequence[str] | pd.Series | None = None) -> MetricResult:
    """In-memory evaluation with a builtin evaluator (AutoML scoring, tests). Pure: no files."""
    ev = contract.evaluator
    if ev.get("type") != "builtin":
        raise ConfigError(
            f"metric_contract.evaluator is {ev.get('type')!r}; in-memory scores can only use a builtin evaluator "
            f"({sorted(BUILTINS)}); write an inference CSV and call evaluate_inference_csv instead."
        )
    fn = _builtin(str(ev.get("id")))
    raw = fn(np.asarray(scores, dtype=np.float64), np.asarray(is_defect, dtype=bool), labels, contract)
    if raw["unit"] != contract.unit:
        raise ConfigError(
            f"metric_contract.unit is {contract.unit!r} but builtin '{ev.get('id')}' measures in {raw['unit']!r}; "
            "set the contract's unit to match."
        )
    missing = [c.name for c in contract.constraints if c.name not in raw["available"]]
    if missing:
        raise ConfigError(
            f"metric_contract.constraints {missing}: builtin '{ev.get('id')}' cannot measure them; "
            f"it provides {sorted(raw['available'])}."
        )
    values = {c.name: float(raw["available"][c.name]) for c in contract.constraints}
    return MetricResult(
        name=contract.name, value=float(raw["value"]), unit=contract.unit,
        passed=contract.passes(raw["value"]) and contract.constraints_pass(values),
        constraints=values, threshold=float(raw["threshold"]), evidence_path=None, diagnostics=raw["diagnostics"],
    )


def _builtin(builtin_id: str) -> Callable[[np.ndarray, np.ndarray, Any, MetricContract], dict[str, Any]]:
    if builtin_id not in BUILTINS:
        near = difflib.get_close_matches(builtin_id, BUILTINS, n=1)
        tip = f" Did you mean '{near[0]}'?" if near else ""
        raise ConfigError(f"metric_contract.evaluator.id: unknown builtin {builtin_id!r}; known: {sorted(BUILTINS)}.{tip}")
    return BUILTINS[builtin_id]


# ---------------------------------------------------------------- result JSON

def _finite_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(float(value))


def validate_result_json(d: Any, contract: MetricContract, *, source: str,
                         evidence_path: str | None = None) -> MetricResult:
    """Check a result JSON object against the contract and rebuild it with `passed` recomputed."""
    if not isinstance(d, Mapping):
        raise ContractError(f"{source}: the result must be a JSON object, got {type(d).__name__}.")
    missing = [k for k in ("name", "value", "unit", "constraints") if k not in d]
    if missing:
        raise ContractError(
            f"{source}: missing key(s) {missing}; a result JSON has name, value, unit, constraints "
            "(and optionally threshold, diagnostics)."
        )
    if d["name"] != contract.name:
        raise ContractError(f"{source}: name is {d['name']!r} but the metric contract measures {contract.name!r}.")
    if not _finite_number(d["value"]):
        raise ContractError(f"{source}: value must be a finite number, got {d['value']!r}.")
    if d["unit"] != contract.unit:
        raise ContractError(
            f"{source}: unit is {d['unit']!r} but the metric contract's unit is {contract.unit!r}; "
            "the evaluator must report in the contract's unit."
        )
    threshold = d.get("threshold")
    if threshold is not None and not _finite_number(threshold):
        raise ContractError(f"{source}: threshold must be a finite number or null, got {threshold!r}.")
    cons = d["constraints"]
    if not isinstance(cons, Mapping):
        raise ContractError(f"{source}: constraints must be an object {{name: value}}, got {type(cons).__name__}.")
    values: dict[str, float] = {}
    for c in contract.constraints:
        if c.name not in cons:
            raise ContractError(
                f"{source}: no value for constraint '{c.name}' ({c.describe()}); the evaluator must report "
                f"every configured constraint (got {sorted(map(str, cons))})."
            )
        if not _finite_number(cons[c.name]):
            raise ContractError(f"{source}: constraint '{c.name}' must be a finite number, got {cons[c.name]!r}.")
        values[c.name] = float(cons[c.name])
    diagnostics = d.get("diagnostics") or {}
    if not isinstance(diagnostics, Mapping):
        raise ContractError(f"{source}: diagnostics must be an object when present, got {type(diagnostics).__name__}.")
    value = float(d["value"])
    return MetricResult(
        name=contract.name, value=value, unit=contract.unit,
        passed=contract.passes(value) and contract.constraints_pass(values),
        constraints=values, threshold=None if threshold is None else float(threshold),
        evidence_path=evidence_path, diagnostics=dict(diagnostics),
    )


def _read_result_file(path: Path, contract: MetricContract, *, what: str) -> MetricResult:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ContractError(f"{path}: {what} wrote a file that is not UTF-8 JSON ({exc.reason}).") from exc
    try:
        data = json.loads(text, parse_constant=lambda c: float(c))
    except json.JSONDecodeError as exc:
        raise ContractError(
            f"{path}: {what} wrote invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            f"it starts with {text[:80]!r}."
        ) from exc
    return validate_result_json(data, contract, source=f"{path} ({what})", evidence_path=str(path))


# ---------------------------------------------------------------- command / artifact

def minimal_env(parent: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's environment: only ENV_ALLOWLIST names, nothing else (no tokens, no credentials)."""
    src = os.environ if parent is None else parent
    return {k: src[k] for k in ENV_ALLOWLIST if k in src}


def _tail(data: bytes | str | None) -> str:
    if not data:
        return ""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return text[-STDERR_TAIL_CHARS:].strip()


def _run_command(ev: Mapping[str, Any], inference_csv: Path, contract: MetricContract, *,
                 timeout_s: float, keep_raw: Path | None) -> MetricResult:
    exe = Path(str(ev["path"]))
    if not exe.is_absolute():
        raise ConfigError(f"metric_contract.evaluator.path {str(exe)!r} must be an absolute path to an executable.")
    if not exe.is_file():
        raise ConfigError(f"metric_contract.evaluator.path {str(exe)!r} does not exist or is not a file.")
    if not os.access(exe, os.X_OK):
        raise ConfigError(f"metric_contract.evaluator.path {str(exe)!r} is not executable; run `chmod +x {exe}`.")
    if not (timeout_s > 0 and math.isfinite(timeout_s)):
        raise ConfigError(f"evaluator timeout must be a positive number of seconds, got {timeout_s!r}.")
    with tempfile.TemporaryDirectory(prefix="deftpipe-eval-") as tmp:
        out = Path(tmp) / "result.json"
        argv = [str(exe), *map(str, ev.get("args") or []),
                "--inference-csv", str(inference_csv.resolve()), "--output-json", str(out)]
        what = f"command evaluator {exe.name}"
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    env=minimal_env(), cwd=tmp, start_new_session=True)
        except OSError as exc:
            raise ConfigError(f"metric_contract.evaluator.path {str(exe)!r} cannot be started ({exc.strerror}); "
                              "check its shebang line.") from exc
        try:
            _, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # the whole group: grandchildren must not outlive us
            _, err = proc.communicate()
            raise ContractError(
                f"{what} did not finish within {timeout_s:g} s and was killed; make it faster or raise the "
                f"timeout. stderr tail: {_tail(err) or '(empty)'}"
            ) from None
        if proc.returncode != 0:
            raise ContractError(
                f"{what} exited with status {proc.returncode}; stderr tail: {_tail(err) or '(empty)'}"
            )
        if not out.is_file():
            raise ContractError(
                f"{what} exited 0 but wrote no --output-json file; it must write the result JSON to the path "
                "given after --output-json."
            )
        result = _read_result_file(out, contract, what=what)
        if keep_raw is not None:  # the evaluator's own file, kept as evidence beside metric_result.json
            write_atomic(keep_raw, out.read_bytes())
            result = MetricResult(result.name, result.value, result.unit, result.passed, result.constraints,
                                  result.threshold, str(keep_raw),
                                  {**result.diagnostics, "raw_result_path": str(keep_raw)})
    return result


def _with_evidence(r: MetricResult, evidence: str | None) -> MetricResult:
    return MetricResult(r.name, r.value, r.unit, r.passed, r.constraints, r.threshold, evidence, r.diagnostics)


def _read_artifact(ev: Mapping[str, Any], contract: MetricContract, *, iter_label: str, base_dir: Path) -> MetricResult:
    template = str(ev["path_template"])
    producer = str(ev.get("producer") or "the external producer")
    if "{iter_label}" in template and not iter_label:
        raise ConfigError(
            f"metric_contract.evaluator.path_template {template!r} needs an iter_label (e.g. 'iter1'), got none."
        )
    path = Path(template.replace("{iter_label}", iter_label))
    if not path.is_absolute():
        path = base_dir / path
    if not path.is_file():
        raise ContractError(
            f"artifact evaluator: {producer} has not written the result JSON at {path} "
            f"(path_template {template!r}, iter_label {iter_label!r}); run {producer} first, then evaluate again."
        )
    return _read_result_file(path, contract, what=f"artifact from {producer}")


def evaluate_inference_csv(inference_csv: Path, contract: MetricContract, *, out_json: Path | None = None,
                           iter_label: str = "", timeout_s: float = 600, base_dir: Path | None = None) -> MetricResult:
    """Evaluate one candidate's inference CSV with the contract's evaluator.

    Args:
        out_json: where to write `metric_result.json` (atomically); becomes `evidence_path`.
        iter_label: substituted for `{iter_label}` in an artifact evaluator's path_template.
        timeout_s: wall-clock limit of a command evaluator.
        base_dir: folder a relative artifact path resolves against (default: the inference CSV's folder).

    Raises:
        ConfigError: a bad evaluator configuration.
        ContractError: bad inference CSV, unreachable KPI, or an external result that breaks the contract.
    """
    inference_csv = Path(inference_csv)
    ev = contract.evaluator
    kind = ev.get("type")
    if kind == "builtin":
        frame, scores, is_defect = read_inference_csv(inference_csv)
        try:
            result = evaluate_scores(scores, is_defect, contract, labels=frame["label"])
        except ContractError as exc:
            raise ContractError(f"{inference_csv}: {exc.message}", hint=exc.hint) from exc
    elif kind == "command":
        if not inference_csv.is_file():
            raise ContractError(f"{inference_csv}: inference CSV not found; run inference first.")
        raw = out_json.with_name(out_json.stem + ".raw.json") if out_json is not None else None
        result = _run_command(ev, inference_csv, contract, timeout_s=timeout_s, keep_raw=raw)
    elif kind == "artifact":
        result = _read_artifact(ev, contract, iter_label=iter_label, base_dir=base_dir or inference_csv.parent)
    else:  # from_dict rejects this; a hand-built contract can still carry it
        raise ConfigError(f"metric_contract.evaluator.type {kind!r} is unknown; choose builtin, command or artifact.")
    if out_json is not None:
        result = _with_evidence(result, str(out_json))
        write_json_atomic(out_json, result.to_dict())
    return result
