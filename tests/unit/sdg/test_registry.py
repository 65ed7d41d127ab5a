"""Registry plumbing: registration rules, heavy-generator interface, routing's `supports` question."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from deftpipe.errors import ConfigError
from deftpipe.sdg import (
    BaseHeavyGenerator,
    SdgConfig,
    generators_for,
    get_generator,
    register_generator,
    run_sdg,
    supported_labels,
    supports,
    unregister_generator,
)
from tests.unit.sdg.conftest import EXT, LIGHTS, gaps_frame


class FakeInpaint(BaseHeavyGenerator):
    name = "fake_inpaint"
    supported_labels = frozenset({"scratch"})

    def _load(self) -> Any:
        return "loaded"

    def _inpaint(self, test: np.ndarray, region: np.ndarray, label: str, rng: np.random.Generator,
                 params: dict[str, Any]) -> np.ndarray:
        out = test.copy()
        out[:, region] = 250
        return out


@pytest.fixture
def fake_heavy(tmp_path: Path) -> Iterator[FakeInpaint]:
    gen = FakeInpaint(weights_path=tmp_path / "weights.bin")
    register_generator(gen)
    yield gen
    unregister_generator(gen.name)


def test_duplicate_and_unknown_names() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register_generator(type(get_generator("missing")))
    with pytest.raises(ConfigError, match="Did you mean 'scratch'"):
        get_generator("scrach")


def test_supports_and_supported_labels() -> None:
    labels = supported_labels()
    assert {"PASS", "missing", "bridge", "open", "pin-hole"} <= labels
    assert supports("bridge") and supports("solder_ball")  # the generic fallback covers any defect
    assert not supports("solder_ball", generic_fallback=False)
    assert supports("PASS") and not supports("PASS", enabled=["missing"])


def test_heavy_generator_without_weights_falls_back(fake_heavy: FakeInpaint,
                                                    component_ws: tuple[Path, pd.DataFrame]) -> None:
    assert fake_heavy.available() == (False, f"fake_inpaint: local weights '{fake_heavy.weights_path}' not found "
                                             "(nothing is downloaded)")
    ws, train = component_ws
    res = run_sdg(gaps_frame(["scratch"]), train, workspace_root=ws, train_images_dir=ws / "images", lights=LIGHTS,
                  image_ext=EXT, iter_dir=ws / "results/run_x/iter1", run_rel="results/run_x",
                  cfg=SdgConfig(num_sdg=1))
    assert list(res.records["generator"]) == ["scratch"]


def test_heavy_generator_with_local_weights_outranks_cpu(fake_heavy: FakeInpaint,
                                                         component_ws: tuple[Path, pd.DataFrame]) -> None:
    assert fake_heavy.weights_path is not None
    fake_heavy.weights_path.write_bytes(b"w")
    assert [g.name for g in generators_for("scratch")] == ["fake_inpaint", "scratch"]
    ws, train = component_ws
    res = run_sdg(gaps_frame(["scratch"]), train, workspace_root=ws, train_images_dir=ws / "images", lights=LIGHTS,
                  image_ext=EXT, iter_dir=ws / "results/run_x/iter1", run_rel="results/run_x",
                  cfg=SdgConfig(num_sdg=1))
    assert list(res.records["generator"]) == ["fake_inpaint"]
    assert res.records["psnr_unchanged_db"].iloc[0] == float("inf")
