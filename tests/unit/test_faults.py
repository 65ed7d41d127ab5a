"""`DEFTPIPE_FAULT`: unset costs nothing, a typo is a clear error, an armed site SIGKILLs at exactly its n-th hit."""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from deftpipe import faults
from deftpipe.errors import ConfigError


def test_unset_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(faults.ENV, raising=False)
    for site in faults.SITES:
        faults.fault_point(site)
    assert faults.armed() is None


def test_unknown_site_suggests_the_closest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(faults.ENV, "state_comit:1")
    with pytest.raises(ConfigError, match=r"unknown fault site 'state_comit'.*Did you mean 'state_commit'"):
        faults.armed()


@pytest.mark.parametrize("value", ["state_commit", "state_commit:0", "state_commit:x"])
def test_count_must_be_positive(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(faults.ENV, value)
    with pytest.raises(ConfigError, match=r"expected <site>:<n> with n >= 1"):
        faults.armed()


def test_other_sites_do_not_fire(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(faults.ENV, "csv_merge:1")
    faults.fault_point("state_commit")  # still alive


_CHILD = """
import sys
from deftpipe.faults import fault_point
for i in range(1, 4):
    print(i, flush=True)
    fault_point("checkpoint_save")
"""


def test_armed_site_kills_at_its_nth_hit_without_cleanup(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", faults.ENV: "checkpoint_save:2"}
    proc = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, timeout=60,
                          cwd=tmp_path)
    assert proc.returncode == -signal.SIGKILL
    assert proc.stdout.split() == ["1", "2"]
    assert "killed at checkpoint_save hit 2" in proc.stderr


def test_write_atomic_dies_between_fsync_and_rename(tmp_path: Path) -> None:
    """The worst instant: the temp file is complete, the target still holds the old bytes."""
    target = tmp_path / "state.json"
    target.write_text("old")
    code = ("import sys; from deftpipe.workspace.io import write_atomic; "
            f"write_atomic({str(target)!r}, b'new', fault_site='state_commit')")
    proc = subprocess.run([sys.executable, "-c", code], env={"PATH": "/usr/bin:/bin", faults.ENV: "state_commit:1"},
                          capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert target.read_text() == "old"
    from deftpipe.workspace.io import orphan_temp_files

    [tmp] = orphan_temp_files(tmp_path)
    assert tmp.read_bytes() == b"new"


def test_cli_refuses_a_malformed_value_before_doing_anything(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "deftpipe", "make-demo-data", str(tmp_path / "ws"), "--scale", "tiny"],
                          env={"PATH": "/usr/bin:/bin", faults.ENV: "csv_merg:1"}, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert "Did you mean 'csv_merge'" in proc.stderr
    assert not (tmp_path / "ws").exists()
