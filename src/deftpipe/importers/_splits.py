"""Whole images to splits, then crops per split: deterministic for a seed, one image never in two splits.

With two or more board groups, KPI and holdout come from groups that train,
validation and the mining pool never see (SPEC §8: train and test on different
board groups); with one group, images are split directly.
"""
from __future__ import annotations

import difflib
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from deftpipe.errors import ConfigError

SPLIT_NAMES: tuple[str, ...] = ("train", "validation", "kpi", "holdout", "pool")
REQUIRED_SPLITS: tuple[str, ...] = ("train", "validation", "kpi")
TEST_SIDE: tuple[str, ...] = ("kpi", "holdout")
# Group subsets whose test share is this close to the best one are equally good; the seed picks.
_SHARE_TOLERANCE = 0.02
_MAX_EXACT_GROUPS = 16


def parse_splits(text: str) -> dict[str, float]:
    """`train=0.4,validation=0.15,kpi=0.15,holdout=0.1,pool=0.2` -> fractions in SPLIT_NAMES order (zeros dropped)."""
    found: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, raw = part.partition("=")
        name = name.strip().lower()
        if not sep:
            raise ConfigError(f"--splits: '{part}' has no '='; write name=fraction, e.g. train=0.4.")
        if name not in SPLIT_NAMES:
            near = difflib.get_close_matches(name, SPLIT_NAMES, n=1)
            tip = f" Did you mean '{near[0]}'?" if near else ""
            raise ConfigError(f"--splits: unknown split '{name}'; choose from {list(SPLIT_NAMES)}.{tip}")
        if name in found:
            raise ConfigError(f"--splits: '{name}' is given twice; name each split once.")
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"--splits: '{part}' needs a number after '=', got {raw!r}.") from None
        if not (0.0 <= value <= 1.0):
            raise ConfigError(f"--splits: {name}={raw} must be a fraction between 0 and 1.")
        found[name] = value
    missing = [s for s in REQUIRED_SPLITS if found.get(s, 0.0) <= 0.0]
    if missing:
        raise ConfigError(
            f"--splits: {', '.join(missing)} must have a fraction above 0 (a workspace needs train, validation "
            f"and kpi sets; holdout and pool are optional), got '{text}'."
        )
    total = sum(found.values())
    if abs(total - 1.0) > 0.01:
        raise ConfigError(f"--splits: fractions add up to {total:g}, not 1; adjust them (got '{text}').")
    return {s: found[s] / total for s in SPLIT_NAMES if found.get(s, 0.0) > 0.0}


def allocate(n: int, fractions: Mapping[str, float], *, where: str) -> dict[str, int]:
    """`n` items over splits by largest remainder, at least one each."""
    names = list(fractions)
    if n < len(names):
        raise ConfigError(
            f"{where}: {n} image(s) cannot fill {len(names)} splits {names} (each needs at least one whole image); "
            "import more pairs (--max-pairs) or set some optional splits to 0 in --splits."
        )
    total = sum(fractions.values())
    exact = [n * fractions[s] / total for s in names]
    counts = [int(e) for e in exact]
    for i in sorted(range(len(names)), key=lambda i: (-(exact[i] - counts[i]), i))[: n - sum(counts)]:
        counts[i] += 1
    for i in range(len(names)):
        while counts[i] < 1:
            donor = max(range(len(names)), key=lambda j: (counts[j], -j))
            counts[donor] -= 1
            counts[i] += 1
    return dict(zip(names, counts))


def _deal(image_ids: Sequence[str], fractions: Mapping[str, float], rng: np.random.Generator,
          *, where: str) -> dict[str, str]:
    ids = sorted(image_ids)
    order = [ids[i] for i in rng.permutation(len(ids))]
    out: dict[str, str] = {}
    start = 0
    for split, count in allocate(len(order), fractions, where=where).items():
        for image_id in order[start : start + count]:
            out[image_id] = split
        start += count
    return out


def _pick_test_groups(sizes: Mapping[str, int], target: float, rng: np.random.Generator,
                      n_test: int, n_train: int) -> tuple[str, ...] | None:
    groups = sorted(sizes)
    total = sum(sizes.values())
    if len(groups) <= _MAX_EXACT_GROUPS:
        subsets = [c for k in range(1, len(groups)) for c in itertools.combinations(groups, k)]
    else:  # greedy fallbacks from a few seeded orders keep this cheap for very many groups
        subsets = []
        for _ in range(64):
            chosen: list[str] = []
            for g in (groups[i] for i in rng.permutation(len(groups))):
                if sum(sizes[c] for c in chosen) / total >= target or len(chosen) == len(groups) - 1:
                    break
                chosen.append(g)
            subsets.append(tuple(sorted(chosen)))
    size_of = {s: sum(sizes[g] for g in s) for s in subsets}
    feasible = [s for s in subsets if size_of[s] >= n_test and total - size_of[s] >= n_train]
    if not feasible:
        return None
    error = {s: abs(size_of[s] / total - target) for s in feasible}
    best = min(error.values())
    near = sorted(s for s in feasible if error[s] <= best + _SHARE_TOLERANCE)
    return near[int(rng.integers(len(near)))]


@dataclass(frozen=True)
class SplitPlan:
    """Which split each image id goes to, and how that was decided (for the import report)."""

    split_of: dict[str, str]
    strategy: str                  # "groups" (test side from unseen groups) or "images"
    test_groups: tuple[str, ...]
    train_groups: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"strategy": self.strategy, "test_side_groups": list(self.test_groups),
                "train_side_groups": list(self.train_groups)}


def assign_splits(group_of: Mapping[str, str], fractions: Mapping[str, float], seed: int) -> SplitPlan:
    """Assign every image id (keys of `group_of`) to one split."""
    rng = np.random.default_rng([seed, 1])
    sizes: dict[str, int] = {}
    for group in group_of.values():
        sizes[group] = sizes.get(group, 0) + 1
    test = {s: f for s, f in fractions.items() if s in TEST_SIDE}
    train = {s: f for s, f in fractions.items() if s not in TEST_SIDE}
    groups = sorted(sizes)
    chosen = None
    if len(groups) >= 2 and test and train:
        chosen = _pick_test_groups(sizes, sum(test.values()), rng, len(test), len(train))
    if chosen is None:
        split_of = _deal(list(group_of), fractions, rng, where="split by image")
        return SplitPlan(split_of, "images", (), tuple(groups))
    test_ids = [i for i, g in group_of.items() if g in chosen]
    train_ids = [i for i, g in group_of.items() if g not in chosen]
    split_of = _deal(test_ids, test, rng, where=f"test-side groups {list(chosen)}")
    split_of.update(_deal(train_ids, train, rng, where="train-side groups"))
    return SplitPlan(split_of, "groups", tuple(chosen), tuple(g for g in groups if g not in chosen))


Crop = tuple[str, int, int, str]  # image id, x, y, label


def _round_robin(per_image: Mapping[str, Sequence[Crop]], rng: np.random.Generator, *,
                 shuffle_each: bool) -> list[Crop]:
    """All crops, interleaved image by image so a prefix draws evenly from every image.

    `shuffle_each` shuffles each image's own list first (annotation files list boxes in type order,
    so an unshuffled prefix would favour the types written first).
    """
    ids = sorted(per_image)
    order = {ids[i]: rank for rank, i in enumerate(rng.permutation(len(ids)))}
    lists = {i: ([per_image[i][j] for j in rng.permutation(len(per_image[i]))] if shuffle_each else per_image[i])
             for i in ids}
    ranked = [(k, order[image_id], crop) for image_id, crops in lists.items() for k, crop in enumerate(crops)]
    ranked.sort(key=lambda r: (r[0], r[1]))
    return [crop for _, _, crop in ranked]


@dataclass(frozen=True)
class SplitSelection:
    crops: list[Crop]
    n_defect_available: int
    n_pass_available: int
    n_defect_capped: int           # defect crops left out by max_per_split


def select_split(defects: Mapping[str, Sequence[Crop]], passes: Mapping[str, Sequence[Crop]], *,
                 pass_ratio: float, max_per_split: int, rng: np.random.Generator) -> SplitSelection:
    """Keep every defect crop up to the cap, then PASS crops so PASS makes up `pass_ratio` of the split."""
    defect_pool = _round_robin(defects, rng, shuffle_each=True)
    pass_pool = _round_robin(passes, rng, shuffle_each=False)
    n_def = min(len(defect_pool), max(1, int(max_per_split * (1.0 - pass_ratio) + 1e-9)))
    if n_def == 0:  # no defect here: keep a PASS-only set rather than an empty one
        n_pass = min(len(pass_pool), max_per_split)
    else:
        want = int(round(n_def * pass_ratio / (1.0 - pass_ratio)))
        n_pass = min(want, len(pass_pool), max_per_split - n_def)
    chosen = defect_pool[:n_def] + pass_pool[:n_pass]
    return SplitSelection(chosen, len(defect_pool), len(pass_pool), len(defect_pool) - n_def)
