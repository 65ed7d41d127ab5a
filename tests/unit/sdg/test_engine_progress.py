"""SDG reports progress (samples painted, then images staged) through the shared ProgressFn."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from deftpipe.sdg import SdgConfig, run_sdg
from tests.unit.sdg.conftest import EXT, LIGHTS, gaps_frame


def test_progress_counts_painted_then_staged_samples(component_ws: tuple[Path, pd.DataFrame]) -> None:
    ws, train = component_ws
    calls: list[tuple[int, int, str]] = []
    run_sdg(gaps_frame(["missing", "missing", "bridge"]), train, workspace_root=ws, train_images_dir=ws / "images",
            lights=LIGHTS, image_ext=EXT, iter_dir=ws / "results/run_x/iter1", run_rel="results/run_x",
            cfg=SdgConfig(num_sdg=4), progress=lambda d, t, m: calls.append((d, t, m)))
    painted = [c for c in calls if c[2].startswith("painting")]
    staged = [c for c in calls if c[2] == "staging images"]
    assert [d for d, _, _ in painted] == [1, 2, 3, 4] and {t for _, t, _ in painted} == {4}
    assert [d for d, _, _ in staged] == [1, 2, 3, 4] and staged[-1][1] == 4
