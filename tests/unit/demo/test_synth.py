"""One synthetic pair: determinism per seed and defects that really change the test image."""
from __future__ import annotations

import numpy as np
import pytest

from deftpipe.demo.catalog import ALLOWED_KINDS, DEFECT_LABELS, LIGHTS
from deftpipe.demo.synth import synthesize_pair
from deftpipe.errors import ConfigError
from deftpipe.preprocess.registration import register


def test_same_seed_same_pixels_different_seed_different() -> None:
    a = synthesize_pair("PASS", "ic", size=64, seed=(0, 1, 7))
    b = synthesize_pair("PASS", "ic", size=64, seed=(0, 1, 7))
    c = synthesize_pair("PASS", "ic", size=64, seed=(1, 1, 7))
    assert a.test.shape == (len(LIGHTS), 64, 64) and a.test.dtype == np.uint8
    assert np.array_equal(a.test, b.test) and np.array_equal(a.golden, b.golden)
    assert not np.array_equal(a.test, c.test)


def test_pass_pairs_differ_only_by_nuisance() -> None:
    pair = synthesize_pair("PASS", "chip_resistor", size=64, seed=(0, 2, 3), with_defect_mask=True)
    assert pair.defect_mask is not None and not pair.defect_mask.any()
    diff = np.abs(pair.test.astype(int) - pair.golden.astype(int))
    assert 0 < diff.mean() < 40  # misaligned and noisy, but the same scene


@pytest.mark.parametrize("label", DEFECT_LABELS)
def test_each_defect_changes_its_region_more_than_pass_nuisance(label: str) -> None:
    # Same seed = same scene, PASS variation and capture; only the defect differs. Both pairs are compared
    # with the golden registered as for the PASS pair, so misalignment counts as nuisance in both.
    for k, kind in enumerate(ALLOWED_KINDS[label][:2]):
        seed = (5, 3, 10 + k)
        bad = synthesize_pair(label, kind, size=64, seed=seed, with_defect_mask=True)
        ok = synthesize_pair("PASS", kind, size=64, seed=seed)
        assert np.array_equal(ok.golden, bad.golden)
        mask = bad.defect_mask
        assert mask is not None and mask.sum() >= 3, (label, kind)
        golden, _ = register(ok.test[None], ok.golden[None])
        err_bad = np.abs(bad.test.astype(int) - golden[0].astype(int))[:, mask].mean(axis=1)
        err_ok = np.abs(ok.test.astype(int) - golden[0].astype(int))[:, mask].mean(axis=1)
        assert (err_bad - err_ok).max() > 6, (label, kind, err_bad, err_ok)  # visible in at least one light


def test_impossible_defect_for_a_kind_is_refused() -> None:
    with pytest.raises(ConfigError, match="'bridge' cannot occur on a 'capacitor'"):
        synthesize_pair("bridge", "capacitor", size=32, seed=(0,))


def test_unknown_label_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match="synthetic label 'Bridge' is unknown"):
        synthesize_pair("Bridge", "ic", size=32, seed=(0,))
