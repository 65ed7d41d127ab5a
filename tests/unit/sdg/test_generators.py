"""Every built-in generator: changes the test only inside its mask, leaves the golden alone, is seed-deterministic."""
from __future__ import annotations

import numpy as np
import pytest

from deftpipe.sdg import BaseGenerator, GeneratorUnfit, generators_for, get_generator, registered_generators
from deftpipe.sdg._imaging import is_binary_like, poisson_blend, psnr
from deftpipe.sdg._layout import estimate_layout
from deftpipe.sdg.nuisance import diagnose_nuisance
from tests.unit.sdg.conftest import component_golden, real_test_of, trace_golden

COMPONENT = ("missing", "shift", "tombstone", "bridge", "excess_solder", "insufficient_solder",
             "foreign_material", "scratch", "cutpaste")
TRACE = ("open", "short", "mousebite", "spur", "copper", "pin-hole", "cutpaste")


def _check_local_edit(gen: BaseGenerator, test: np.ndarray, golden: np.ndarray, seed: int) -> np.ndarray:
    test_before, golden_before = test.copy(), golden.copy()
    new, mask, params = gen.generate(test, golden, np.random.default_rng([seed, 1, 0]), {"label": "x"})
    assert new.dtype == np.uint8 and new.shape == test.shape
    assert mask.dtype == bool and mask.shape == test.shape[1:]
    np.testing.assert_array_equal(test, test_before)  # inputs are never modified
    np.testing.assert_array_equal(golden, golden_before)
    np.testing.assert_array_equal(new[:, ~mask], test[:, ~mask])
    assert psnr(new, test, ~mask) == float("inf")
    changed = (new != test).any(axis=0)
    assert changed.sum() >= 2, f"{gen.name} changed almost nothing"
    assert mask.mean() < 0.5, f"{gen.name} mask covers {mask.mean():.0%} of the image"
    assert isinstance(params, dict)
    return new


@pytest.mark.parametrize("name", COMPONENT)
@pytest.mark.parametrize("kind", ["chip", "ic"])
def test_component_generators_paint_only_inside_mask(name: str, kind: str) -> None:
    gen = get_generator(name)
    for seed in range(3):
        golden = component_golden(kind, seed=seed)
        test = real_test_of(golden, seed)
        assert gen.suits(golden)
        _check_local_edit(gen, test, golden, seed)


@pytest.mark.parametrize("name", TRACE)
def test_trace_generators_paint_only_inside_mask_and_stay_binary(name: str) -> None:
    gen = get_generator(name)
    for seed in range(3):
        golden = trace_golden(seed=seed)
        assert gen.suits(golden)
        new = _check_local_edit(gen, golden.copy(), golden, seed)
        assert set(np.unique(new)) <= {0, 255}


@pytest.mark.parametrize("name", COMPONENT[:-1] + TRACE[:-1])
def test_generators_are_deterministic_per_seed_and_vary_across_seeds(name: str) -> None:
    gen = get_generator(name)
    golden = trace_golden(seed=1) if name in TRACE else component_golden("chip", seed=1)
    test = golden.copy() if name in TRACE else real_test_of(golden, 1)
    runs = [gen.generate(test, golden, np.random.default_rng([7, 1, k]), {})[0] for k in (0, 0, 1, 2)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not (np.array_equal(runs[0], runs[2]) and np.array_equal(runs[0], runs[3]))


def test_multi_light_geometry_is_shared_and_appearance_per_light() -> None:
    golden = component_golden("chip", seed=2)
    test = real_test_of(golden, 2)
    new, mask, _ = get_generator("excess_solder").generate(test, golden, np.random.default_rng(0), {})
    changed = [(new[c] != test[c]) for c in range(2)]
    overlap = (changed[0] & changed[1]).sum() / max(1, (changed[0] | changed[1]).sum())
    assert overlap > 0.8
    assert not np.array_equal(new[0][mask], new[1][mask])


def test_domain_routing_component_vs_trace() -> None:
    comp, trace = component_golden("chip"), trace_golden()
    assert not is_binary_like(comp) and is_binary_like(trace)
    assert get_generator("missing").suits(comp) and not get_generator("missing").suits(trace)
    assert get_generator("open").suits(trace) and not get_generator("open").suits(comp)
    assert [g.name for g in generators_for(" Missing ")] == ["missing"]
    assert generators_for("solder_ball") == []


def test_layout_estimate_finds_body_and_pads_and_falls_back_on_flat_image() -> None:
    golden = component_golden("chip", seed=0)
    lay = estimate_layout(golden)
    assert lay.body_found and lay.pads_found and lay.axis == 0
    x0, y0, x1, y1 = lay.body_box
    assert 10 <= x0 <= 16 and 32 <= x1 <= 38 and 15 <= y0 <= 20 and 27 <= y1 <= 32
    assert len(lay.pads) >= 2
    assert lay.solder_level[0] > lay.body_level[0] > lay.board_level[0]
    flat = np.full((2, 32, 32), 90, np.uint8)
    lay = estimate_layout(flat)
    assert not lay.body_found and lay.body.any() and len(lay.pads) == 2


def test_bridge_between_neighbouring_ic_leads() -> None:
    golden = component_golden("ic", seed=0)
    new, mask, params = get_generator("bridge").generate(golden, golden, np.random.default_rng(1), {"pair_rank": 0})
    i, j = params["pad_pair"]
    lay = estimate_layout(golden)
    ci, cj = lay.centre(lay.pads[i]), lay.centre(lay.pads[j])
    assert abs(ci[0] - cj[0]) < 3  # same side of the package: neighbouring leads
    assert new[0][mask].mean() > golden[0][mask].mean() + 40  # bright solder


def test_trace_generator_unfit_on_blank_image() -> None:
    blank = np.full((1, 32, 32), 255, np.uint8)
    blank[0, 0, 0] = 0  # one copper pixel keeps it "binary"
    with pytest.raises(GeneratorUnfit, match="no place for an open"):
        get_generator("open").generate(blank, blank, np.random.default_rng(0), {})


def test_nuisance_changes_whole_frame_and_diagnosis_drives_kind() -> None:
    golden = component_golden("chip", seed=4)
    test = real_test_of(golden, 4)
    gen = get_generator("nuisance")
    new, mask, params = gen.generate(test, golden, np.random.default_rng(0), {})
    assert mask.all() and params["kind"] in ("misalignment", "illumination", "noise", "blur", "benign_variation")
    bright = np.clip(test.astype(np.float32) * 1.2, 0, 255).astype(np.uint8)
    diag = diagnose_nuisance(bright, golden)
    assert diag["weights"]["illumination"] == 1.0 and diag["gain"][0] > 1.1
    kinds = [gen.generate(test, golden, np.random.default_rng(k), {"diagnosis": diag})[2]["kind"] for k in range(30)]
    assert kinds.count("illumination") >= 10
    new, _, params = gen.generate(test, golden, np.random.default_rng(0), {"kind": "blur"})
    assert params["kind"] == "blur" and psnr(new, test) < 60


def test_poisson_blend_keeps_source_contrast_and_outside_pixels() -> None:
    rng = np.random.default_rng(0)
    dst = (rng.normal(0, 3, (40, 40)) + 100).clip(0, 255).astype(np.uint8)
    src = dst.copy()
    src[18:22, 18:22] = 30
    mask = np.zeros((40, 40), bool)
    mask[15:25, 15:25] = True
    out = poisson_blend(dst, src, mask)
    np.testing.assert_array_equal(out[~mask], dst[~mask])
    assert out[19, 19] < 45


def test_every_builtin_is_registered_with_labels() -> None:
    gens = registered_generators()
    for name in (*COMPONENT, *TRACE, "nuisance"):
        assert name in gens
    assert gens["cutpaste"].generic and not gens["missing"].generic
    assert gens["nuisance"].supported_labels == frozenset({"PASS"})
