"""FAR / recall / AUROC over siamese scores with the threshold rule of SPEC §3 (TAO's KPI analysis).

Scores are "higher = more likely defect"; a row is flagged defect when
`score > threshold` (strict). Candidate thresholds are the unique scores plus
the value just below the lowest, so "flag everything" is always a candidate.
FAR = FP / (FP + TN) * 100 over PASS rows, recall = TP / (TP + FN) * 100 over
defect rows.

Example (3 PASS at 0.1, 0.2, 0.9; 2 defects at 0.5, 0.8):
    far_at_recall(...) -> threshold 0.2 (largest candidate keeping both defects),
    FP = 1 (the PASS at 0.9), FAR = 33.33 %, recall = 100 %.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from deftpipe.errors import ContractError

# Percent comparisons forgive float noise in the *target* (99.9 is not exactly representable);
# counts themselves are exact integers.
PCT_TOLERANCE = 1e-9


@dataclass(frozen=True)
class FarResult:
    """Confusion counts and rates at one threshold. Rates are NaN only from `confusion_at` on a one-class input."""

    threshold: float
    far_pct: float
    recall_pct: float
    tp: int
    fp: int
    tn: int
    fn: int
    n_pass: int
    n_defect: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_arrays(scores: Any, is_defect: Any, *, row_names: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    d = np.asarray(is_defect).reshape(-1)
    if d.dtype != np.bool_:
        if d.size and not np.isin(d, (0, 1)).all():
            raise ContractError("is_defect must be booleans (True = defect row); got values other than 0/1.")
        d = d.astype(bool)
    if s.shape != d.shape:
        raise ContractError(f"scores ({s.size}) and is_defect ({d.size}) differ in length; pass one flag per score.")
    bad = ~np.isfinite(s)
    if bad.any():
        i = int(np.argmax(bad))
        where = row_names[i] if row_names is not None else f"score #{i} (0-based)"
        raise ContractError(
            f"non-finite siamese_score {float(s[i])!r} at {where} ({int(bad.sum())} non-finite in all); "
            "the KPI is unreachable until every score is a finite number: fix the inference that wrote it."
        )
    return s, d


def _require_both(d: np.ndarray) -> None:
    if d.size == 0:
        raise ContractError("no rows to evaluate; the inference CSV is empty.")
    if not d.any():
        raise ContractError(
            "unreachable: no defect rows, so recall (and FAR at a recall) is undefined; "
            "add defect rows to the KPI set."
        )
    if d.all():
        raise ContractError(
            "FAR undefined: no PASS rows, so FP / (FP + TN) has no denominator; add PASS rows to the KPI set."
        )


def candidate_thresholds(scores: np.ndarray) -> np.ndarray:
    """Unique scores, ascending, preceded by the float just below the lowest (np.nextafter toward -inf)."""
    s = np.unique(np.asarray(scores, dtype=np.float64).reshape(-1))
    if s.size == 0:
        return s
    if s[0] == -np.finfo(np.float64).max:
        # no finite float lies below it: the "flag everything" threshold would be -inf (not JSON, not usable)
        raise ContractError(
            f"siamese_score {s[0]!r} is the most negative float; no finite threshold lies below it. "
            "Fix the inference that wrote it (scores are logit differences, far from the float limits)."
        )
    return np.concatenate(([np.nextafter(s[0], -np.inf)], s))


def _pct(num: int, den: int) -> float:
    # Same operation order as the formula in SPEC §3 (FP / (FP + TN) * 100) so numbers match to the last digit.
    return num / den * 100.0 if den else math.nan


def _counts(s: np.ndarray, d: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TP and FP (scores strictly above each threshold) for a vector of thresholds."""
    pos = np.sort(s[d])
    neg = np.sort(s[~d])
    tp = pos.size - np.searchsorted(pos, thresholds, side="right")
    fp = neg.size - np.searchsorted(neg, thresholds, side="right")
    return tp.astype(np.int64), fp.astype(np.int64)


def _result(threshold: float, tp: int, fp: int, n_pass: int, n_defect: int) -> FarResult:
    tn = n_pass - fp
    fn = n_defect - tp
    return FarResult(
        threshold=float(threshold), far_pct=_pct(fp, n_pass), recall_pct=_pct(tp, n_defect),
        tp=int(tp), fp=int(fp), tn=int(tn), fn=int(fn), n_pass=int(n_pass), n_defect=int(n_defect),
    )


def required_tp(n_defect: int, recall_pct: float) -> int:
    """Fewest true positives whose recall reaches `recall_pct` (e.g. 99 of 100 for 99 %)."""
    if not (0.0 <= recall_pct <= 100.0) or math.isnan(recall_pct):
        raise ContractError(f"recall_pct must be within [0, 100], got {recall_pct!r}.")
    return min(n_defect, max(0, math.ceil(recall_pct * n_defect / 100.0 - PCT_TOLERANCE)))


def confusion_at(scores: np.ndarray, is_defect: np.ndarray, threshold: float) -> FarResult:
    """Counts at `threshold` (flag = score > threshold). Works on one-class input: the undefined rate is NaN."""
    s, d = _as_arrays(scores, is_defect)
    if not math.isfinite(float(threshold)):
        raise ContractError(f"threshold must be finite, got {threshold!r}.")
    tp, fp = _counts(s, d, np.asarray([threshold], dtype=np.float64))
    return _result(float(threshold), int(tp[0]), int(fp[0]), int((~d).sum()), int(d.sum()))


def far_at_recall(scores: np.ndarray, is_defect: np.ndarray, *, recall_pct: float = 100.0,
                  row_names: Sequence[str] | None = None) -> FarResult:
    """FAR at the largest candidate threshold whose recall still reaches `recall_pct`.

    Raises:
        ContractError: no defect rows ("unreachable"), no PASS rows (FAR undefined),
            a non-finite score (naming the first bad row), recall_pct outside [0, 100].
    """
    s, d = _as_arrays(scores, is_defect, row_names=row_names)
    _require_both(d)
    n_defect = int(d.sum())
    n_pass = int(d.size - n_defect)
    k = required_tp(n_defect, recall_pct)
    cands = candidate_thresholds(s)
    if k == 0:
        t = float(cands[-1])
    else:
        # #defects > t >= k  <=>  t < (k-th largest defect score); take the largest candidate below it.
        kth = np.sort(s[d])[n_defect - k]
        t = float(cands[np.searchsorted(cands, kth, side="left") - 1])
    tp, fp = _counts(s, d, np.asarray([t]))
    return _result(t, int(tp[0]), int(fp[0]), n_pass, n_defect)


def threshold_for_far(scores: np.ndarray, is_defect: np.ndarray, *, max_far_pct: float) -> float:
    """Smallest candidate threshold whose FAR <= `max_far_pct` (RCA's `t_far`, SPEC §5).

    Always exists: at the highest score nothing is flagged, FAR = 0.
    """
    s, d = _as_arrays(scores, is_defect)
    if not (d.size - d.sum()):
        raise ContractError("FAR undefined: no PASS rows, so t_far cannot be computed; add PASS rows to the KPI set.")
    if not math.isfinite(max_far_pct) or max_far_pct < 0:
        raise ContractError(f"max_far_pct must be a finite number >= 0, got {max_far_pct!r}.")
    cands = candidate_thresholds(s)
    _, fp = _counts(s, d, cands)
    n_pass = int((~d).sum())
    far = fp / n_pass * 100.0
    ok = far <= max_far_pct + PCT_TOLERANCE
    return float(cands[int(np.argmax(ok))])  # FAR is non-increasing in the threshold, so the first ok is smallest


def auroc(scores: np.ndarray, is_defect: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney U / (n_pos·n_neg)); a tie between classes counts 1/2."""
    s, d = _as_arrays(scores, is_defect)
    _require_both(d)
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    # average rank (1-based) of each group of equal scores
    starts = np.flatnonzero(np.concatenate(([True], sorted_s[1:] != sorted_s[:-1])))
    ends = np.concatenate((starts[1:], [sorted_s.size]))
    avg = (starts + ends + 1) / 2.0
    ranks = np.empty(s.size, dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    n_pos = int(d.sum())
    n_neg = int(d.size - n_pos)
    u = ranks[d].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def far_curve(scores: np.ndarray, is_defect: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds ascending, FAR %, recall %) at every candidate threshold, for plots and reports."""
    s, d = _as_arrays(scores, is_defect)
    _require_both(d)
    cands = candidate_thresholds(s)
    tp, fp = _counts(s, d, cands)
    return cands, fp / int((~d).sum()) * 100.0, tp / int(d.sum()) * 100.0
