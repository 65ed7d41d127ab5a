"""A finished run reduced to what must not depend on interruptions: committed stages, training CSVs, metrics.

Absolute paths, run-dir names, `<TS>` folders and AutoML trial numbers (a killed trial is retried
under a new number) are normalized away; timestamps and durations are left out. Integrity
problems — unreadable JSON, orphan temp files, left-over locks, gaps or duplicates in the event
sequence, a journal that disagrees with the snapshot, a missing deliverable — are listed beside it.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deftpipe.workspace.io import orphan_temp_files

_RUN = re.compile(r"run_\d{8}_\d{6}(?:_\d+)?")
_TS = re.compile(r"\d{8}_\d{6}")
_TRIAL = re.compile(r"trial_\d{4,}")
# Training data the loop produced: must be byte-identical (after normalization) with the reference.
CSV_GLOBS: tuple[str, ...] = ("iter*/dataset/train_combined_iter*.csv", "iter*/mining_filter/mining_pool.csv")
BEST_RECS: tuple[str, ...] = ("automl_phase1/best_rec.json", "final_automl/best_rec.json")
LOCK_NAMES: tuple[str, ...] = (".lock", ".automl.lock")


@dataclass(frozen=True)
class RunDigest:
    """The comparable content of one finished run plus the integrity problems found while reading it."""

    events: tuple[tuple[str, str, str], ...]  # committed (iter, stage, status), in seq order
    csvs: Mapping[str, str]  # normalized relative path -> normalized text
    metrics: Mapping[str, Any]  # state iterations, best_rec.json files, best_model.json (normalized)
    problems: tuple[str, ...]


class _Normalizer:
    def __init__(self, workspace_root: Path) -> None:
        self.roots = sorted({str(workspace_root), str(workspace_root.resolve())}, key=len, reverse=True)

    def text(self, s: str) -> str:
        for root in self.roots:
            s = s.replace(root, "<WS>")
        return _TRIAL.sub("<TRIAL>", _TS.sub("<TS>", _RUN.sub("<RUN>", s)))

    def value(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, Mapping):
            return {self.text(str(k)): self.value(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.value(v) for v in obj]
        return obj


def _read_json(path: Path, problems: list[str], rel: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        problems.append(f"{rel}: not valid JSON ({type(exc).__name__}: {exc})")
        return None


def _check_events(doc: Mapping[str, Any], rd: Path, problems: list[str]) -> tuple[tuple[str, str, str], ...]:
    events = list(doc.get("events") or [])
    seqs = [int(e.get("seq", -1)) for e in events]
    if seqs != list(range(1, len(events) + 1)):
        problems.append(f"deft_state.json: event seq is {seqs}, expected 1..{len(events)} without gaps")
    seen: set[tuple[str, str]] = set()
    for e in events:
        key = (str(e.get("iter")), str(e.get("stage")))
        if e.get("status") == "ok" and key in seen:
            problems.append(f"deft_state.json: stage {key[0]}/{key[1]} committed twice")
        seen.add(key)
    journal = rd / "loop_log.jsonl"
    try:
        lines = [json.loads(line) for line in journal.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        problems.append(f"loop_log.jsonl: unreadable ({type(exc).__name__}: {exc})")
    else:
        if lines != events:
            problems.append(f"loop_log.jsonl: {len(lines)} line(s) disagree with the {len(events)} snapshot event(s)")
    return tuple((str(e.get("iter")), str(e.get("stage")), str(e.get("status"))) for e in events)


def _best_rec(rec: Mapping[str, Any]) -> dict[str, Any]:
    """Winner and the multiset of scores; trials killed and retried leave null-score rows, dropped here."""
    scores = sorted(float(r["score"]) for r in rec.get("all_recs", []) if r.get("score") is not None)
    return {"metric_name": rec.get("metric_name"), "direction": rec.get("direction"), "best": rec.get("best"),
            "scores": scores}


def _deliverable(rd: Path, doc: Mapping[str, Any], problems: list[str]) -> Any:
    path = rd / "best_model.json"
    if doc.get("status") != "complete":
        problems.append(f"deft_state.json: status is {doc.get('status')!r}, expected 'complete'")
    if not path.is_file():
        problems.append("best_model.json: missing (no deliverable)")
        return None
    model = _read_json(path, problems, "best_model.json")
    ckpt = Path(str((model or {}).get("checkpoint") or ""))
    if model is not None and not ckpt.is_file():
        problems.append(f"best_model.json: checkpoint '{ckpt}' does not exist")
    return model


def digest_run(results_dir: Path | str, *, workspace_root: Path | str | None = None) -> RunDigest:
    """Read a finished run; never raises for a damaged run, the damage is listed in `problems`."""
    rd = Path(results_dir)
    ws = Path(workspace_root) if workspace_root is not None else rd.parent.parent
    norm = _Normalizer(ws)
    problems: list[str] = []
    for tmp in orphan_temp_files(ws):
        problems.append(f"orphan temp file {norm.text(str(tmp))}")
    for name in LOCK_NAMES:
        for lock in rd.rglob(name):
            problems.append(f"lock file left behind: {norm.text(str(lock))}")
    for path in sorted(rd.rglob("*.json")):
        if path.is_file():
            _read_json(path, problems, str(path.relative_to(rd)))
    doc = _read_json(rd / "deft_state.json", problems, "deft_state.json") or {}
    events = _check_events(doc, rd, problems)
    csvs = {norm.text(str(p.relative_to(rd))): norm.text(p.read_text(encoding="utf-8"))
            for pattern in CSV_GLOBS for p in sorted(rd.glob(pattern))}
    metrics: dict[str, Any] = {
        "status": doc.get("status"), "current_iteration": doc.get("current_iteration"),
        "halt": doc.get("halt"), "failure": doc.get("failure"), "iterations": doc.get("iterations"),
        "best_model.json": _deliverable(rd, doc, problems),
    }
    for rel in BEST_RECS:
        if (rd / rel).is_file():
            rec = _read_json(rd / rel, problems, rel)
            metrics[rel] = _best_rec(rec) if isinstance(rec, Mapping) else None
    return RunDigest(events=events, csvs=csvs, metrics=norm.value(metrics), problems=tuple(problems))


def check_interrupted(results_dir: Path | str) -> list[str]:
    """Problems of a run right after a hard kill: every JSON file readable, the state valid and gap-free."""
    from deftpipe.errors import DeftError
    from deftpipe.state import read_state

    rd = Path(results_dir)
    problems: list[str] = []
    for path in sorted(rd.rglob("*.json")):
        if path.is_file():
            _read_json(path, problems, str(path.relative_to(rd)))
    if (rd / "deft_state.json").exists():
        try:
            seqs = [e.seq for e in read_state(rd).events]
        except DeftError as exc:
            problems.append(f"deft_state.json: {exc.message}")
        else:
            if seqs != list(range(1, len(seqs) + 1)):
                problems.append(f"deft_state.json: event seq is {seqs}, expected 1..{len(seqs)}")
    return problems


def _diff(a: Any, b: Any, where: str, out: list[str]) -> None:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                out.append(f"{where}.{key}: only in the {'reference' if key in a else 'interrupted run'}")
            else:
                _diff(a[key], b[key], f"{where}.{key}", out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(x, y, f"{where}[{i}]", out)
    elif a != b:
        out.append(f"{where}: reference {a!r} vs interrupted {b!r}")


def compare_digests(reference: RunDigest, candidate: RunDigest) -> list[str]:
    """Every way `candidate` (killed and resumed) differs from `reference`; empty when they agree."""
    out = [f"reference run: {p}" for p in reference.problems] + [f"interrupted run: {p}" for p in candidate.problems]
    if reference.events != candidate.events:
        out.append(f"committed stages differ: reference {list(reference.events)} "
                   f"vs interrupted {list(candidate.events)}")
    for rel in sorted(set(reference.csvs) | set(candidate.csvs)):
        a, b = reference.csvs.get(rel), candidate.csvs.get(rel)
        if a is None or b is None:
            out.append(f"{rel}: only in the {'reference' if b is None else 'interrupted run'}")
        elif a != b:
            first = next((i for i, (x, y) in enumerate(zip(a.splitlines(), b.splitlines())) if x != y),
                         min(len(a.splitlines()), len(b.splitlines())))
            out.append(f"{rel}: contents differ from line {first + 1} "
                       f"({len(a.splitlines())} vs {len(b.splitlines())} lines)")
    _diff(reference.metrics, candidate.metrics, "metrics", out)
    return out
