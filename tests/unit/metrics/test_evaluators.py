"""Evaluators: builtin over an inference CSV, command (argv, timeout, minimal env), artifact, result JSON checks."""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deftpipe.errors import ConfigError, ContractError
from deftpipe.metrics.contract import MetricContract, MetricResult, default_far_contract
from deftpipe.metrics.evaluators import evaluate_inference_csv, read_inference_csv, validate_result_json


def write_csv(path: Path, labels: list[str], scores: list[float]) -> Path:
    frame = pd.DataFrame({"input_path": "t", "golden_path": "g", "label": labels,
                          "object_name": [f"o{i}" for i in range(len(labels))], "siamese_score": scores})
    frame.to_csv(path, index=False, float_format="%.17g", na_rep="nan")
    return path


@pytest.fixture()
def csv(tmp_path: Path) -> Path:
    labels = ["PASS"] * 6 + ["open", " Short "] * 2
    scores = [0.1, 0.2, 0.3, 0.9, -1.0, 1 / 3, 0.5, 0.8, 0.95, 2.0]
    return write_csv(tmp_path / "inference.csv", labels, scores)


def test_builtin_far_at_recall_from_csv(csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "run" / "metric_result.json"
    r = evaluate_inference_csv(csv, default_far_contract(), out_json=out)
    assert r.threshold == 1 / 3 and r.value == 1 / 6 * 100 and r.constraints == {"recall_pct": 100.0}
    assert r.passed is False  # 16.7 % is not < 5 %
    d = r.diagnostics
    assert d["far_at_99_pct"] == d["far_at_100_pct"] == r.value and d["threshold_at_99"] == 1 / 3
    assert d["per_label"]["short"] == {"n": 2, "n_flagged": 2, "n_missed": 0}
    assert d["per_label"]["PASS"] == {"n": 6, "n_flagged": 1}
    stored = json.loads(out.read_text())
    assert stored["evidence_path"] == str(out) and stored["value"] == r.value
    relaxed = default_far_contract(target_pct=20.0)
    assert evaluate_inference_csv(csv, relaxed).passed is True


def test_scores_round_trip_bit_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    scores = list(rng.normal(size=50) * 1e-3)
    path = write_csv(tmp_path / "i.csv", ["PASS", "open"] * 25, scores)
    _, parsed, _ = read_inference_csv(path)
    assert parsed.tolist() == scores


def test_inference_csv_errors_name_line(tmp_path: Path) -> None:
    bad = write_csv(tmp_path / "a.csv", ["PASS", "open", "PASS"], [0.1, float("nan"), 0.2])
    with pytest.raises(ContractError, match=r"a.csv line 3: non-finite siamese_score 'nan'"):
        evaluate_inference_csv(bad, default_far_contract())
    text = tmp_path / "b.csv"
    text.write_text("label,siamese_score\nPASS,0.1\nopen,abc\n")
    with pytest.raises(ContractError, match=r"b.csv line 3: siamese_score 'abc' is not a number"):
        read_inference_csv(text)
    nocol = tmp_path / "c.csv"
    nocol.write_text("label,score\nPASS,0.1\n")
    with pytest.raises(ContractError, match=r"missing column\(s\) \['siamese_score'\]"):
        read_inference_csv(nocol)
    allpass = write_csv(tmp_path / "d.csv", ["PASS", "PASS"], [0.1, 0.2])
    with pytest.raises(ContractError, match=r"d.csv: unreachable: no defect rows"):
        evaluate_inference_csv(allpass, default_far_contract())
    nopass = write_csv(tmp_path / "e.csv", ["open", "short"], [0.1, 0.2])
    with pytest.raises(ContractError, match="FAR undefined"):
        evaluate_inference_csv(nopass, default_far_contract())
    with pytest.raises(ContractError, match="inference CSV not found"):
        evaluate_inference_csv(tmp_path / "none.csv", default_far_contract())


def test_builtin_config_errors(csv: Path) -> None:
    d = default_far_contract().to_dict()
    with pytest.raises(ConfigError, match="unknown builtin 'far_at_recal'.*Did you mean 'far_at_recall'"):
        evaluate_inference_csv(csv, MetricContract.from_dict(d | {"evaluator": {"type": "builtin", "id": "far_at_recal"}}))
    with pytest.raises(ConfigError, match="builtin 'far_at_recall' measures in '%'"):
        evaluate_inference_csv(csv, MetricContract.from_dict(d | {"unit": "ratio"}))
    extra = d | {"constraints": d["constraints"] + [{"name": "latency_ms", "operator": "<", "target": 5}]}
    with pytest.raises(ConfigError, match=r"\['latency_ms'\]: builtin 'far_at_recall' cannot measure them"):
        evaluate_inference_csv(csv, MetricContract.from_dict(extra))


# ---------------------------------------------------------------- command evaluator

def script(tmp_path: Path, body: str, name: str = "evaluator.py") -> Path:
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


GOOD = """
import json, os, sys
args = sys.argv[1:]
out = args[args.index("--output-json") + 1]
assert os.path.exists(args[args.index("--inference-csv") + 1])
json.dump({"name": "far_pct", "value": 3.5, "unit": "%", "threshold": 0.25, "passed": False,
           "constraints": {"recall_pct": 100.0},
           "diagnostics": {"argv0": args[0], "token": os.environ.get("FAKE_TOKEN"), "env": sorted(os.environ)}},
          open(out, "w"))
"""


def command_contract(path: Path, args: list[str] | None = None) -> MetricContract:
    d = default_far_contract().to_dict() | {"evaluator": {"type": "command", "path": str(path), "args": args or []}}
    return MetricContract.from_dict(d)


def test_command_ok_recomputes_passed_and_hides_secrets(csv: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_TOKEN", "s3cr3t-value")
    exe = script(tmp_path, GOOD)
    out = tmp_path / "res" / "metric_result.json"
    r = evaluate_inference_csv(csv, command_contract(exe, ["--mode", "fast"]), out_json=out)
    assert r.value == 3.5 and r.threshold == 0.25
    assert r.passed is True  # the JSON said False: passed is always recomputed
    assert r.diagnostics["argv0"] == "--mode"
    assert r.diagnostics["token"] is None
    assert set(r.diagnostics["env"]) <= {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"}
    assert (tmp_path / "res" / "metric_result.raw.json").is_file()
    assert "s3cr3t-value" not in out.read_text()


def test_command_nonzero_exit_shows_stderr_tail(csv: Path, tmp_path: Path) -> None:
    exe = script(tmp_path, "import sys\nsys.stderr.write('boom: model file missing\\n')\nsys.exit(3)\n")
    with pytest.raises(ContractError, match="exited with status 3; stderr tail: boom: model file missing"):
        evaluate_inference_csv(csv, command_contract(exe))


def test_command_timeout_is_killed(csv: Path, tmp_path: Path) -> None:
    exe = script(tmp_path, "import time\ntime.sleep(30)\n")
    with pytest.raises(ContractError, match=r"did not finish within 0.5 s and was killed"):
        evaluate_inference_csv(csv, command_contract(exe), timeout_s=0.5)


def test_command_garbage_and_missing_output(csv: Path, tmp_path: Path) -> None:
    garbage = script(tmp_path, """
import sys
open(sys.argv[sys.argv.index("--output-json") + 1], "w").write("value: 3 (not json)")
""", "garbage.py")
    with pytest.raises(ContractError, match="wrote invalid JSON"):
        evaluate_inference_csv(csv, command_contract(garbage))
    silent = script(tmp_path, "pass\n", "silent.py")
    with pytest.raises(ContractError, match="wrote no --output-json file"):
        evaluate_inference_csv(csv, command_contract(silent))


def test_command_path_checks(csv: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must be an absolute path"):
        evaluate_inference_csv(csv, command_contract(Path("relative/eval.py")))
    with pytest.raises(ConfigError, match="does not exist"):
        evaluate_inference_csv(csv, command_contract(tmp_path / "missing.py"))
    plain = tmp_path / "plain.py"
    plain.write_text("print(1)\n")
    with pytest.raises(ConfigError, match="is not executable; run `chmod \\+x"):
        evaluate_inference_csv(csv, command_contract(plain))


# ---------------------------------------------------------------- artifact evaluator

def artifact_contract(template: str) -> MetricContract:
    d = default_far_contract().to_dict() | {
        "evaluator": {"type": "artifact", "producer": "tao-kpi", "path_template": template}}
    return MetricContract.from_dict(d)


def test_artifact_reads_iter_label_path(csv: Path, tmp_path: Path) -> None:
    target = tmp_path / "kpi" / "iter2" / "result.json"
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps({"name": "far_pct", "value": 7.0, "unit": "%", "passed": True,
                                  "constraints": {"recall_pct": 100}}))
    c = artifact_contract(str(tmp_path / "kpi" / "{iter_label}" / "result.json"))
    r = evaluate_inference_csv(csv, c, iter_label="iter2")
    assert r.value == 7.0 and r.passed is False and r.evidence_path == str(target)
    rel = artifact_contract("kpi/{iter_label}/result.json")
    assert evaluate_inference_csv(csv, rel, iter_label="iter2", base_dir=tmp_path).value == 7.0
    with pytest.raises(ContractError, match=r"tao-kpi has not written the result JSON at .*iter3"):
        evaluate_inference_csv(csv, c, iter_label="iter3")
    with pytest.raises(ConfigError, match="needs an iter_label"):
        evaluate_inference_csv(csv, c)


# ---------------------------------------------------------------- result JSON contract

@pytest.mark.parametrize(("patch", "match"), [
    ({"unit": "ratio"}, "unit is 'ratio' but the metric contract's unit is '%'"),
    ({"constraints": {}}, "no value for constraint 'recall_pct'"),
    ({"constraints": {"recall_pct": "100"}}, "constraint 'recall_pct' must be a finite number"),
    ({"value": float("inf")}, "value must be a finite number"),
    ({"value": None}, "value must be a finite number"),
    ({"name": "auroc"}, "name is 'auroc' but the metric contract measures 'far_pct'"),
    ({"threshold": "high"}, "threshold must be a finite number or null"),
    ({"diagnostics": [1]}, "diagnostics must be an object"),
])
def test_result_json_validation(patch: dict, match: str) -> None:
    good = {"name": "far_pct", "value": 1.0, "unit": "%", "constraints": {"recall_pct": 100.0}}
    with pytest.raises(ContractError, match=match):
        validate_result_json(good | patch, default_far_contract(), source="r.json")


def test_result_json_missing_keys_and_from_dict() -> None:
    with pytest.raises(ContractError, match=r"missing key\(s\) \['unit', 'constraints'\]"):
        validate_result_json({"name": "far_pct", "value": 1.0}, default_far_contract(), source="r.json")
    stored = {"name": "far_pct", "value": 1.0, "unit": "%", "passed": False, "constraints": {"recall_pct": 100.0},
              "threshold": 0.5, "evidence_path": "/x.json", "diagnostics": {}}
    r = MetricResult.from_dict(stored, default_far_contract())
    assert r.passed is True and r.evidence_path == "/x.json" and r.to_dict()["threshold"] == 0.5
