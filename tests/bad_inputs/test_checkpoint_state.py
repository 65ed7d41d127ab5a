"""Someone else's checkpoint, a pickle carrying code, and a disk that fills up during a state commit."""
from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from deftpipe.errors import ContractError, DeftError
from deftpipe.state.records import JOURNAL_FILE, STATE_FILE
from deftpipe.state.store import StateStore
from deftpipe.workspace import io as io_mod
from deftpipe.workspace.io import orphan_temp_files, read_jsonl
from tests.unit.state.conftest import new_store, run_next

from .conftest import assert_user_error, invoke, tree_snapshot

torch = pytest.importorskip("torch")

from deftpipe.backends.native.checkpoint import check_arch, load_checkpoint, save_checkpoint  # noqa: E402
from deftpipe.backends.native.model import ArchInfo, SiameseClassifier  # noqa: E402

SPEC_ARCH = ArchInfo("resnet_tiny", "learnable", "registered_diff", 2)  # what the template spec builds


def _native(path: Path, arch: ArchInfo, **extra: Any) -> Path:
    save_checkpoint(path, {"state_dict": SiameseClassifier(arch).state_dict(), "arch": arch.to_dict(), **extra})
    return path


class _MakesADir:
    """Unpickling this would create a folder: proof that code in a pickle ran."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return (os.mkdir, (str(self.target),))


# ------------------------------------------------------------------ checkpoints

def test_pickle_carrying_code_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "code_ran"
    evil = tmp_path / "model_epoch_001_step_001.pth"
    torch.save({"state_dict": {}, "arch": SPEC_ARCH.to_dict(), "x": _MakesADir(marker)}, evil)
    with pytest.raises(ContractError, match=r"model_epoch_001_step_001\.pth' was refused: it is not weights-only "
                                            r"data .*code inside a pickle is never run"):
        load_checkpoint(evil)
    assert not marker.exists()


@pytest.mark.parametrize(("make", "pattern"), [
    (lambda p: torch.save({"weights": torch.zeros(2)}, p),
     r"is not a deftpipe native checkpoint \(expected keys 'state_dict' and 'arch', got \['weights'\]\)"),
    (lambda p: torch.save(SiameseClassifier(SPEC_ARCH).state_dict(), p),  # a bare TAO-style state dict
     r"is not a deftpipe native checkpoint"),
    (lambda p: torch.save([1, 2, 3], p), r"is not a deftpipe native checkpoint .*got list"),
    # a Git LFS pointer is refused too (the message calls it "not weights-only data": reported as misleading)
    (lambda p: p.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\n"), r"theirs\.pth' was"),
    (lambda p: (_native(p, SPEC_ARCH), p.write_bytes(p.read_bytes()[:1000])), r"corrupt or truncated"),
], ids=["foreign_keys", "bare_state_dict", "a_list", "lfs_pointer", "truncated"])
def test_foreign_or_damaged_checkpoint_file(tmp_path: Path, make: Callable[[Path], Any], pattern: str) -> None:
    path = tmp_path / "theirs.pth"
    make(path)
    with pytest.raises(ContractError, match=pattern):
        load_checkpoint(path)


def test_checkpoint_of_another_architecture_names_every_field(tmp_path: Path) -> None:
    theirs = _native(tmp_path / "theirs.pth", ArchInfo("resnet_small", "abs-diff", "raw", 2))
    with pytest.raises(ContractError, match=r"train\.pretrained_model_path: checkpoint '.*theirs\.pth' has another "
                                            r"architecture than the spec \(backbone: 'resnet_tiny' vs 'resnet_small'; "
                                            r"difference_module: 'learnable' vs 'abs-diff'; input_mode: "
                                            r"'registered_diff' vs 'raw' — spec vs checkpoint\)"):
        check_arch(load_checkpoint(theirs), SPEC_ARCH, path=theirs, purpose="train.pretrained_model_path")


@pytest.fixture
def loose_ws(tmp_path: Path, template_ws: Path) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(template_ws, root, symlinks=True)
    return root


def test_cli_train_with_another_architecture_exits_2(loose_ws: Path, cli: object) -> None:
    theirs = _native(loose_ws.parent / "theirs.pth", ArchInfo("resnet_small", "learnable", "registered_diff", 2))
    before = tree_snapshot(loose_ws / "results")
    code, _, err = invoke(cli, "train", "-w", str(loose_ws), "--epochs", "1", "-q",  # type: ignore[arg-type]
                          "-o", f"train.pretrained_model_path={theirs}")
    assert_user_error(code, err, f"error: train.pretrained_model_path: checkpoint '{theirs}' has another "
                                 "architecture than the spec (backbone: 'resnet_tiny' vs 'resnet_small'")
    assert tree_snapshot(loose_ws / "results") == before  # no train_<UTC>/ folder, no decode cache


def _initialize_with(path: Path) -> None:
    from deftpipe.backends.native.train import TrainSettings, initialize
    from deftpipe.workspace.spec import default_spec, set_key

    spec = default_spec()
    set_key(spec, "train.pretrained_model_path", str(path))
    initialize(SiameseClassifier(SPEC_ARCH), TrainSettings.from_spec(spec), SPEC_ARCH)


def _load_model(path: Path) -> None:
    from deftpipe.backends.native.infer import load_model

    load_model(path, device=torch.device("cpu"))


FOREIGN_PAYLOADS: list[tuple[str, Callable[[], dict[str, Any]], Callable[[Path], None]]] = [
    ("arch_is_a_string", lambda: {"state_dict": {}, "arch": "resnet50"}, _load_model),
    ("arch_lacks_fields", lambda: {"state_dict": {}, "arch": {"backbone": "resnet_tiny"}}, _load_model),
    ("arch_channels_not_int", lambda: {"state_dict": {}, "arch": {**SPEC_ARCH.to_dict(), "in_channels": "two"}},
     _load_model),
    ("unknown_backbone", lambda: {"state_dict": {}, "arch": {**SPEC_ARCH.to_dict(), "backbone": "vit_huge"}},
     _load_model),
    ("state_dict_not_a_dict", lambda: {"state_dict": [1, 2], "arch": SPEC_ARCH.to_dict()}, _load_model),
    ("no_normalization", lambda: {"state_dict": SiameseClassifier(SPEC_ARCH).state_dict(),
                                  "arch": SPEC_ARCH.to_dict()}, _load_model),
    ("weights_of_other_shape_for_inference",
     lambda: {"state_dict": SiameseClassifier(ArchInfo("resnet_tiny", "learnable", "registered_diff", 4)).state_dict(),
              "arch": SPEC_ARCH.to_dict()}, _load_model),
    ("weights_of_other_shape_for_training",
     lambda: {"state_dict": SiameseClassifier(ArchInfo("resnet_tiny", "learnable", "registered_diff", 4)).state_dict(),
              "arch": SPEC_ARCH.to_dict()}, _initialize_with),
]


@pytest.mark.parametrize(("payload", "use"), [f[1:] for f in FOREIGN_PAYLOADS], ids=[f[0] for f in FOREIGN_PAYLOADS])
def test_someone_elses_checkpoint_is_a_user_error(tmp_path: Path, payload: Callable[[], dict[str, Any]],
                                                  use: Callable[[Path], None]) -> None:
    """Loading a foreign checkpoint must end in a DeftError naming the file (exit 2), never a bare exception."""
    path = tmp_path / "theirs.pth"
    save_checkpoint(path, payload())
    try:
        use(path)
    except DeftError as exc:
        assert exc.exit_code == 2 and ("theirs.pth" in exc.message or "backbone" in exc.message)
    else:
        pytest.fail(f"{path} was loaded although it does not fit the model")


# ------------------------------------------------------------------ disk full during a state commit

def _enospc(*_: object, **__: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


class _FullDiskFile:
    """A file whose writes fail as on a full disk."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def write(self, data: bytes) -> int:
        self._real.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def __enter__(self) -> _FullDiskFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._real.close()


def _full_on_write(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_open(file: Any, mode: str = "r", *a: Any, **k: Any) -> Any:
        real = open(file, mode, *a, **k)
        return _FullDiskFile(real) if "w" in mode and STATE_FILE in str(file) else real

    monkeypatch.setattr(io_mod, "open", fake_open, raising=False)


def _full_on_replace(monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.replace

    def replace(src: Any, dst: Any) -> None:
        if Path(dst).name == STATE_FILE:
            _enospc()
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)


def _full_on_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "fsync", _enospc)


@pytest.mark.parametrize("fill", [_full_on_write, _full_on_fsync, _full_on_replace],
                         ids=["write", "fsync", "replace"])
def test_disk_full_during_commit_keeps_the_previous_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          fill: Callable[[pytest.MonkeyPatch], None]) -> None:
    rd = (tmp_path / "ws/results/run_20260101_000000").resolve()
    store = new_store(rd)
    run_next(store)
    state_bytes = (rd / STATE_FILE).read_bytes()
    journal_bytes = (rd / JOURNAL_FILE).read_bytes()
    with monkeypatch.context() as m:
        fill(m)
        with pytest.raises(OSError, match="No space left on device"):
            run_next(StateStore.load(rd))
    assert (rd / STATE_FILE).read_bytes() == state_bytes  # byte-identical
    assert (rd / JOURNAL_FILE).read_bytes() == journal_bytes
    assert orphan_temp_files(rd) == []  # the half-written temp file was removed
    events = [(e.iter, e.stage) for e in StateStore.load(rd).state.events]
    assert len(events) == 1
    # space freed: the same stage commits and the history continues where it stopped
    with StateStore.open(rd) as again:
        assert run_next(again) == (again.state.events[-1].iter, again.state.events[-1].stage)
    assert [e["seq"] for e in read_jsonl(rd / JOURNAL_FILE)] == [1, 2]
