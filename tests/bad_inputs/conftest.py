"""The bad-input corpus: tiny broken workspaces built in tmp_path, and the guard every case runs under.

`ws` is a copy of one valid template workspace that already holds an earlier run under
`results/`; when the test ends, that folder must be byte-for-byte as it was (nothing created,
changed or removed): a bad input never touches a run.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
from typer.testing import CliRunner

from deftpipe.workspace.validate import validate_workspace
from tests.helpers import make_workspace

TRAIN_CSV = "train/base/training_set.csv"
HEADER = "input_path,golden_path,label,object_name,component_kind"
# an earlier run that a bad input must leave alone
OLD_RUN = "results/run_20260101_000000"


def tree_snapshot(root: Path) -> dict[str, tuple[str, int, str]]:
    """Every entry under `root`: kind, size, and a content hash for files (symlinks by target)."""
    out: dict[str, tuple[str, int, str]] = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = ("link", 0, os.readlink(p))
            elif p.is_dir():
                out[rel] = ("dir", 0, "")
            else:
                out[rel] = ("file", p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


@pytest.fixture(scope="session")
def template_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_workspace(tmp_path_factory.mktemp("template") / "ws", n_train=6, n_val=3, n_kpi=3)
    # make_workspace seeds its noise with hash(), which differs per process: two PASS rows of different splits
    # can get identical bytes (a leakage problem) in some sessions. A unique corner pixel per file rules it out.
    for k, path in enumerate(sorted((root / "images").glob("*/test/*.png"))):
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        img[0, 0], img[0, 1] = k % 256, k // 256
        cv2.imwrite(str(path), img)
    old = root / OLD_RUN
    old.mkdir(parents=True)
    (old / "deft_state.json").write_text('{"version": 1, "status": "in_progress"}\n')
    (old / "loop_log.jsonl").write_text('{"seq": 1}\n')
    return root


@pytest.fixture
def ws(tmp_path: Path, template_ws: Path) -> Iterator[Path]:
    """A valid workspace to break; `results/` must be unchanged when the test ends."""
    root = tmp_path / "ws"
    shutil.copytree(template_ws, root, symlinks=True)
    before = tree_snapshot(root / "results")
    yield root
    after = tree_snapshot(root / "results")
    assert after == before, f"results/ changed under a bad input: {sorted(set(after.items()) ^ set(before.items()))}"


@pytest.fixture(scope="session")
def cli() -> CliRunner:
    from deftpipe.cli.main import _load_commands

    _load_commands()
    return CliRunner()


def invoke(cli: CliRunner, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run a deftpipe command in-process: (exit code, stdout, stderr)."""
    from deftpipe.cli.app import app

    result = cli.invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})
    return result.exit_code, result.stdout, result.stderr


def assert_user_error(code: int, stderr: str, *fragments: str) -> None:
    """Exit 2 (SPEC §9), every stderr line an `error:`/`hint:` line (no traceback), each fragment present."""
    assert code == 2, stderr
    assert "Traceback" not in stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert lines and all(ln.startswith(("error:", "hint:", "  ")) for ln in lines), stderr
    for fragment in fragments:
        assert fragment in stderr, (fragment, stderr)


def write(ws: Path, rel: str, data: str | bytes) -> Path:
    path = ws / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def train_lines(ws: Path) -> list[str]:
    return (ws / TRAIN_CSV).read_text().splitlines()


def problems(ws: Path, *overrides: str) -> list[str]:
    return validate_workspace(ws, overrides).problems


def only_problem(ws: Path, *overrides: str) -> str:
    found = problems(ws, *overrides)
    assert len(found) == 1, found
    return found[0]
