"""Split the SDG budget over routed labels: largest remainder by routed-row share, at least one per label.

    quota_L  = num_sdg * n_L / sum(n)          (exact share)
    alloc_L  = floor(quota_L)                  then +1 to the largest remainders
    min-one  : a label left at 0 takes one sample from the label holding the most (>1),
               labels with more routed rows first, while the budget lasts
Ties break by routed-row count (more first), then label name, so the split is deterministic.
"""
from __future__ import annotations

import math
from collections.abc import Mapping


def allocate(counts: Mapping[str, int], num_sdg: int) -> dict[str, int]:
    """Samples per label (insertion order = labels by routed rows desc, then name); sums to `num_sdg`.

    Example:
        allocate({"missing": 5, "bridge": 3, "PASS": 1}, 10) == {"missing": 6, "bridge": 3, "PASS": 1}
    """
    if num_sdg < 0:
        raise ValueError(f"num_sdg must be >= 0, got {num_sdg}")
    labels = sorted((lab for lab, n in counts.items() if n > 0), key=lambda lab: (-counts[lab], lab))
    if not labels or num_sdg == 0:
        return {lab: 0 for lab in labels}
    total = sum(counts[lab] for lab in labels)
    quota = {lab: num_sdg * counts[lab] / total for lab in labels}
    alloc = {lab: math.floor(quota[lab]) for lab in labels}
    left = num_sdg - sum(alloc.values())
    by_remainder = sorted(labels, key=lambda lab: (-(quota[lab] - alloc[lab]), -counts[lab], lab))
    for lab in by_remainder[:left]:
        alloc[lab] += 1
    for lab in labels:  # already in "more routed rows first" order
        if alloc[lab] > 0:
            continue
        donor = max(labels, key=lambda d: (alloc[d], counts[d], -labels.index(d)))
        if alloc[donor] <= 1:
            break  # budget exhausted: fewer samples than labels
        alloc[donor] -= 1
        alloc[lab] = 1
    return alloc


def quotas(counts: Mapping[str, int], num_sdg: int) -> dict[str, float]:
    """The exact (fractional) share of the budget per label, for the allocation record."""
    total = sum(n for n in counts.values() if n > 0)
    return {lab: (num_sdg * n / total if total else 0.0) for lab, n in counts.items() if n > 0}
