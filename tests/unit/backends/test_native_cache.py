"""Decode cache: reuse in-process and across processes, invalidation on file change, clear errors."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from deftpipe.backends.native import cache
from deftpipe.errors import ContractError
from deftpipe.workspace.paths import ImageLocator
from deftpipe.workspace.tables import read_samples_csv
from tests.unit.backends._tiny import TinyWorkspace, make_tiny_workspace

REPO = Path(__file__).resolve().parents[3]


def _decode(ws: TinyWorkspace, cache_dir: Path | None) -> cache.DecodedPairs:
    rows = read_samples_csv(ws.val_csv)
    loc = ImageLocator(ws.images_dir, ws.root, ("LightA", "LightB"), ".png")
    return cache.decode_pairs(rows, loc, grayscale=True, size=(32, 32), cache_dir=cache_dir, csv_name="val")


def test_second_call_reuses_the_memmaps(tmp_path: Path) -> None:
    ws = make_tiny_workspace(tmp_path / "ws", n_train=2, n_val=4)
    first = _decode(ws, tmp_path / "cache")
    count = cache.decoded_image_count()
    second = _decode(ws, tmp_path / "cache")
    assert not first.from_cache and second.from_cache and cache.decoded_image_count() == count
    assert isinstance(second.test, np.memmap) and second.test.dtype == np.uint8
    assert second.test.shape == (4, 2, 32, 32)
    np.testing.assert_array_equal(np.asarray(first.golden), np.asarray(_decode(ws, None).golden))
    reg = cache.registered_channels(second, max_shift=2, cache_dir=tmp_path / "cache")
    again = cache.registered_channels(second, max_shift=2, cache_dir=tmp_path / "cache")
    assert isinstance(again["diff_plain"], np.memmap) and reg["diff_tolerant"].shape == (4, 2, 32, 32)
    other_shift = cache.registered_channels(second, max_shift=1, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("reg_*"))) == 2 and other_shift["golden_registered"].shape[0] == 4
    assert not list((tmp_path / "cache").glob(".*tmp"))


def test_leftovers_of_a_dead_builder_are_cleared(tmp_path: Path) -> None:
    ws = make_tiny_workspace(tmp_path / "ws", n_train=2, n_val=2)
    key = _decode(ws, None).key
    stale = tmp_path / "cache" / f".pairs_{key}.999999999.tmp"
    stale.mkdir(parents=True)
    (stale / "test.npy").write_bytes(b"half")
    assert not _decode(ws, tmp_path / "cache").from_cache
    assert not stale.exists()


def test_changed_file_invalidates_the_entry(tmp_path: Path) -> None:
    ws = make_tiny_workspace(tmp_path / "ws", n_train=2, n_val=2)
    first = _decode(ws, tmp_path / "cache")
    target = ws.images_dir / "boards/b2/C002@1_LightA.png"
    cv2.imwrite(str(target), np.full((32, 32), 7, np.uint8))
    os.utime(target, ns=(1, 1))
    second = _decode(ws, tmp_path / "cache")
    assert second.key != first.key and not second.from_cache
    assert int(second.test[0, 0, 0, 0]) == 7


def test_bad_images_name_the_csv_line(tmp_path: Path) -> None:
    ws = make_tiny_workspace(tmp_path / "ws", n_train=2, n_val=2)
    (ws.images_dir / "golden/b0/C003@1_LightB.png").write_bytes(b"garbage")
    with pytest.raises(ContractError, match=r"val line 3: image '.*C003@1_LightB\.png' is corrupt"):
        _decode(ws, tmp_path / "cache")
    (ws.images_dir / "golden/b0/C003@1_LightB.png").unlink()
    with pytest.raises(ContractError, match=r"val line 3: image '.*C003@1_LightB\.png' not found"):
        _decode(ws, tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("pairs_*"))


@pytest.mark.slow
def test_a_second_process_reuses_without_decoding(tmp_path: Path) -> None:
    ws = make_tiny_workspace(tmp_path / "ws", n_train=2, n_val=6)
    script = textwrap.dedent(f"""
        from pathlib import Path
        from deftpipe.backends.native import cache
        from deftpipe.workspace.paths import ImageLocator
        from deftpipe.workspace.tables import read_samples_csv
        rows = read_samples_csv({str(ws.val_csv)!r})
        loc = ImageLocator(Path({str(ws.images_dir)!r}), Path({str(ws.root)!r}), ("LightA", "LightB"), ".png")
        pairs = cache.decode_pairs(rows, loc, grayscale=True, size=(32, 32), cache_dir=Path({str(tmp_path / "c")!r}))
        cache.registered_channels(pairs, max_shift=3, cache_dir=Path({str(tmp_path / "c")!r}))
        print(pairs.from_cache, cache.decoded_image_count(), int(pairs.test.sum()))
    """)
    log = tmp_path / "decodes.log"
    env = {**os.environ, cache.DECODE_LOG_ENV: str(log), "PYTHONPATH": str(REPO / "src")}
    outs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
            for _ in range(2)]
    first, second = (o.stdout.split() for o in outs)
    assert first[:2] == ["False", "24"] and second[:2] == ["True", "0"] and first[2] == second[2]
    assert len(log.read_text().splitlines()) == 1  # one decode pass in all, by the first process
