"""Per-sample work of the SDG engine: base-pair choice by component kind, generator choice, painting, records.

`make_sample` is deterministic in (seed, iteration, k): base pairs are drawn with
`default_rng([seed, iteration, k, 1000003])`, painting with `default_rng([seed, iteration, k])`
(`[..., k, t]` for the t-th retry on another base).
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import pandas as pd

from deftpipe.errors import ConfigError, ContractError
from deftpipe.sdg._imaging import psnr
from deftpipe.sdg.nuisance import diagnose_nuisance
from deftpipe.sdg.registry import BaseGenerator, GeneratorUnfit
from deftpipe.workspace.images import read_stack
from deftpipe.workspace.labels import normalize_labels
from deftpipe.workspace.layout import PASS_LABEL
from deftpipe.workspace.paths import ImageLocator

if TYPE_CHECKING:
    from deftpipe.sdg.engine import SdgConfig


@dataclass(frozen=True)
class SdgSample:
    """One generated sample, still in memory: encoded test planes + the golden files to copy."""

    index: int
    object_name: str
    label: str
    test_bytes: tuple[bytes, ...]
    golden_files: tuple[Path, ...]
    extra: dict[str, Any]
    record: dict[str, Any]


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def component_kind(row: pd.Series | dict[str, Any]) -> str | None:
    """SPEC §5: the `component_kind` column, else the object_name prefix before '@', else None (any)."""
    kind = _text(row.get("component_kind"))
    if kind:
        return kind
    obj = _text(row.get("object_name"))
    return obj.split("@", 1)[0] if "@" in obj else None


def _family(kind: str | None) -> str | None:
    """Reference-designator family of a kind: 'C1018' -> 'C' (a softer match than the exact kind)."""
    if not kind:
        return None
    m = re.match(r"[A-Za-z_]+", kind)
    return m.group(0).rstrip("_").lower() if m else None


def routed_order(rows: pd.DataFrame) -> pd.DataFrame:
    keys = [c for c in ("weakness", "input_path", "object_name") if c in rows.columns]
    asc = [c != "weakness" for c in keys]
    return rows.sort_values(keys, ascending=asc, kind="mergesort") if keys else rows


class Bases:
    """PASS training pairs, their kinds and a decode cache."""

    def __init__(self, train_rows: pd.DataFrame, locator: ImageLocator) -> None:
        labels = normalize_labels(train_rows["label"])
        rows = train_rows[labels == PASS_LABEL]
        # Paint on real pairs: synthetic PASS rows of earlier iterations are bases only when nothing else exists.
        synthetic = rows["object_name"].astype(str).str.contains("__sdg", regex=False)
        if "origin" in rows.columns:
            synthetic |= rows["origin"].astype(str) == "sdg"
        self.rows = rows[~synthetic] if (~synthetic).any() else rows
        self.locator = locator
        # where source_input_path / source_golden_path are rooted, relative to the workspace ("" = the root)
        rel = locator.images_dir.relative_to(locator.workspace_root).as_posix()
        self.images_rel = "" if rel == "." else rel
        self.kinds = [component_kind(r) for _, r in self.rows.iterrows()]
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, list[Path]]] = {}

    def candidates(self, kind: str | None) -> tuple[list[int], str]:
        """Positions of bases matching `kind`: exact kind, else same designator family, else any."""
        if kind is not None:
            exact = [i for i, k in enumerate(self.kinds) if k == kind]
            if exact:
                return exact, "kind"
            fam = _family(kind)
            same = [i for i, k in enumerate(self.kinds) if fam is not None and _family(k) == fam]
            if same:
                return same, "family"
        return list(range(len(self.kinds))), "any"

    def load(self, pos: int) -> tuple[np.ndarray, np.ndarray, list[Path]]:
        if pos not in self._cache:
            row = self.rows.iloc[pos]
            where = f"training CSV line {int(self.rows.index[pos]) + 2} ({row['object_name']})"
            tests, goldens = self.locator.row_paths(str(row["object_name"]), str(row["input_path"]),
                                                    str(row["golden_path"]))
            for p in (*tests, *goldens):
                self.locator.check_file_confined(str(p), where=where)
            t = read_stack([str(p) for p in tests], where=where)
            g = read_stack([str(p) for p in goldens], where=where)
            if t.shape != g.shape:
                raise ContractError(f"{where}: test is {t.shape} but golden is {g.shape}; they must match.")
            self._cache[pos] = (t, g, goldens)
        return self._cache[pos]


def _routed_pair(row: pd.Series, workspace_root: Path, lights: tuple[str, ...],
                 image_ext: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The KPI pair behind a routed row (via its `filepath`), for nuisance diagnosis; None when unreadable."""
    fp, ip, obj, gp = (_text(row.get(c)) for c in ("filepath", "input_path", "object_name", "golden_path"))
    if not (fp and ip and obj and gp):
        return None
    suffix = f"{ip.strip('/')}/{obj}_{lights[0]}{image_ext}"
    if not fp.replace("\\", "/").endswith(suffix):
        return None
    prefix = fp.replace("\\", "/")[: -len(suffix)].rstrip("/")
    try:
        loc = ImageLocator(workspace_root / prefix, workspace_root, lights, image_ext)
        tests, goldens = loc.row_paths(obj, ip, gp)
        t = read_stack([str(p) for p in tests])
        g = read_stack([str(p) for p in goldens])
    except (ContractError, OSError):
        return None
    return (t, g) if t.shape == g.shape else None


def _encode(plane: np.ndarray, ext: str) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, plane, params)
    if not ok:
        raise ConfigError(f"sdg: OpenCV cannot encode images as '{ext}' (dataset.classify.image_ext); use .png.")
    return buf.tobytes()


def _generate_one(gen: BaseGenerator, base: np.ndarray, golden: np.ndarray, rng: np.random.Generator,
                  params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, dict[str, Any], int]:
    new, mask, used = gen.generate(base, golden, rng, params)
    if new.shape != base.shape or new.dtype != np.uint8 or mask.shape != base.shape[1:]:
        raise RuntimeError(f"SDG generator '{gen.name}' returned {new.shape} {new.dtype} / mask {mask.shape} "
                           f"for a {base.shape} uint8 input")
    mask = mask.astype(bool)
    stray = int(((new != base).any(axis=0) & ~mask).sum())
    if stray:  # a third-party generator broke the contract: keep its promise for it, and record that
        new = np.where(mask[None], new, base)
    return new, mask, used, stray


def make_sample(k: int, label: str, routed: pd.Series, bases: Bases, specific: list[BaseGenerator],
                 generic: list[BaseGenerator], workspace_root: Path, lights: tuple[str, ...], image_ext: str,
                 extra_cols: tuple[str, ...], cfg: SdgConfig) -> SdgSample:
    kind = component_kind(routed)
    cands, match = bases.candidates(kind)
    pick_rng = np.random.default_rng([cfg.seed, cfg.iteration, k, 1_000_003])
    order = [cands[i] for i in pick_rng.permutation(len(cands))][: cfg.max_base_tries]
    diagnosis = None
    if label == PASS_LABEL:
        pair = _routed_pair(routed, workspace_root, lights, image_ext)
        diagnosis = diagnose_nuisance(*pair) if pair is not None else None
    reasons: list[str] = []

    def attempts() -> Iterator[tuple[int, BaseGenerator, str]]:
        # specific generators on each candidate base first; the generic fallback only after all failed
        for pos in order:
            golden = bases.load(pos)[1]
            fits = [g for g in specific if g.suits(golden)]
            usable = [g for g in fits if g.available()[0]]
            if usable:
                yield pos, usable[0], ""
            elif fits:
                reasons.append("unavailable: " + "; ".join(g.available()[1] for g in fits))
            elif specific:
                reasons.append(f"generator(s) {[g.name for g in specific]} do not suit the image domain of "
                               f"{bases.rows.iloc[pos]['object_name']}")
        if generic and label != PASS_LABEL:
            why = reasons[0] if reasons else f"no specific generator for label '{label}'"
            for pos in order:
                yield pos, generic[0], why

    for t, (pos, gen, fallback_reason) in enumerate(attempts()):
        test, golden, golden_files = bases.load(pos)
        base = test if cfg.base == "test" else golden.copy()
        rng_key = [cfg.seed, cfg.iteration, k] if t == 0 else [cfg.seed, cfg.iteration, k, t]
        rng = np.random.default_rng(rng_key)
        params: dict[str, Any] = {"label": label}
        if diagnosis is not None:
            params["diagnosis"] = diagnosis
        try:
            new, mask, used, stray = _generate_one(gen, base, golden, rng, params)
        except GeneratorUnfit as exc:
            reasons.append(str(exc))
            continue
        encoded = tuple(_encode(new[c], image_ext) for c in range(new.shape[0]))
        written = np.stack([cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_GRAYSCALE) for b in encoded])
        src = bases.rows.iloc[pos]
        obj = f"{src['object_name']}__sdg{cfg.iteration}_{k}"
        x0 = np.nonzero(mask.any(axis=0))[0]
        y0 = np.nonzero(mask.any(axis=1))[0]
        record = {
            "sample_index": k, "object_name": obj, "label": label, "generator": gen.name,
            "generic": bool(gen.generic), "fallback_reason": fallback_reason, "base_mode": cfg.base,
            "seed": cfg.seed, "iteration": cfg.iteration, "rng_key": json.dumps(rng_key), "base_tries": t + 1,
            "params": json.dumps(used, sort_keys=True, default=str),
            "source_object_name": str(src["object_name"]), "source_input_path": str(src["input_path"]),
            "source_golden_path": str(src["golden_path"]), "source_images_dir": bases.images_rel,
            "source_kind": bases.kinds[pos] or "",
            "routed_kind": kind or "", "kind_match": match,
            "routed_object_name": _text(routed.get("object_name")), "routed_input_path": _text(routed.get("input_path")),
            "routed_weakness": float(routed["weakness"]) if "weakness" in routed.index else float("nan"),
            "mask_px": int(mask.sum()), "mask_share": round(float(mask.mean()), 6),
            "mask_bbox": json.dumps([int(x0.min()), int(y0.min()), int(x0.max()) + 1, int(y0.max()) + 1]
                                    if mask.any() else []),
            "psnr_unchanged_db": psnr(written, base, ~mask), "psnr_changed_db": psnr(written, base, mask),
            "stray_px_fixed": stray,
        }
        extra = {c: src[c] for c in extra_cols}
        return SdgSample(k, obj, label, encoded, tuple(golden_files), extra, record)
    raise ContractError(
        f"sdg: could not paint label '{label}' (sample {k}, routed row {_text(routed.get('object_name'))}, "
        f"kind {kind or 'any'}) on any of {len(order)} PASS training pair(s) tried: "
        f"{'; '.join(reasons) or 'no generator fits'}. Fix: add PASS training pairs of that kind, "
        "or enable the generic 'cutpaste' fallback."
    )


