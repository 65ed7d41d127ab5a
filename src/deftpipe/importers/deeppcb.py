"""Import DeepPCB pairs as a deftpipe workspace (SPEC §2) of labelled test/golden crops.

Reads `group<G>/<id>/<id><NNN>_{test,temp}.jpg` and the boxes in `<id>_not/`, never
modifies them, and writes PNG crops, the five sample CSVs, a derived spec and
`import_summary.json`. Whole images go to one split; same inputs + seed give
byte-identical CSVs.

Example:
    summary = import_deeppcb(Path("DeepPCB/PCBData"), Path("pcb_ws"), max_pairs=50)
    print(summary.one_line())
"""
from __future__ import annotations

import difflib
import hashlib
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from deftpipe.errors import ConfigError, ContractError
from deftpipe.importers._boxes import LABELS, read_boxes
from deftpipe.importers._crops import MODES, CropRules, ImageCandidates, image_candidates
from deftpipe.importers._discover import DeepPcbPair, Skipped, discover_pairs
from deftpipe.importers._output import (
    LOCK_NAME,
    STAGING_IMAGES,
    check_target,
    clear_target,
    derived_spec_text,
    publish_images,
    write_marker,
    write_png,
)
from deftpipe.importers._splits import Crop, assign_splits, parse_splits, select_split
from deftpipe.workspace import layout
from deftpipe.workspace.images import read_image
from deftpipe.workspace.io import RunLock, write_csv_atomic, write_json_atomic, write_text_atomic
from deftpipe.workspace.layout import PASS_LABEL

COMMAND = "deftpipe import deeppcb"
LIGHT = "Mono"
IMAGE_EXT = ".png"
COLUMNS: tuple[str, ...] = ("input_path", "golden_path", "label", "object_name", "boardname", "component_kind")
KIND_CHOICES: tuple[str, ...] = ("trace", "group")
SUMMARY_NAME = "import_summary.json"
SPLIT_CSV: dict[str, Path] = {
    "train": layout.TRAINING_CSV_REL,
    "validation": layout.VALIDATION_CSV_REL,
    "kpi": layout.KPI_CSV_REL,
    "holdout": layout.HOLDOUT_CSV_REL,
    "pool": layout.MINING_POOL_CSV_REL,
}
DEFAULT_SPLITS = "train=0.4,validation=0.15,kpi=0.15,holdout=0.1,pool=0.2"
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ImportSummary:
    """What an import produced: rows per split and label, and where the report lies."""

    workspace: Path
    report_path: Path
    n_pairs: int
    label_counts: dict[str, dict[str, int]]  # split -> label -> rows
    duration_s: float
    details: dict[str, Any] = field(default_factory=dict, repr=False)

    def n_rows(self, split: str) -> int:
        return sum(self.label_counts.get(split, {}).values())

    def defect_share(self, split: str) -> float:
        n = self.n_rows(split)
        return 0.0 if n == 0 else 1.0 - self.label_counts[split].get(PASS_LABEL, 0) / n

    def one_line(self) -> str:
        parts = [f"{s} {self.n_rows(s)} ({self.defect_share(s):.1%} defect)" for s in self.label_counts]
        return (f"imported {self.n_pairs} DeepPCB pairs into {self.workspace}: " + ", ".join(parts)
                + f" in {self.duration_s:.1f} s")


def _check_options(crop: int, mode: str, stride: int | None, max_pairs: int | None, pass_ratio: float,
                   max_per_split: int, component_kind: str) -> None:
    if mode not in MODES:
        near = difflib.get_close_matches(mode, MODES, n=1)
        tip = f" Did you mean '{near[0]}'?" if near else ""
        raise ConfigError(f"--mode '{mode}' is unknown; choose one of {list(MODES)}.{tip}")
    if component_kind not in KIND_CHOICES:
        raise ConfigError(f"--kind '{component_kind}' is unknown; choose one of {list(KIND_CHOICES)}.")
    if crop < 8:
        raise ConfigError(f"--crop {crop} is too small; use at least 8 px (64 is the usual size).")
    if stride is not None and stride < 1:
        raise ConfigError(f"--stride {stride} must be at least 1 px.")
    if max_pairs is not None and max_pairs < 1:
        raise ConfigError(f"--max-pairs {max_pairs} must be at least 1 (leave it out to import every pair).")
    if not (0.0 < pass_ratio < 1.0):
        raise ConfigError(f"pass_ratio {pass_ratio} must lie strictly between 0 and 1 (0.9 = 90 % PASS rows).")
    if max_per_split < 2:
        raise ConfigError(f"--max-per-split {max_per_split} must be at least 2 (one defect and one PASS row).")


def _limit_pairs(pairs: list[DeepPcbPair], max_pairs: int | None, seed: int) -> list[DeepPcbPair]:
    """At most `max_pairs`, drawn round-robin over the groups so a small import still spans several groups."""
    if max_pairs is None or max_pairs >= len(pairs):
        return pairs
    rng = np.random.default_rng([seed, 0])
    by_group: dict[str, list[DeepPcbPair]] = {}
    for pair in pairs:
        by_group.setdefault(pair.group, []).append(pair)
    queues = [[members[i] for i in rng.permutation(len(members))] for _, members in sorted(by_group.items())]
    chosen: list[DeepPcbPair] = []
    while len(chosen) < max_pairs:
        for queue in queues:
            if queue and len(chosen) < max_pairs:
                chosen.append(queue.pop(0))
    return sorted(chosen, key=lambda p: p.image_id)


def _image_rng(seed: int, image_id: str) -> np.random.Generator:
    return np.random.default_rng([seed, 3, zlib.crc32(image_id.encode())])


def _crop_digest(image: np.ndarray, x: int, y: int, crop: int) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(image[y : y + crop, x : x + crop]).tobytes(), digest_size=16).digest()


def _scan(pairs: list[DeepPcbPair], rules: CropRules, seed: int,
          progress: Progress | None) -> tuple[dict[str, ImageCandidates], dict[str, dict[tuple[int, int], bytes]]]:
    """Candidates per image, plus a digest of every candidate's test crop (the leakage content key)."""
    out: dict[str, ImageCandidates] = {}
    digests: dict[str, dict[tuple[int, int], bytes]] = {}
    for k, pair in enumerate(pairs):
        golden = read_image(pair.template_path, where=f"{COMMAND}: template of {pair.image_id}")
        test = read_image(pair.test_path, where=f"{COMMAND}: test image of {pair.image_id}")
        height, width = golden.shape[:2]
        if test.shape != golden.shape:
            raise ContractError(
                f"{pair.test_path} is {test.shape[1]}x{test.shape[0]} but its template {pair.template_path.name} is "
                f"{width}x{height}; a pair must have one size. Remove or fix the pair."
            )
        if rules.crop > min(height, width):
            raise ConfigError(
                f"--crop {rules.crop} is larger than {pair.template_path} ({width}x{height}); choose a smaller crop."
            )
        boxes = read_boxes(pair.boxes_path, width=width, height=height)
        found = image_candidates(boxes, golden, rules, _image_rng(seed, pair.image_id))
        out[pair.image_id] = found
        origins = [(x, y) for x, y, _ in found.defects] + found.passes
        digests[pair.image_id] = {xy: _crop_digest(test, xy[0], xy[1], rules.crop) for xy in origins}
        if progress:
            progress("scan", k + 1, len(pairs))
    return out, digests


def _drop_cross_split_twins(candidates: dict[str, ImageCandidates], digests: dict[str, dict[tuple[int, int], bytes]],
                            split_of: dict[str, str]) -> int:
    """Drop candidates whose test crop is pixel-identical to one in another split; returns how many.

    Near-binary boards repeat simple patterns (a straight trace edge) byte for byte across images and
    groups; such twins in two splits count as train/KPI leakage (SPEC §5, identical test-image bytes).
    """
    splits_of_digest: dict[bytes, set[str]] = {}
    for image_id, by_origin in digests.items():
        for digest in by_origin.values():
            splits_of_digest.setdefault(digest, set()).add(split_of[image_id])
    shared = {d for d, where in splits_of_digest.items() if len(where) > 1}
    n_dropped = 0
    for image_id, found in candidates.items():
        keep = {xy for xy, d in digests[image_id].items() if d not in shared}
        defects = [c for c in found.defects if (c[0], c[1]) in keep]
        passes = [xy for xy in found.passes if xy in keep]
        n_dropped += len(found.defects) - len(defects) + len(found.passes) - len(passes)
        found.defects, found.passes = defects, passes
    return n_dropped


def _write_crops(ws: Path, pairs: list[DeepPcbPair], split_of: dict[str, str], chosen: dict[str, list[Crop]],
                 *, crop: int, kind_of: Callable[[DeepPcbPair], str],
                 progress: Progress | None) -> list[dict[str, str]]:
    """Cut the chosen crops into `images.partial/<split>/<image id>/{test,golden}/`; return the CSV rows."""
    staging = ws / STAGING_IMAGES
    rows: list[dict[str, str]] = []
    todo = [p for p in pairs if chosen.get(p.image_id)]
    for k, pair in enumerate(todo):
        split = split_of[pair.image_id]
        test = read_image(pair.test_path, where=f"{COMMAND}: test image of {pair.image_id}")
        golden = read_image(pair.template_path, where=f"{COMMAND}: template of {pair.image_id}")
        folder = f"{split}/{pair.image_id}"
        for sub in ("test", "golden"):
            (staging / folder / sub).mkdir(parents=True, exist_ok=True)
        for _, x, y, label in chosen[pair.image_id]:
            name = f"{pair.image_id}_y{y:03d}_x{x:03d}"
            for sub, image in (("test", test), ("golden", golden)):
                ok, buf = cv2.imencode(IMAGE_EXT, np.ascontiguousarray(image[y : y + crop, x : x + crop]))
                if not ok:
                    raise ContractError(f"{COMMAND}: OpenCV could not encode crop {name} of {pair.test_path} as PNG.")
                write_png(staging / folder / sub / f"{name}_{LIGHT}{IMAGE_EXT}", buf.tobytes())
            rows.append({"input_path": f"{folder}/test", "golden_path": f"{folder}/golden", "label": label,
                         "object_name": name, "boardname": pair.image_id, "component_kind": kind_of(pair)})
        if progress:
            progress("write", k + 1, len(todo))
    return rows


def import_deeppcb(src: Path, ws: Path, *, crop: int = 64, mode: str = "defect-centred", stride: int | None = None,
                   max_pairs: int | None = None, splits: str = DEFAULT_SPLITS, pass_ratio: float = 0.9,
                   max_per_split: int = 8000, filter_blank: bool = True, seed: int = 0, force: bool = False,
                   component_kind: str = "trace", progress: Progress | None = None) -> ImportSummary:
    """Build a workspace of labelled `crop` x `crop` test/golden crops from DeepPCB pairs.

    Args:
        mode: `defect-centred` (a crop around each box, PASS crops from box-free areas) or `tiles`
            (a regular grid every `stride` px, default `crop`).
        splits: fractions of whole images per split; holdout and pool may be 0.
        pass_ratio: share of PASS rows per split; defect rows are all kept up to the `max_per_split` cap.
        filter_blank: drop PASS crops whose golden is near-uniform (no copper edge to compare).
        force: replace `ws` if a previous import created it.
        component_kind: `trace` (one kind for all rows) or `group` (the DeepPCB board group).

    Raises:
        ConfigError: bad options, missing source, a target folder that is not ours.
        ContractError: malformed annotation lines or unreadable images (file and line named).
    """
    started = time.perf_counter()
    src, ws = Path(src).expanduser(), Path(ws).expanduser()
    _check_options(crop, mode, stride, max_pairs, pass_ratio, max_per_split, component_kind)
    fractions = parse_splits(splits)
    check_target(ws, src, force=force, command=COMMAND)
    found, skipped = discover_pairs(src)
    ws_existed = ws.exists()
    ws.mkdir(parents=True, exist_ok=True)
    try:
        with RunLock(ws / LOCK_NAME):
            check_target(ws, src, force=force, command=COMMAND)  # again, now that no other import can start
            return _import_locked(src, ws, found, skipped, started=started, crop=crop, mode=mode, stride=stride,
                                  max_pairs=max_pairs, fractions=fractions, pass_ratio=pass_ratio,
                                  max_per_split=max_per_split, filter_blank=filter_blank, seed=seed,
                                  component_kind=component_kind, progress=progress)
    except BaseException:
        if not ws_existed and not any(ws.iterdir()):
            ws.rmdir()  # leave no empty folder behind when we fail before writing anything
        raise


def _import_locked(src: Path, ws: Path, found: list[DeepPcbPair], skipped: list[Skipped], *, started: float,
                   crop: int, mode: str, stride: int | None, max_pairs: int | None, fractions: dict[str, float],
                   pass_ratio: float, max_per_split: int, filter_blank: bool, seed: int, component_kind: str,
                   progress: Progress | None) -> ImportSummary:
    pairs = _limit_pairs(found, max_pairs, seed)
    plan = assign_splits({p.image_id: p.group for p in pairs}, fractions, seed)
    rules = CropRules(crop=crop, mode=mode, stride=stride, filter_blank=filter_blank)
    candidates, digests = _scan(pairs, rules, seed, progress)
    n_twins = _drop_cross_split_twins(candidates, digests, plan.split_of)

    chosen: dict[str, list[Crop]] = {}
    split_stats: dict[str, dict[str, Any]] = {}
    for index, split in enumerate(fractions):
        ids = [p.image_id for p in pairs if plan.split_of[p.image_id] == split]
        defects = {i: [(i, x, y, lab) for x, y, lab in candidates[i].defects] for i in ids}
        passes = {i: [(i, x, y, PASS_LABEL) for x, y in candidates[i].passes] for i in ids}
        picked = select_split(defects, passes, pass_ratio=pass_ratio, max_per_split=max_per_split,
                              rng=np.random.default_rng([seed, 2, index]))
        if not picked.crops:
            raise ConfigError(
                f"{COMMAND}: split '{split}' gets no crops from its {len(ids)} image(s) (no box fits a crop and "
                "every PASS crop is blank); import more pairs (--max-pairs), change --crop, or pass --keep-blank."
            )
        for item in picked.crops:
            chosen.setdefault(item[0], []).append(item)
        split_stats[split] = {
            "n_images": len(ids), "groups": sorted({p.group for p in pairs if plan.split_of[p.image_id] == split}),
            "n_defect_available": picked.n_defect_available, "n_pass_available": picked.n_pass_available,
            "n_defect_capped": picked.n_defect_capped,
        }
    clear_target(ws)
    write_marker(ws, command=COMMAND, status="in_progress", extra={"source": str(src.resolve())})
    group_of = {p.image_id: p.group for p in pairs}
    kind_of: Callable[[DeepPcbPair], str] = (lambda p: p.group) if component_kind == "group" else (lambda p: "trace")
    rows = _write_crops(ws, pairs, plan.split_of, chosen, crop=crop, kind_of=kind_of, progress=progress)
    publish_images(ws)

    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table["split"] = table["input_path"].str.split("/", n=1).str[0]
    label_counts: dict[str, dict[str, int]] = {}
    for split in fractions:
        part = table[table["split"] == split].sort_values(["input_path", "object_name"], kind="stable")
        write_csv_atomic(ws / SPLIT_CSV[split], part[list(COLUMNS)])
        counts = part["label"].value_counts()
        label_counts[split] = {lab: int(counts.get(lab, 0)) for lab in LABELS}
        split_stats[split]["n_rows"] = int(len(part))
        split_stats[split]["labels"] = label_counts[split]
        split_stats[split]["defect_share"] = round(1.0 - label_counts[split][PASS_LABEL] / len(part), 4)
    write_text_atomic(ws / layout.SPEC_REL, derived_spec_text(crop=crop, pass_ratio=pass_ratio, source="DeepPCB"))

    used = [candidates[p.image_id] for p in pairs]
    n_boxes = sum(c.n_boxes for c in used)
    details: dict[str, Any] = {
        "created_by": COMMAND,
        "source": str(src.resolve()),
        "workspace": str(ws.resolve()),
        "parameters": {"crop": crop, "mode": mode, "stride": stride, "max_pairs": max_pairs,
                       "splits": fractions, "pass_ratio": pass_ratio, "max_per_split": max_per_split,
                       "filter_blank": filter_blank, "seed": seed, "component_kind": component_kind,
                       "min_inside": rules.min_inside, "margin_px": rules.margin,
                       "min_foreground": rules.min_foreground, "min_std": rules.min_std},
        "lights": {LIGHT: 0}, "image_ext": IMAGE_EXT,
        "pairs": {"found": len(found), "used": len(pairs), "skipped": len(skipped),
                  "skipped_examples": [{"path": s.path, "reason": s.reason} for s in skipped[:50]]},
        "groups": {g: sum(1 for p in pairs if p.group == g) for g in sorted(set(group_of.values()))},
        "split_plan": plan.to_json(),
        "splits": split_stats,
        "boxes": {"n_boxes": n_boxes, "n_with_crop": sum(c.n_boxes_labelled for c in used),
                  "share_with_crop": round(sum(c.n_boxes_labelled for c in used) / max(1, n_boxes), 4),
                  "n_too_large": sum(c.n_boxes_too_large for c in used),
                  "n_ambiguous": sum(c.n_boxes_ambiguous for c in used)},
        "windows": {"n_dropped_partial": sum(c.n_dropped_partial for c in used),
                    "n_dropped_mixed": sum(c.n_dropped_mixed for c in used),
                    "n_pass_windows": sum(c.n_pass_windows for c in used),
                    "n_blank_pass_filtered": sum(c.n_blank for c in used),
                    "n_cross_split_twins_dropped": n_twins},
    }
    duration = time.perf_counter() - started
    details["duration_s"] = round(duration, 2)
    report = ws / SUMMARY_NAME
    write_json_atomic(report, details)
    write_marker(ws, command=COMMAND, status="complete", extra={"source": str(src.resolve())})
    return ImportSummary(ws.resolve(), report.resolve(), len(pairs), label_counts, duration, details)
