"""Split RCA gaps between synthetic defects and real-image mining (SPEC §5). Pure: tables in, tables out."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from deftpipe.errors import StageFailed

NAME = "routing"


@dataclass(frozen=True)
class RoutingConfig:
    sdg_labels: frozenset[str]   # labels some registered generator supports (PASS included)
    pool_labels: frozenset[str]  # labels present in the mining pool


@dataclass(frozen=True)
class RoutingResult:
    to_sdg: pd.DataFrame
    to_mining: pd.DataFrame
    dropped_labels: tuple[str, ...]

    def summary(self) -> str:
        def counts(df: pd.DataFrame) -> str:
            if df.empty:
                return "none"
            return ", ".join(f"{k}={v}" for k, v in df["label"].value_counts().sort_index().items())

        dropped = ", ".join(self.dropped_labels) or "none"
        return f"mining: {counts(self.to_mining)}; sdg: {counts(self.to_sdg)}; dropped labels: {dropped}"


def run(gaps: pd.DataFrame, cfg: RoutingConfig) -> RoutingResult:
    """A gap row goes to mining when its label is in the pool and to SDG when a generator supports it (both allowed)."""
    if "label" not in gaps.columns:
        raise StageFailed(NAME, f"gaps table lacks 'label' (has {sorted(gaps.columns)}); re-run rca.")
    to_sdg = gaps[gaps["label"].isin(cfg.sdg_labels)].reset_index(drop=True)
    to_mining = gaps[gaps["label"].isin(cfg.pool_labels)].reset_index(drop=True)
    dropped = tuple(sorted(set(gaps["label"]) - cfg.sdg_labels - cfg.pool_labels))
    if len(gaps) and to_sdg.empty and to_mining.empty:
        raise StageFailed(
            NAME,
            f"no gap row can be routed: labels {list(dropped)} are neither in the mining pool "
            f"({sorted(cfg.pool_labels) or 'empty'}) nor supported by a synthetic-defect generator.",
            hint="Add pool rows with these labels, or register a generator that supports them.",
        )
    return RoutingResult(to_sdg=to_sdg, to_mining=to_mining, dropped_labels=dropped)
