"""Hypothesis: whatever the pool holds, mining never returns a validation or KPI row (by key or by bytes)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deftpipe.mining import MiningConfig, MiningHistory, MiningLayout, ProtectedSets, leakage_keys, run_mining
from deftpipe.workspace.content_hash import content_hashes
from tests.helpers import LIGHTS, write_pair
from tests.unit.mining.conftest import COLUMNS, VectorEmbedder, unit

N_VAL, N_KPI, N_POOL = 4, 4, 6


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("prop") / "ws"
    images = root / "images"
    rows: dict[str, list[tuple[str, str, str, str]]] = {"val": [], "kpi": [], "pool": [], "copy": []}
    for split, n in (("val", N_VAL), ("kpi", N_KPI), ("pool", N_POOL)):
        for i in range(n):
            obj = f"{split.upper()}{i}@1"
            write_pair(images, split, obj, defect=True, seed=100 * len(split) + i)
            rows[split].append((f"{split}/test", f"{split}/golden", "missing", obj))
    # Byte-identical copies of every val / KPI sample under pool-looking names.
    for split in ("val", "kpi"):
        for i in range(N_VAL if split == "val" else N_KPI):
            obj = f"{split.upper()}{i}@1"
            write_pair(images, "copy", f"C_{obj}", defect=True, seed=100 * len(split) + i)
            rows["copy"].append(("copy/test", "copy/golden", "missing", f"C_{obj}"))
    layout = MiningLayout(workspace_root=root, lights=LIGHTS, image_ext=".png")
    frames = {"validation": pd.DataFrame(rows["val"], columns=COLUMNS),
              "kpi": pd.DataFrame(rows["kpi"], columns=COLUMNS)}
    protected = ProtectedSets.from_frames(frames, images_dir=images, lights=LIGHTS, image_ext=".png",
                                          workspace_root=root)
    return {"rows": rows, "layout": layout, "protected": protected}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(picks=st.lists(st.tuples(st.sampled_from(["val", "kpi", "pool", "copy"]), st.integers(0, 7)),
                      min_size=1, max_size=12, unique=True),
       top_k=st.integers(1, 6), min_sim=st.sampled_from([-1.0, 0.0, 0.5]))
def test_mining_never_returns_a_protected_row(world: dict[str, object], picks: list[tuple[str, int]], top_k: int,
                                              min_sim: float) -> None:
    rows = world["rows"]
    assert isinstance(rows, dict)
    chosen = [rows[s][i % len(rows[s])] for s, i in picks]
    pool = pd.DataFrame(chosen, columns=COLUMNS).drop_duplicates().reset_index(drop=True)
    gaps = pd.DataFrame(rows["kpi"][:2], columns=COLUMNS)
    embedder = VectorEmbedder({name: unit(1.0) for *_, name in chosen + rows["kpi"][:2]})  # all identical
    layout = world["layout"]
    protected = world["protected"]
    assert isinstance(layout, MiningLayout) and isinstance(protected, ProtectedSets)
    res = run_mining(gaps, pool, embedder=embedder, cfg=MiningConfig(top_k_per_target=top_k, min_similarity=min_sim,
                                                                     layout=layout),
                     history=MiningHistory(), protected=protected)
    mined_keys = set(leakage_keys(res.mined))
    assert not mined_keys & (protected.keys["validation"] | protected.keys["kpi"])
    locator = layout.locator(layout.workspace_root)
    assert not set(content_hashes(res.mined, locator)) & protected.hashes
    n_open = sum(1 for name in pool["object_name"] if name.startswith("POOL"))
    assert res.n_rejected == len(pool) - n_open  # every val / KPI row and byte copy is counted
    assert res.n_mined <= min(n_open, 2 * top_k)
    assert np.all(res.mined["label"] == "missing")
