"""`deftpipe run` / `deftpipe preflight` before anything runs (SPEC §7 "One gate"): no approval without a TTY
is exit 3 with nothing written, the pre-flight prints its nine sections in order and writes nothing, and
credentials appear as SET/UNSET only."""
from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from deftpipe.cli.app import app
from deftpipe.cli.main import _load_commands
from deftpipe.errors import EXIT_APPROVAL
from deftpipe.pipeline import preflight
from tests.unit.pipeline import fake_backend
from tests.unit.pipeline.support import settings, tree, tree_digest

_load_commands()
TITLES = ["1. Workspace, host, backend, network", "2. Credentials (values never shown)", "3. Runtime packages",
          "4. Datasets", "5. Phase 1 — AutoML baseline", "6. Phase 2 — DEFT loop", "7. Phase 3 — AutoML refinement",
          "8. Compute estimate", "9. Confirmation"]
SECRET = "s3cr3t-value-that-must-never-print"
TOKEN = "DEFTPIPE_FAKE_API_TOKEN"


def _invoke(args: list[str]) -> object:
    return CliRunner().invoke(app, args, env={"COLUMNS": "200"})


def test_run_without_tty_or_yes_prints_the_plan_writes_nothing_and_exits_3(tiny_ws: Path) -> None:
    before = tree_digest(tiny_ws)
    results_before = tree(tiny_ws / "results")
    res = _invoke(["run", "--workspace", str(tiny_ws), "--max-iterations", "1", "--no-measure"])
    assert res.exit_code == EXIT_APPROVAL == 3, res.output
    assert "approval needed: nothing was written" in res.output and "--yes" in res.output
    assert TITLES[0] in res.output and TITLES[-1] in res.output  # the plan was shown first
    assert tree(tiny_ws / "results") == results_before == []
    assert tree_digest(tiny_ws) == before  # not even the 'latest run' spec copy


def test_preflight_prints_the_nine_sections_in_order_and_writes_nothing(tiny_ws: Path) -> None:
    before = tree_digest(tiny_ws)
    res = _invoke(["preflight", "--workspace", str(tiny_ws), "--max-iterations", "2", "--no-measure"])
    assert res.exit_code == 0, res.output
    positions = [res.output.find(title) for title in TITLES]
    assert all(p >= 0 for p in positions), dict(zip(TITLES, positions))
    assert positions == sorted(positions)
    assert "skipped (--no-measure)" in res.output and "Gates that can still halt the run" in res.output
    assert tree_digest(tiny_ws) == before


def test_credentials_show_set_never_the_value(tiny_ws: Path, pipe: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(preflight.CREDENTIALS, fake_backend.NAME, (TOKEN, "DEFTPIPE_FAKE_ORG"))
    monkeypatch.setenv(TOKEN, SECRET)
    monkeypatch.delenv("DEFTPIPE_FAKE_ORG", raising=False)
    res = _invoke(["preflight", "--workspace", str(tiny_ws), "--max-iterations", "1", "--no-measure",
                   "--backend", fake_backend.NAME])
    assert res.exit_code == 0, res.output
    assert SECRET not in res.output
    lines = {line.split()[1]: line for line in res.output.splitlines() if TOKEN in line or "DEFTPIPE_FAKE_ORG" in line}
    assert "SET" in lines[TOKEN].split() and "UNSET" not in lines[TOKEN]
    assert "UNSET" in lines["DEFTPIPE_FAKE_ORG"]
    # the document saved after approval carries no value either
    pf = preflight.build(settings(tiny_ws), sources={}, measure=False)
    creds = {i.key: i.value for i in pf.sections[1].items}
    assert creds == {TOKEN: "SET", "DEFTPIPE_FAKE_ORG": "UNSET"}
    assert SECRET not in pf.to_markdown() and SECRET not in str(pf.to_dict())


def test_every_preflight_value_is_tagged_with_its_source(tiny_ws: Path, tmp_path: Path) -> None:
    from deftpipe.cli.cmd_run import _settings

    cfg = tmp_path / "run.yaml"
    cfg.write_text(f"workspace: {tiny_ws}\nmax_iterations: 3\nrecommendations: 4\nalgorithm: random\n")
    ps, sources = _settings(None, cfg, {"recommendations": 6, "algorithm": None}, [])
    assert (ps.max_iterations, ps.recommendations, ps.algorithm) == (3, 6, "random")  # flags win over the file
    assert sources == {"workspace": "config file", "max_iterations": "config file", "recommendations": "user",
                       "algorithm": "config file"}
    pf = preflight.build(ps, sources=sources, measure=False)
    assert [s.title for s in pf.sections] == TITLES
    items = {i.key: i for s in pf.sections for i in s.items}
    assert (items["recommendations"].value, items["recommendations"].source) == (6, "user")
    assert (items["algorithm"].value, items["algorithm"].source) == ("random", "config file")
    assert (items["max iterations"].value, items["max iterations"].source) == (3, "config file")
    assert items["noise re-run"].source == "default"
    assert all(i.source in {"user", "config file", "spec", "default", "measured", "check"} for i in items.values())


def test_unknown_run_config_key_exits_2_with_a_suggestion(tiny_ws: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text("max_iteration: 2\n")
    res = _invoke(["run", "--workspace", str(tiny_ws), "--config", str(cfg), "--yes"])
    assert res.exit_code == 2, res.output
    assert "max_iteration (did you mean max_iterations?)" in res.output
    assert tree(tiny_ws / "results") == []
