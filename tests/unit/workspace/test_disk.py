"""The pre-flights' free-disk check: `run`, `deft` and `automl` refuse to start on a nearly full disk (exit 2, free
and needed bytes named, the fix given, nothing under results/), and the estimate grows with `--keep-checkpoints all`."""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from typer.testing import CliRunner

from deftpipe.cli.app import app
from deftpipe.cli.main import _load_commands
from deftpipe.errors import EXIT_USER, InsufficientDisk
from deftpipe.workspace import disk
from tests.unit.deft import fake_backend as deft_fake
from tests.unit.pipeline import fake_backend as pipe_fake
from tests.unit.pipeline.support import demo_template, pipe, pipe_ws, tree  # noqa: F401

_load_commands()
FREE = 3 * 2**20  # 3 MiB: below any run's fixed files alone


class _Usage(NamedTuple):
    total: int
    used: int
    free: int


@pytest.fixture
def nearly_full(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """shutil.disk_usage reports 3 MiB free; yields the paths it was asked about."""
    asked: list[Path] = []

    def usage(path: Any) -> _Usage:
        asked.append(Path(path))
        return _Usage(total=10 * 2**30, used=10 * 2**30 - FREE, free=FREE)

    monkeypatch.setattr(shutil, "disk_usage", usage)
    return asked


COMMANDS = {
    "run": ["run", "--max-iterations", "1", "--recommendations", "2", "--no-measure", "--backend", pipe_fake.NAME],
    "deft": ["deft", "--max-iterations", "1", "--backend", deft_fake.NAME],
    "automl": ["automl", "--recommendations", "2", "--backend", pipe_fake.NAME],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_low_disk_refuses_to_start_and_writes_nothing(command: str, pipe_ws: Path, pipe: dict,  # noqa: F811
                                                      nearly_full: list[Path]) -> None:
    deft_fake.ensure_registered()
    res = CliRunner().invoke(app, [*COMMANDS[command], "--workspace", str(pipe_ws), "--yes"], env={"COLUMNS": "200"})
    assert res.exit_code == EXIT_USER, res.output
    out = " ".join(res.output.split())
    m = re.search(rf"{command}: not enough free disk for \S+: ([\d,]+) bytes \(.*?\) free, the run needs about "
                  r"([\d,]+) bytes", out)
    assert m, out
    free, needed = (int(g.replace(",", "")) for g in m.groups())
    assert free == FREE < needed
    assert "nothing was written" in out and "hint: Free at least" in out and "then run the same command again" in out
    assert nearly_full and all(p.is_relative_to(pipe_ws) for p in nearly_full)
    assert tree(pipe_ws / "results") == []


def test_require_free_disk_passes_with_room_and_names_both_numbers_without(tmp_path: Path,
                                                                          nearly_full: list[Path]) -> None:
    assert disk.require_free_disk(tmp_path / "not" / "yet", FREE // 4, command="x", smaller="-") == (FREE, FREE // 2)
    assert nearly_full[-1] == tmp_path  # the nearest existing parent is measured
    with pytest.raises(InsufficientDisk, match=rf"{FREE:,} bytes .* free, the run needs about {2 * FREE:,} bytes"):
        disk.require_free_disk(tmp_path, FREE, command="x", smaller="-")


def test_keeping_every_checkpoint_raises_the_estimate() -> None:
    def need(keep: str) -> int:
        return disk.estimate_bytes(n_rows=100, image_bytes=2000, n_trainings=5,
                                   checkpoints_each=disk.checkpoints_per_training(keep, epochs=10))

    assert disk.checkpoints_per_training("best_latest", 10) == 2 and disk.checkpoints_per_training("all", 10) == 10
    assert need("all") - need("best_latest") == 5 * 8 * disk.CHECKPOINT_BYTES
