"""The generated demo workspace follows the SPEC §2 contract; --force only ever replaces a demo workspace."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from deftpipe.demo import GAP_LABELS, LIGHTS, MARKER_NAME, DemoSummary, make_demo_workspace
from deftpipe.demo.catalog import SPLITS
from deftpipe.errors import ConfigError
from deftpipe.workspace.images import load_pairs
from deftpipe.workspace.layout import PASS_LABEL, Workspace
from deftpipe.workspace.paths import ImageLocator
from deftpipe.workspace.spec import default_spec, load_spec
from deftpipe.workspace.tables import read_samples_csv, row_keys


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoSummary]:
    root = tmp_path_factory.mktemp("demo") / "ws"
    return root, make_demo_workspace(root, scale="tiny", seed=0, workers=1)


def _tables(root: Path) -> dict[str, pd.DataFrame]:
    return {plan.name: read_samples_csv(root / plan.csv_rel) for plan in SPLITS}


def test_layout_spec_and_marker(tiny: tuple[Path, DemoSummary]) -> None:
    root, summary = tiny
    ws = Workspace.at(root)
    for path in (ws.spec_path, ws.training_csv, ws.validation_csv, ws.kpi_csv, ws.holdout_csv, ws.mining_pool_csv):
        assert path.is_file(), path
    assert ws.results_root.is_dir() and not any(ws.results_root.iterdir())
    spec = yaml.safe_load(ws.spec_path.read_text())
    expected = default_spec()
    expected["dataset"]["classify"]["image_width"] = expected["dataset"]["classify"]["image_height"] = 32
    assert spec == expected
    assert load_spec(ws.spec_path)["dataset"]["classify"]["input_map"] == {"LightA": 0, "LightB": 1}
    marker = json.loads((root / MARKER_NAME).read_text())
    assert marker["status"] == "complete" and marker["scale"] == "tiny" and marker["seed"] == 0
    assert marker["label_counts"] == {k: dict(v) for k, v in summary.label_counts.items()}
    assert "train 120 / val 40 / kpi 60 / holdout 60 / pool 60" in summary.one_line()


def test_every_csv_and_image_loads_through_the_workspace_contract(tiny: tuple[Path, DemoSummary]) -> None:
    root, summary = tiny
    locator = ImageLocator(root / "images", root, LIGHTS, ".png")
    for name, frame in _tables(root).items():
        assert list(frame.columns) == ["input_path", "golden_path", "label", "object_name", "boardname",
                                       "component_kind"]
        assert len(frame) == summary.n_rows(name)
        test, golden = load_pairs(frame, locator, size=(32, 32), csv_name=name)
        assert test.shape == golden.shape == (len(frame), len(LIGHTS), 32, 32)
        assert 0.85 <= (frame["label"] == PASS_LABEL).mean() <= 0.92, name


def test_splits_share_no_board_row_or_image(tiny: tuple[Path, DemoSummary]) -> None:
    root, _ = tiny
    tables = _tables(root)
    seen_boards: set[str] = set()
    seen_rows: set[str] = set()
    seen_images: set[str] = set()
    for name, frame in tables.items():
        boards = set(frame["boardname"])
        assert not boards & seen_boards, name
        seen_boards |= boards
        keys = set(row_keys(frame))
        assert len(keys) == len(frame) and not keys & seen_rows, name
        seen_rows |= keys
        digests = set()
        for row in frame.itertuples(index=False):
            for folder in (row.input_path, row.golden_path):
                data = (root / "images" / folder / f"{row.object_name}_{LIGHTS[0]}.png").read_bytes()
                digests.add(hashlib.sha256(data).hexdigest())
        assert not digests & seen_images, name
        seen_images |= digests


def test_planted_gaps_in_the_written_csvs(tiny: tuple[Path, DemoSummary]) -> None:
    root, _ = tiny
    tables = _tables(root)
    for name in ("train", "val"):
        for label in GAP_LABELS:
            assert (tables[name]["label"] == label).mean() <= 0.01, (name, label)
    for name in ("kpi", "holdout", "pool"):
        for label in GAP_LABELS:
            assert (tables[name]["label"] == label).any(), (name, label)


def test_non_empty_folder_is_refused_without_force(tiny: tuple[Path, DemoSummary]) -> None:
    root, _ = tiny
    with pytest.raises(ConfigError, match="folder is not empty \\(a demo workspace\\); pass --force"):
        make_demo_workspace(root, scale="tiny")


def test_force_refuses_a_folder_without_the_marker(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty \\(not a demo workspace"):
        make_demo_workspace(tmp_path, scale="tiny")
    with pytest.raises(ConfigError, match="refusing to delete a non-empty folder without the .deftpipe_demo.json"):
        make_demo_workspace(tmp_path, scale="tiny", force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_bad_arguments_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Did you mean 'tiny'"):
        make_demo_workspace(tmp_path / "ws", scale="tinny")
    with pytest.raises(ConfigError, match="--seed must be a non-negative integer"):
        make_demo_workspace(tmp_path / "ws", scale="tiny", seed=-1)
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ConfigError, match="exists and is a file"):
        make_demo_workspace(target, scale="tiny")


def test_cli_user_error_exits_2_with_the_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    from deftpipe.cli.cmd_demo import make_demo_data

    (tmp_path / "keep.txt").write_text("x")
    try:
        make_demo_data(tmp_path, scale="tiny", seed=0, force=False)
    except typer.Exit as exc:
        assert exc.exit_code == 2
    else:
        pytest.fail("make-demo-data accepted a non-empty folder without --force")
    assert "pass --force" in capsys.readouterr().err


def _digest_tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != MARKER_NAME}


@pytest.mark.slow
def test_same_seed_is_byte_identical_whatever_the_workers_and_force_replaces(
        tiny: tuple[Path, DemoSummary], tmp_path: Path) -> None:
    root, _ = tiny
    other = tmp_path / "ws"
    make_demo_workspace(other, scale="tiny", seed=0, workers=2)
    assert _digest_tree(other) == _digest_tree(root)
    (other / "results" / "run_x").mkdir()
    (other / "results" / "run_x" / "state.json").write_text("{}")
    summary = make_demo_workspace(other, scale="tiny", seed=1, force=True, workers=1)
    assert summary.seed == 1
    changed = _digest_tree(other)
    assert changed["results/run_x/state.json"] == hashlib.sha256(b"{}").hexdigest()  # results/ is kept
    assert changed["train/base/training_set.csv"] != _digest_tree(root)["train/base/training_set.csv"]
    assert json.loads((other / MARKER_NAME).read_text())["seed"] == 1


@pytest.mark.slow
def test_cli_writes_the_workspace_and_prints_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from deftpipe.cli.cmd_demo import make_demo_data

    make_demo_data(tmp_path / "ws", scale="tiny", seed=3, force=False)
    out = capsys.readouterr().out
    assert "planted gaps bridge" in out and "tiny, seed 3" in out
    assert (tmp_path / "ws" / "kpi" / "holdout_set.csv").is_file()
