"""`deftpipe mine` standalone on a tiny workspace with the frozen embedder."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from deftpipe.cli.app import app
from deftpipe.cli.main import _load_commands
from tests.helpers import write_pair

_load_commands()  # as the console script does: every cmd_* module, so `mine` is a sub-command


def _ws_with_pool(tiny_ws: Path) -> tuple[Path, Path]:
    lines = ["input_path,golden_path,label,object_name"]
    for i in range(5):
        write_pair(tiny_ws / "images", "pool", f"M{i}@1", defect=True, seed=200 + i)
        lines.append(f"pool/test,pool/golden,missing,M{i}@1")
    lines.append("kpi/test,kpi/golden,missing,KPI0@1")  # a KPI row in the pool: must be rejected
    pool = tiny_ws / "augmentation/mining_pool/mining_pool.csv"
    pool.parent.mkdir(parents=True)
    pool.write_text("\n".join(lines) + "\n")
    kpi = pd.read_csv(tiny_ws / "kpi/testing_set.csv", dtype=str)
    gaps = kpi[kpi["label"] == "missing"].copy()
    gaps["siamese_score"] = -1.0
    gaps["weakness"] = 1.0
    path = tiny_ws / "gaps.parquet"
    gaps.to_parquet(path)
    return pool, path


def test_mine_cli_frozen(tiny_ws: Path, tmp_path: Path) -> None:
    _, gaps = _ws_with_pool(tiny_ws)
    out = tmp_path / "mf"
    runner = CliRunner()
    args = ["mine", "--workspace", str(tiny_ws), "--gaps", str(gaps), "--out", str(out), "--frozen",
            "--top-k", "2", "--min-similarity", "0.3"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "novel row(s)" in res.output and "exact k-NN" in res.output
    mined = pd.read_csv(out / "mining_pool.csv", dtype=str)
    assert len(mined) > 0 and mined["input_path"].str.startswith("images/pool/").all()
    rej = pd.read_csv(out / "rejections.csv")
    assert rej.set_index("reason").loc["leak_kpi", "count"] == 1


def test_mine_cli_errors(tiny_ws: Path, tmp_path: Path) -> None:
    _, gaps = _ws_with_pool(tiny_ws)
    runner = CliRunner()
    base = ["mine", "--workspace", str(tiny_ws), "--gaps", str(gaps), "--out", str(tmp_path / "o")]
    res = runner.invoke(app, base)
    assert res.exit_code == 2 and "pass --checkpoint CKPT" in res.output
    res = runner.invoke(app, [*base, "--frozen", "--pool", str(tmp_path / "none.csv")])
    assert res.exit_code == 4 and "does not exist but 2 gap row(s)" in res.output
    res = runner.invoke(app, [*base, "--frozen", "--min-similarity", "0.99999"])
    assert res.exit_code == 4 and "zero novel mined rows" in res.output
