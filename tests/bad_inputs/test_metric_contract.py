"""Bad metric contracts and misbehaving command evaluators (SPEC §3): clear errors, nothing trusted, no hang."""
from __future__ import annotations

import json
import re
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from deftpipe.errors import ConfigError, ContractError
from deftpipe.metrics.contract import MetricContract, default_far_contract
from deftpipe.metrics.evaluators import evaluate_inference_csv

from .conftest import assert_user_error, invoke


@pytest.fixture
def inference_csv(tmp_path: Path) -> Path:
    frame = pd.DataFrame({"input_path": "t", "golden_path": "g", "label": ["PASS"] * 4 + ["open"] * 2,
                          "object_name": [f"o{i}" for i in range(6)],
                          "siamese_score": [0.1, 0.2, 0.3, 0.9, 0.5, 0.8]})
    path = tmp_path / "inference.csv"
    frame.to_csv(path, index=False, float_format="%.17g")
    return path


def _contract(**changes: object) -> dict:
    return default_far_contract().to_dict() | changes


BAD_CONTRACTS = [
    ("swapped_operator", _contract(operator="=>"),
     "metric_contract.operator: unknown operator '=>'; choose one of ['<', '<=', '>', '>=']. Did you mean '>='?"),
    ("unicode_operator", _contract(operator="≤"), "unknown operator '≤'; choose one of"),
    ("operator_list", _contract(operator=["<"]), "unknown operator ['<']"),
    ("nan_target", _contract(target=float("nan")), "metric_contract.target: target must be a finite number, got nan."),
    ("inf_target", _contract(target=float("inf")), "target must be a finite number, got inf."),
    ("percent_string_target", _contract(target="5%"), "target must be a finite number, got '5%'."),
    ("bool_target", _contract(target=True), "target must be a finite number, got True."),
    ("uppercase_name", _contract(name="FAR"), "name 'FAR' must match [a-z][a-z0-9_]*"),
    ("constraint_without_target", _contract(constraints=[{"name": "recall_pct", "operator": ">="}]),
     "metric_contract.constraints[0]: missing key(s) ['target']"),
    ("constraint_nan_target", _contract(constraints=[{"name": "recall_pct", "operator": ">=", "target": float("nan")}]),
     "metric_contract.constraints[0].recall_pct: target must be a finite number, got nan."),
    ("evaluator_type_typo", _contract(evaluator={"type": "comand", "path": "/bin/true"}),
     "unknown evaluator type 'comand'; choose one of ['builtin', 'command', 'artifact']. Did you mean 'command'?"),
    ("command_args_not_a_list", _contract(evaluator={"type": "command", "path": "/bin/true", "args": "--fast"}),
     "metric_contract.evaluator.args: must be a list of strings"),
    ("duplicate_constraint", _contract(constraints=[{"name": "recall_pct", "operator": ">=", "target": 100}] * 2),
     "constraint name(s) ['recall_pct'] repeated"),
]


@pytest.mark.parametrize(("contract", "fragment"), [b[1:] for b in BAD_CONTRACTS], ids=[b[0] for b in BAD_CONTRACTS])
def test_bad_contract_is_refused(contract: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        MetricContract.from_dict(contract)


def test_unit_mismatch_with_builtin(inference_csv: Path) -> None:
    with pytest.raises(ConfigError, match=r"metric_contract\.unit is 'ratio' but builtin 'far_at_recall' measures "
                                          r"in '%'; set the contract's unit to match\."):
        evaluate_inference_csv(inference_csv, MetricContract.from_dict(_contract(unit="ratio")))


@pytest.mark.parametrize(("text", "fragment"), [
    ("name: far_pct\noperator: '=>'\ntarget: 5\nunit: '%'\n", "Did you mean '>='?"),
    ("name: far_pct\noperator: '<'\ntarget: .nan\nunit: '%'\n", "target must be a finite number, got nan."),
    ("name: far_pct\noperator: '<'\ntarget: 5\nunit: ratio\n", "measures in '%'"),
    ("metric_contract: [1, 2]\n", "missing key(s) ['name', 'operator', 'target']; present: ['metric_contract']."),
])
def test_cli_evaluate_with_bad_contract_exits_2(tmp_path: Path, inference_csv: Path, cli: object, text: str,
                                               fragment: str) -> None:
    contract = tmp_path / "contract.yaml"
    contract.write_text(text)
    out = tmp_path / "out" / "metric_result.json"
    code, _, err = invoke(cli, "evaluate", "--inference-csv", str(inference_csv),  # type: ignore[arg-type]
                          "--contract", str(contract), "--out", str(out))
    assert_user_error(code, err, fragment)
    assert not out.parent.exists()  # nothing written for a refused contract


# ---------------------------------------------------------------- command evaluators that misbehave

def _script(tmp_path: Path, body: str, name: str = "evaluator.py") -> Path:
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


def _command(path: Path) -> MetricContract:
    return MetricContract.from_dict(_contract(evaluator={"type": "command", "path": str(path), "args": []}))


WRITE_RESULT = """
import json, sys
out = sys.argv[sys.argv.index("--output-json") + 1]
json.dump({result}, open(out, "w"))
"""

MISBEHAVING = [
    ("exits_nonzero", "import sys\nsys.stderr.write('CUDA error: out of memory\\n')\nsys.exit(3)\n",
     "command evaluator evaluator.py exited with status 3; stderr tail: CUDA error: out of memory"),
    ("killed_by_signal", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", "exited with status -9"),
    ("prints_garbage", """
        import sys, os
        sys.stdout.write(os.urandom(300000).hex())
        sys.stderr.write("\\x00\\xff garbage")
        open(sys.argv[sys.argv.index("--output-json") + 1], "w").write("FAR: 3.5 % (looks fine)")
     """, "wrote invalid JSON (Expecting value at line 1 column 1); it starts with 'FAR: 3.5 % (looks fine)'"),
    ("binary_output", """
        import sys
        open(sys.argv[sys.argv.index("--output-json") + 1], "wb").write(b"\\xff\\xfe\\x00")
     """, "wrote a file that is not UTF-8 JSON"),
    ("writes_nothing", "print('done')\n", "exited 0 but wrote no --output-json file"),
    ("unit_mismatch", WRITE_RESULT.format(
        result='{"name": "far_pct", "value": 0.03, "unit": "ratio", "constraints": {"recall_pct": 100}}'),
     "unit is 'ratio' but the metric contract's unit is '%'"),
    ("nan_value", WRITE_RESULT.format(
        result='{"name": "far_pct", "value": float("nan"), "unit": "%", "constraints": {"recall_pct": 100}}'),
     "value must be a finite number, got nan."),
    ("missing_constraint", WRITE_RESULT.format(result='{"name": "far_pct", "value": 1, "unit": "%", "constraints": {}}'),
     "no value for constraint 'recall_pct' (Recall=100%); the evaluator must report every configured constraint"),
    ("wrong_metric", WRITE_RESULT.format(
        result='{"name": "auroc", "value": 0.9, "unit": "%", "constraints": {"recall_pct": 100}}'),
     "name is 'auroc' but the metric contract measures 'far_pct'."),
    ("json_list", WRITE_RESULT.format(result="[1, 2, 3]"), "the result must be a JSON object, got list."),
]


@pytest.mark.parametrize(("body", "fragment"), [m[1:] for m in MISBEHAVING], ids=[m[0] for m in MISBEHAVING])
def test_misbehaving_command_evaluator(tmp_path: Path, inference_csv: Path, body: str, fragment: str) -> None:
    out = tmp_path / "res" / "metric_result.json"
    with pytest.raises(ContractError, match=re.escape(fragment)):
        evaluate_inference_csv(inference_csv, _command(_script(tmp_path, textwrap.dedent(body))), out_json=out,
                               timeout_s=20)
    assert not out.exists() and not out.with_name("metric_result.raw.json").exists()


def test_hanging_evaluator_and_its_children_are_killed(tmp_path: Path, inference_csv: Path) -> None:
    pid_file = tmp_path / "child.pid"
    exe = _script(tmp_path, f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open({str(pid_file)!r}, "w").write(str(child.pid))
        sys.stderr.write("loading model...\\n"); sys.stderr.flush()
        time.sleep(60)
    """)
    start = time.monotonic()
    with pytest.raises(ContractError, match=r"did not finish within 1 s and was killed; make it faster or raise the "
                                            r"timeout\. stderr tail: loading model\.\.\."):
        evaluate_inference_csv(inference_csv, _command(exe), timeout_s=1.0)
    assert time.monotonic() - start < 10
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # gone, or a zombie waiting for init to reap it
        try:
            state = Path(f"/proc/{child}/stat").read_text().split(")")[-1].split()[0]
        except FileNotFoundError:
            break
        if state == "Z":
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"grandchild {child} of the hanging evaluator outlived the timeout")


def test_garbage_on_stdout_is_ignored_and_passed_is_recomputed(tmp_path: Path, inference_csv: Path) -> None:
    exe = _script(tmp_path, """
        import json, sys
        print("Traceback (most recent call last): just kidding " * 1000)
        out = sys.argv[sys.argv.index("--output-json") + 1]
        json.dump({"name": "far_pct", "value": 50.0, "unit": "%", "passed": True,
                   "constraints": {"recall_pct": 100.0}}, open(out, "w"))
    """)
    result = evaluate_inference_csv(inference_csv, _command(exe), timeout_s=20)
    assert result.value == 50.0 and result.passed is False  # the evaluator's own "passed" is never trusted


def test_contract_file_round_trip_refuses_yaml_nan(tmp_path: Path) -> None:
    data = yaml.safe_load("name: far_pct\noperator: '<'\ntarget: .inf\nunit: '%'\n")
    with pytest.raises(ConfigError, match=r"metric_contract\.target: target must be a finite number, got inf\."):
        MetricContract.from_dict(data)
    assert json.dumps(default_far_contract().to_dict(), allow_nan=False)


def test_cli_contract_yaml_syntax_error(tmp_path: Path, inference_csv: Path, cli: object) -> None:
    contract = tmp_path / "contract.yaml"
    contract.write_text("name: far_pct\noperator: [<\n")
    code, _, err = invoke(cli, "evaluate", "--inference-csv", str(inference_csv),  # type: ignore[arg-type]
                          "--contract", str(contract))
    assert code == 2 and "Traceback" not in err and f"error: {contract}: not valid YAML/JSON" in err
    if len([ln for ln in err.splitlines() if ln.strip()]) > 1:  # reported: cli/cmd_evaluate.py is not ours to change
        pytest.xfail("KNOWN BUG: deftpipe evaluate prints the YAML error of a contract file over several lines "
                     "(load_contract formats the raw yaml exception)")
