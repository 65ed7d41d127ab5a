"""`deftpipe sdg` standalone: argument resolution, summary line, errors with exit code 2."""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from deftpipe.workspace.spec import default_spec
from tests.unit.sdg.conftest import gaps_frame


@pytest.fixture(scope="module")
def cli_app():  # noqa: ANN201 - typer app
    from deftpipe.cli.app import app
    from deftpipe.cli.main import _load_commands

    _load_commands()
    return app


def _spec(ws: Path) -> None:
    (ws / "specs").mkdir(parents=True, exist_ok=True)
    spec = default_spec()
    spec["dataset"]["classify"]["image_width"] = spec["dataset"]["classify"]["image_height"] = 48
    (ws / "specs/baseline_spec.yaml").write_text(yaml.safe_dump(spec))


def test_cli_sdg_writes_rows_and_prints_summary(cli_app, component_ws: tuple[Path, pd.DataFrame],  # noqa: ANN001
                                                tmp_path: Path) -> None:
    ws, _ = component_ws
    _spec(ws)
    gaps = tmp_path / "sdg_gaps.parquet"
    gaps_frame(["missing", "missing", "PASS"]).to_parquet(gaps)
    out = CliRunner().invoke(cli_app, ["sdg", "--workspace", str(ws), "--gaps", str(gaps), "--iter-dir",
                                       str(ws / "results/run_x/iter1"), "--num-sdg", "3", "--seed", "1"])
    assert out.exit_code == 0, out.output
    assert "SDG wrote 3 rows (PASS=1, missing=2)" in out.output
    rec = pd.read_csv(ws / "results/run_x/iter1/sdg/SDG_result.csv")
    assert (rec["input_path"] == "results/run_x/iter1/dataset/images/synthetic_iter1_ng").all()

    empty = tmp_path / "empty.parquet"
    gaps_frame(["missing"]).iloc[:0].to_parquet(empty)
    out = CliRunner().invoke(cli_app, ["sdg", "--workspace", str(ws), "--gaps", str(empty), "--iter-dir",
                                       str(ws / "results/run_x/iter2")])
    assert out.exit_code == 0 and "SDG skipped: no RCA gaps were routed" in out.output


def test_cli_sdg_errors_exit_2(cli_app, component_ws: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:  # noqa: ANN001
    ws, _ = component_ws
    _spec(ws)
    gaps = tmp_path / "g.parquet"
    gaps_frame(["solder_ball"]).to_parquet(gaps)
    base = ["sdg", "--workspace", str(ws), "--gaps", str(gaps)]
    out = CliRunner().invoke(cli_app, [*base, "--iter-dir", str(ws / "results/run_x/step1")])
    assert out.exit_code == 2 and "named iter<N>" in out.output
    out = CliRunner().invoke(cli_app, [*base, "--iter-dir", str(tmp_path / "iter1")])
    assert out.exit_code == 2 and "outside the workspace" in out.output
    out = CliRunner().invoke(cli_app, [*base, "--iter-dir", str(ws / "results/run_x/iter1"), "--no-generic-fallback"])
    assert out.exit_code == 2 and "'solder_ball' has no SDG generator" in out.output


@pytest.mark.slow
def test_cli_sdg_on_demo_workspace(cli_app, tmp_path: Path) -> None:  # noqa: ANN001
    demo = pytest.importorskip("deftpipe.demo")
    from deftpipe.workspace.tables import read_samples_csv

    started = time.perf_counter()
    ws = tmp_path / "demo"
    demo.make_demo_workspace(ws, scale="tiny", seed=0, workers=1)
    kpi = read_samples_csv(ws / "kpi/testing_set.csv")
    gaps = kpi.groupby("label").head(2).copy()
    gaps["filepath"] = "images/" + gaps["input_path"] + "/" + gaps["object_name"] + "_LightA.png"
    gaps["weakness"] = 1.0
    gaps.to_parquet(tmp_path / "gaps.parquet")
    out = CliRunner().invoke(cli_app, ["sdg", "--workspace", str(ws), "--gaps", str(tmp_path / "gaps.parquet"),
                                       "--iter-dir", str(ws / "results/run_t/iter1"), "--num-sdg", "20"])
    assert out.exit_code == 0, out.output
    rec = pd.read_csv(ws / "results/run_t/iter1/sdg/SDG_result.csv")
    assert len(rec) == 20 and set(rec["label"]) == set(gaps["label"])
    assert not rec["generic"].any() and (rec["kind_match"] == "kind").all()
    defects = rec[rec["label"] != "PASS"]
    assert (defects["generator"] == defects["label"]).all() and pd.Series(defects["psnr_unchanged_db"]).eq(float("inf")).all()
    for _, r in rec.iterrows():
        assert (ws / r["input_path"] / f"{r['object_name']}_LightB.png").is_file()
    assert time.perf_counter() - started < 60
