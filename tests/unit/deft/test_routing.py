from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from deftpipe.deft import routing
from deftpipe.errors import StageFailed

LABELS = ["PASS", "bridge", "missing", "scratch", "open"]


def _gaps(labels: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"label": labels, "object_name": [f"o{i}" for i in range(len(labels))]})


def test_split_by_pool_and_generators() -> None:
    cfg = routing.RoutingConfig(sdg_labels=frozenset({"PASS", "bridge"}), pool_labels=frozenset({"bridge", "missing"}))
    res = routing.run(_gaps(["bridge", "missing", "PASS", "open"]), cfg)
    assert list(res.to_mining["label"]) == ["bridge", "missing"]
    assert list(res.to_sdg["label"]) == ["bridge", "PASS"]
    assert res.dropped_labels == ("open",)


def test_nothing_routable_is_a_hard_stop() -> None:
    cfg = routing.RoutingConfig(sdg_labels=frozenset({"PASS"}), pool_labels=frozenset())
    with pytest.raises(StageFailed, match=r"routing: no gap row can be routed: labels \['open'\]"):
        routing.run(_gaps(["open"]), cfg)


def test_empty_gaps_route_to_nothing() -> None:
    cfg = routing.RoutingConfig(sdg_labels=frozenset({"PASS"}), pool_labels=frozenset({"PASS"}))
    res = routing.run(_gaps([]), cfg)
    assert res.to_sdg.empty and res.to_mining.empty


@given(labels=st.lists(st.sampled_from(LABELS), max_size=40),
       sdg=st.sets(st.sampled_from(LABELS)), pool=st.sets(st.sampled_from(LABELS)))
def test_routing_partitions_its_input(labels: list[str], sdg: set[str], pool: set[str]) -> None:
    """Every gap row is routed to mining, SDG, or its label is reported as dropped — never lost silently."""
    cfg = routing.RoutingConfig(sdg_labels=frozenset(sdg), pool_labels=frozenset(pool))
    try:
        res = routing.run(_gaps(labels), cfg)
    except StageFailed:
        assert labels and not (set(labels) & (sdg | pool))
        return
    routed = set(res.to_sdg["object_name"]) | set(res.to_mining["object_name"])
    for i, lab in enumerate(labels):
        assert (f"o{i}" in routed) or (lab in res.dropped_labels)
    assert set(res.to_sdg["label"]) <= sdg and set(res.to_mining["label"]) <= pool
