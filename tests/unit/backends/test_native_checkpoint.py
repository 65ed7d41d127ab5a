"""Checkpoint naming and the weights_only loading rule."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from deftpipe.backends.native.checkpoint import (
    check_arch,
    checkpoint_name,
    load_checkpoint,
    parse_checkpoint_name,
    save_checkpoint,
)
from deftpipe.backends.native.model import ArchInfo
from deftpipe.errors import ContractError


class _RunsCode:
    """A pickle that would call os.getpid on load: the kind of file weights_only loading must refuse."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (os.getpid, ())


def test_names_are_zero_padded_to_three_digits_at_least() -> None:
    assert checkpoint_name(1, 6) == "model_epoch_001_step_006.pth"
    assert checkpoint_name(12, 1234) == "model_epoch_012_step_1234.pth"
    assert parse_checkpoint_name("model_epoch_012_step_1234.pth") == (12, 1234)
    assert parse_checkpoint_name("model_epoch_1_step_6.pth") is None
    assert parse_checkpoint_name("model_epoch_001_step_006.pth.tmp") is None


def test_roundtrip_keeps_plain_values(tmp_path: Path) -> None:
    path = tmp_path / checkpoint_name(1, 3)
    arch = ArchInfo("resnet_tiny", "learnable", "raw", 2)
    save_checkpoint(path, {"state_dict": {"w": torch.ones(2)}, "arch": arch.to_dict(), "spec": {"a": [1, None]}})
    payload = load_checkpoint(path)
    assert payload["spec"] == {"a": [1, None]} and payload["format"] == "deftpipe-native/1"
    assert not list(tmp_path.glob(".*tmp"))
    check_arch(payload, arch, path=path, purpose="test")


def test_pickle_carrying_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "arch": {}, "payload": _RunsCode()}, path)
    with pytest.raises(ContractError, match=r"evil\.pth' was refused: it is not weights-only data"):
        load_checkpoint(path)


def test_missing_corrupt_and_foreign_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match="not found"):
        load_checkpoint(tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ContractError, match=r"junk\.pth"):
        load_checkpoint(tmp_path / "junk.pth")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "foreign.pth")
    with pytest.raises(ContractError, match="not a deftpipe native checkpoint"):
        load_checkpoint(tmp_path / "foreign.pth")


def test_arch_mismatch_names_every_field(tmp_path: Path) -> None:
    payload = {"arch": ArchInfo("resnet_tiny", "abs-diff", "raw", 2).to_dict()}
    with pytest.raises(ContractError, match=r"x\.pth.*difference_module: 'learnable' vs 'abs-diff'; input_mode"):
        check_arch(payload, ArchInfo("resnet_tiny", "learnable", "registered_diff", 2), path=tmp_path / "x.pth",
                   purpose="train.pretrained_model_path")
