"""The three-phase bridge end to end on the tiny demo with the fake backend (SPEC §7): one approved QUICK-style
`deftpipe run --yes` inspected by several tests (Phase 3 registered, pre-seeded baseline, warm start, files),
then the branches that need their own run: Phase 3 regression (safety net), DEFT hard stop (Phase 3 skipped),
and the zero-shot gate in halt and warn modes."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from deftpipe.cli.app import app
from deftpipe.cli.main import _load_commands
from deftpipe.errors import EXIT_HARD_STOP, EXIT_REGRESSION
from deftpipe.pipeline.run import CONFIG_FILE, PipelineSettings, load_config, run_phases
from tests.unit.pipeline import fake_backend
from tests.unit.pipeline.support import (
    QUICK_FLAGS,
    QuickRun,
    committed,
    demo_template,  # noqa: F401
    loop_best,
    new_results_dir,
    pipe,  # noqa: F401
    pipe_ws,  # noqa: F401
    quick_run,  # noqa: F401
    settings,
    state,
    tree,
)

pytestmark = pytest.mark.slow
_load_commands()


def _cli(args: list[str]) -> Any:
    return CliRunner().invoke(app, args, env={"COLUMNS": "200"})


def _inside(path: str | Path, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(folder.resolve())


# --- the shared approved run ------------------------------------------------------------------------------------


def test_yes_runs_all_three_phases_and_registers_final_automl(quick_run: QuickRun) -> None:  # noqa: F811
    rd = quick_run.rd
    assert quick_run.exit_code == 0, quick_run.output
    assert quick_run.output.rstrip().splitlines()[-1] == f"Run directory: {rd}"
    doc = state(rd)
    assert doc["status"] == "complete"
    p3 = doc["iterations"]["final_automl"]
    assert p3["status"] == "complete"
    assert _inside(p3["best_ckpt_path"], rd / "final_automl") and Path(p3["best_ckpt_path"]).is_file()
    best_rec = json.loads((rd / "final_automl" / "best_rec.json").read_text())
    assert Path(p3["best_ckpt_path"]) == Path(best_rec["best"]["checkpoint_uri"])
    assert isinstance(p3["threshold"], float)
    mr = p3["metric_result"]
    assert mr["name"] == "far_pct" and p3["far_pct"] == mr["value"] and Path(mr["evidence_path"]).is_file()
    assert _inside(p3["inference_csv"], rd / "final_automl") and Path(p3["inference_csv"]).is_file()
    spec = yaml.safe_load(Path(p3["training_spec"]).read_text())
    best = loop_best(rd)
    assert best != "final_automl"
    assert spec["train"]["pretrained_model_path"] == doc["iterations"][best]["best_ckpt_path"]
    assert spec["dataset"]["classify"]["train_dataset"]["csv_path"] == \
        doc["iterations"]["iter1"]["combined_training_csv"]
    # evaluated on the KPI set: every KPI row scored
    kpi_rows = len((rd / "inputs" / "kpi.csv").read_text().strip().splitlines())
    assert len(Path(p3["inference_csv"]).read_text().strip().splitlines()) == kpi_rows
    # the last event is Phase 3's, journalled like every other
    events = doc["events"]
    assert (events[-1]["iter"], events[-1]["stage"], events[-1]["status"]) == ("final_automl", "evaluate", "ok")
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def test_run_folder_holds_the_bridge_files(quick_run: QuickRun) -> None:  # noqa: F811
    rd = quick_run.rd
    best_model = json.loads((rd / "best_model.json").read_text())
    assert best_model["iteration"] in state(rd)["iterations"] and Path(best_model["checkpoint"]).is_file()
    assert (rd / "DEFT_Loop_Report.html").is_file()
    # the approved pre-flight, as shown
    pf = json.loads((rd / "preflight.json").read_text())
    assert [s["title"][:2] for s in pf["sections"]] == [f"{k}." for k in range(1, 10)]
    assert (rd / "preflight.md").read_text().startswith("# deftpipe pre-flight")
    # the resolved config with its hash, reloadable for --resume
    cfg = json.loads((rd / CONFIG_FILE).read_text())
    assert len(cfg["sha256"]) == 64 and cfg["sha256"][:12] in quick_run.output
    assert load_config(rd) == PipelineSettings(workspace=quick_run.ws.resolve(), max_iterations=1, recommendations=2,
                                               epochs=2, noise_rerun=False, seed=0, kpi_target_pct=0.0,
                                               backend=fake_backend.NAME)
    # the trajectory: Phase 1 validation best -> baseline KPI -> iter1 -> Phase 3, deliverable marked, holdout
    traj = quick_run.trajectory
    assert [line.split(" (")[0] for line in traj[:4]] == ["Phase 1 best", "baseline", "iter1", "Phase 3"]
    assert traj[-1].startswith("Holdout (deliverable, read once): FAR@100")
    marked = [line for line in traj if "◀ deliverable" in line]
    assert len(marked) == 1 and json.loads((rd / "best_model.json").read_text())["iteration"] in marked[0].replace(
        "Phase 3", "final_automl")
    for line in traj:
        assert line in quick_run.output  # printed as well as saved


def test_baseline_reuses_the_phase1_winner_without_training(quick_run: QuickRun) -> None:  # noqa: F811
    rd, ws = quick_run.rd, quick_run.ws
    base = state(rd)["iterations"]["baseline"]
    assert base["source"] == "automl_phase1"
    phase1 = json.loads((rd / "automl_phase1" / "best_rec.json").read_text())
    assert base["train_metric"] == phase1["best"]["score"]
    ckpt = Path(base["best_ckpt_path"])
    assert tree(rd / "baseline" / "train") == [ckpt.name]  # the copied winner and nothing else
    assert ckpt.name == "model_epoch_{:03d}_step_{:03d}.pth".format(phase1["best"]["checkpoint_epoch"],
                                                                   phase1["best"]["checkpoint_step"])
    assert ckpt.read_bytes() == Path(phase1["best"]["checkpoint_uri"]).read_bytes()
    assert not [c for c in quick_run.trains if c.under("baseline")]
    train = state(rd)["events"][0]
    assert (train["iter"], train["stage"], train["duration_sec"]) == ("baseline", "train", 0)
    assert "Phase 1" in train["summary"]
    merged = rd / "specs" / "baseline_spec_automl.yaml"
    assert state(rd)["config"]["specs_file"] == str(merged)
    assert merged.read_bytes() == (ws / "specs" / "baseline_spec_automl.yaml").read_bytes()
    lr = yaml.safe_load(merged.read_text())["train"]["optim"]["lr"]
    assert lr == pytest.approx(phase1["best"]["specs"]["train"]["optim"]["lr"])
    assert quick_run.user_spec_after == quick_run.user_spec_before


def test_every_phase3_trial_warm_starts_from_the_loops_best(quick_run: QuickRun) -> None:  # noqa: F811
    rd = quick_run.rd
    warm = state(rd)["iterations"][loop_best(rd)]["best_ckpt_path"]
    p3 = [c for c in quick_run.trains if c.under("final_automl")]
    trials = json.loads((rd / "final_automl" / "best_rec.json").read_text())["all_recs"]
    assert len(p3) == len(trials) == 2
    assert all(c.pretrained == warm for c in p3), [c.pretrained for c in p3]
    assert not any("final_automl" in str(c.pretrained) for c in quick_run.trains)
    # Phase 1 starts from fresh weights; DEFT's retrain from the pre-seeded baseline
    assert all(c.pretrained is None for c in quick_run.trains if c.under("automl_phase1"))
    assert [c.pretrained for c in quick_run.trains if c.under("iter1")] == \
        [state(rd)["iterations"]["baseline"]["best_ckpt_path"]]


def test_neither_automl_phase_reads_the_kpi_or_holdout_set(quick_run: QuickRun) -> None:  # noqa: F811
    rd = quick_run.rd
    trial_inputs = {csv.name for csv, out in quick_run.infers
                    if _inside(out, rd / "automl_phase1") or "trial_" in out.as_posix()}
    assert trial_inputs == {"validation_set.csv", "validation.csv"}, trial_inputs


# --- branches with their own run -------------------------------------------------------------------------------


def test_phase3_regression_keeps_the_loops_best_and_shows_both_numbers(pipe_ws: Path, pipe: dict) -> None:  # noqa: F811
    pipe["bad_under"] = "final_automl"  # every Phase 3 model forgets what the loop taught it
    ps = settings(pipe_ws)
    rd = new_results_dir(pipe_ws, ps)
    outcome = run_phases(rd, ps, emit=lambda line: None)
    doc = state(rd)
    best = loop_best(rd)
    loop_value = doc["iterations"][best]["metric_result"]["value"]
    p3_value = doc["iterations"]["final_automl"]["metric_result"]["value"]
    assert p3_value > loop_value  # the forced regression happened
    assert outcome.deliverable == best
    best_model = json.loads((rd / "best_model.json").read_text())
    assert best_model["iteration"] == best and best_model["checkpoint"] == doc["iterations"][best]["best_ckpt_path"]
    summary = (rd / "pipeline_summary.md").read_text()
    p3_line = next(line for line in summary.splitlines() if line.startswith("- Phase 3"))
    assert f"{p3_value:.4g}%" in p3_line and f"{loop_value:.4g}%" in p3_line
    assert f"{best} stays the deliverable" in p3_line
    assert f"{best} (KPI): {loop_value:.4g}%  ◀ deliverable" in summary


def test_deft_hard_stop_skips_phase3_and_exits_4(pipe_ws: Path, pipe: dict) -> None:  # noqa: F811
    (pipe_ws / "augmentation" / "mining_pool" / "mining_pool.csv").unlink()  # nothing to mine ...
    res = _cli(["run", "--workspace", str(pipe_ws), *QUICK_FLAGS, "--num-sdg", "0", "--yes"])  # ... nor to generate
    assert res.exit_code == EXIT_HARD_STOP, res.output
    assert "HARD STOP" in res.output and "Phase 3 skipped" in res.output
    rd = next((pipe_ws / "results").glob("run_*"))
    doc = state(rd)
    assert doc["status"] == "failed" and committed(rd)[-1] == ("iter1", "data_mining", "error")
    assert "final_automl" not in doc["iterations"] and not (rd / "final_automl").exists()
    assert not [c for c in fake_backend.TRAIN_LOG if c.under("final_automl")]
    summary = (rd / "pipeline_summary.md").read_text()
    assert "DEFT hard-stopped; Phase 3 skipped" in summary and "baseline (KPI)" in summary
    # a failed run is never resumed into Phase 3: same exit, nothing committed
    n = len(doc["events"])
    again = _cli(["run", "--resume", str(rd)])
    assert again.exit_code == EXIT_HARD_STOP, again.output
    assert "Phase 3 skipped" in again.output and "never resumed" in again.output
    assert len(state(rd)["events"]) == n and not (rd / "final_automl").exists()


def test_regression_halt_exits_5_and_resume_accepts_it_through_phase3(pipe_ws: Path, pipe: dict,  # noqa: F811
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit.deft import fake_backend as deft_fake

    monkeypatch.setitem(deft_fake.KNOBS, "regress_from_iter", 1)  # iter1's model forgets: worse than the baseline
    res = _cli(["run", "--workspace", str(pipe_ws), *QUICK_FLAGS, "--yes"])
    assert res.exit_code == EXIT_REGRESSION, res.output
    rd = next((pipe_ws / "results").glob("run_*")).resolve()
    assert "regression gate: iter1 scored" in res.output
    hint = " ".join(res.output.split())  # the hint may be wrapped
    assert f"deftpipe run --resume {rd} --accept-regression" in hint and "deftpipe deft --resume" not in hint
    assert state(rd)["halt"]["iter"] == "iter1" and not (rd / "final_automl").exists()
    plain = _cli(["run", "--resume", str(rd)])  # a plain resume does not clear it
    assert plain.exit_code == EXIT_REGRESSION and "--accept-regression" in plain.output
    accepted = _cli(["run", "--resume", str(rd), "--accept-regression"])
    assert accepted.exit_code == 0, accepted.output
    doc = state(rd)
    assert doc["status"] == "complete" and doc["iterations"]["final_automl"]["status"] == "complete"
    assert loop_best(rd) == "baseline"  # the regressed iteration is not the warm start
    warm = doc["iterations"]["baseline"]["best_ckpt_path"]
    assert all(c.pretrained == warm for c in fake_backend.TRAIN_LOG if c.under("final_automl"))


def test_zero_shot_gate_halt_stops_after_phase1_with_exit_4(pipe_ws: Path, pipe: dict) -> None:  # noqa: F811
    pipe["bad_under"] = "automl_phase1"  # Phase 1's models lose to the zero-shot scorer
    res = _cli(["run", "--workspace", str(pipe_ws), *QUICK_FLAGS, "--zero-shot-gate", "halt", "--yes"])
    assert res.exit_code == EXIT_HARD_STOP, res.output
    assert "zero_shot_gate:" in res.output and "does NOT beat the zero-shot baseline" in res.output
    rd = next((pipe_ws / "results").glob("run_*"))
    gate = json.loads((rd / "automl_phase1" / "zero_shot_gate.json").read_text())
    assert gate["beats"] is False and gate["mode"] == "halt"
    assert sorted(p.name for p in rd.iterdir()) == ["automl_phase1", "logs", CONFIG_FILE, "preflight.json",
                                                    "preflight.md"]
    assert not (pipe_ws / "specs" / "baseline_spec_automl.yaml").exists()
    assert [c for c in fake_backend.TRAIN_LOG if not c.under("automl_phase1")] == []


def test_zero_shot_gate_warn_continues_and_flags_it(pipe_ws: Path, pipe: dict) -> None:  # noqa: F811
    """Also covers the cold-start ablation hook (`phase3_warm_start=False`), to spare a third full run."""
    pipe["bad_under"] = "automl_phase1"  # Phase 1's models lose to the zero-shot scorer
    ps = settings(pipe_ws, phase3_warm_start=False)
    assert ps.zero_shot_gate == "warn"  # the default
    rd = new_results_dir(pipe_ws, ps)
    lines: list[str] = []
    outcome = run_phases(rd, ps, emit=lines.append)
    assert state(rd)["status"] == "complete" and "final_automl" in state(rd)["iterations"]
    gate = json.loads((rd / "automl_phase1" / "zero_shot_gate.json").read_text())
    assert gate["beats"] is False and gate["mode"] == "warn"
    phase1 = json.loads((rd / "automl_phase1" / "best_rec.json").read_text())["best"]["score"]
    assert phase1 >= gate["far_at_100_pct"]
    summary = (rd / "pipeline_summary.md").read_text()
    assert "**(warning: AutoML did not beat the zero-shot baseline)**" in summary
    assert any("does NOT beat the zero-shot baseline" in line for line in lines)
    assert outcome.deliverable is not None
    # cold Phase 3: every trial from fresh weights, and the registered spec says so
    p3 = [c for c in fake_backend.TRAIN_LOG if c.under("final_automl")]
    assert len(p3) == 2 and all(c.pretrained is None for c in p3)
    spec = yaml.safe_load(Path(state(rd)["iterations"]["final_automl"]["training_spec"]).read_text())
    assert spec["train"]["pretrained_model_path"] is None
    assert any("fresh weights (cold start)" in line for line in lines)
