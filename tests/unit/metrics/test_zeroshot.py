"""The shipped zero-shot scorer: shift + edge jitter score ~0, a real change scores high; CSV scoring; the CLI."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from deftpipe.cli.app import app
from deftpipe.cli.main import _load_commands
from deftpipe.cli.cmd_evaluate import _evaluate, load_contract
from deftpipe.errors import ConfigError, ContractError
from deftpipe.metrics.zeroshot import box_max, score_csv_zero_shot, unseen_mask, zero_shot_scores
from deftpipe.workspace.spec import default_spec


def board(rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """A PCB-like binary pattern (blocky traces) on a canvas larger than the crop, so shifts show real content."""
    coarse = (rng.random((size // 4, size // 4)) > 0.6).astype(np.uint8) * 200 + 30
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_NEAREST)


def pair(rng: np.random.Generator, dy: int, dx: int, crop: int = 32, lights: int = 2) -> tuple[np.ndarray, np.ndarray]:
    big = board(rng)
    o = 8
    test = big[o:o + crop, o:o + crop]
    golden = big[o - dy:o - dy + crop, o - dx:o - dx + crop]
    return np.stack([test] * lights), np.stack([golden] * lights)


def test_shifted_identical_pair_scores_near_zero_and_blob_scores_high() -> None:
    rng = np.random.default_rng(0)
    tests, goldens = [], []
    for dy, dx in [(0, 0), (1, 0), (0, -2), (2, 1), (-1, -1)]:
        t, g = pair(rng, dy, dx)
        tests.append(t)
        goldens.append(g)
    t, g = pair(rng, 1, 1)
    t = t.copy()
    t[:, 12:17, 12:17] = 255 - t[:, 12:17, 12:17]  # a pasted 5x5 blob that inverts the copper
    tests.append(t)
    goldens.append(g)
    s = zero_shot_scores(np.stack(tests), np.stack(goldens))
    assert s.dtype == np.float64 and s.shape == (6,)
    assert np.all(s[:5] < 1.0), s
    assert s[5] > 100.0, s


def test_single_pixel_noise_is_smoothed_away() -> None:
    rng = np.random.default_rng(1)
    t, g = pair(rng, 0, 0, lights=1)
    t = t.copy()
    t[0, 10, 10] = 255 if t[0, 10, 10] < 128 else 0
    s = zero_shot_scores(t[None], g[None])
    assert s[0] <= 255 / 9 + 1e-9  # one pixel out of a 3x3 box


def test_helpers_and_input_checks() -> None:
    img = np.zeros((1, 6, 6), np.float32)
    img[0, 2:4, 2:4] = 9.0
    assert box_max(img, 2)[0] == 9.0 and box_max(img, 3)[0] == 4.0 and box_max(img, 1)[0] == 9.0
    m = unseen_mask(np.array([[2, -1]]), 6, 6, border=1)
    assert not m[0, :2].any() and not m[0, :, -1].any() and m[0, 2:5, 1:5].all()
    with pytest.raises(ContractError, match="equal \\(N, C, H, W\\) arrays"):
        zero_shot_scores(np.zeros((1, 1, 4, 4), np.uint8), np.zeros((1, 1, 4, 5), np.uint8))
    with pytest.raises(ContractError, match="needs uint8 images"):
        zero_shot_scores(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 4, 4)))


def make_workspace(root: Path, n_pass: int = 6, n_defect: int = 3) -> Path:
    rng = np.random.default_rng(2)
    spec = default_spec()
    spec["dataset"]["classify"]["image_width"] = 32
    spec["dataset"]["classify"]["image_height"] = 32
    (root / "specs").mkdir(parents=True)
    (root / "specs" / "baseline_spec.yaml").write_text(yaml.safe_dump(spec))
    rows = []
    for i in range(n_pass + n_defect):
        t, g = pair(rng, int(rng.integers(-2, 3)), int(rng.integers(-2, 3)))
        label = "PASS" if i < n_pass else "open"
        if label != "PASS":
            t = t.copy()
            t[:, 10:16, 10:16] = 255 - t[:, 10:16, 10:16]
        for folder, img in (("test", t), ("golden", g)):
            for k, light in enumerate(("LightA", "LightB")):
                path = root / "images" / folder / f"obj{i}_{light}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(path), img[k])
        rows.append({"input_path": "test", "golden_path": "golden", "label": label, "object_name": f"obj{i}"})
    (root / "kpi").mkdir()
    pd.DataFrame(rows).to_csv(root / "kpi" / "testing_set.csv", index=False)
    return root


def test_score_csv_zero_shot_writes_rows_plus_score(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    spec = yaml.safe_load((ws / "specs" / "baseline_spec.yaml").read_text())
    out = score_csv_zero_shot(ws / "kpi" / "testing_set.csv", images_dir=ws / "images", workspace_root=ws,
                              spec=spec, out_csv=tmp_path / "out" / "scored.csv")
    frame = pd.read_csv(out, dtype={"siamese_score": float})
    assert list(frame.columns) == ["input_path", "golden_path", "label", "object_name", "siamese_score"]
    assert frame.loc[frame.label == "PASS", "siamese_score"].max() < frame.loc[frame.label != "PASS",
                                                                                "siamese_score"].min()


def test_evaluate_command_body_zero_shot_then_contract(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = make_workspace(tmp_path / "ws")
    _evaluate(None, None, tmp_path / "zs", True, ws, None)
    assert "FAR@100 0.00% | FAR@99 0.00% | AUROC 1.0000" in capsys.readouterr().out
    scored = tmp_path / "zs" / "testing_set_zero_shot_inference.csv"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: far_pct\noperator: '=>'\ntarget: 5\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.operator: unknown operator '=>'.*Did you mean '>='"):
        _evaluate(scored, bad, None, False, None, None)
    with pytest.raises(ConfigError, match="contract file not found"):
        load_contract(tmp_path / "none.yaml")
    with pytest.raises(ConfigError, match="drop --inference-csv"):
        _evaluate(scored, None, None, True, ws, None)


@pytest.mark.slow
def test_cli_evaluate_zero_shot_and_inference_csv(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    runner = CliRunner()
    _load_commands()  # every cmd_* module, as the console script does

    res = runner.invoke(app, ["evaluate", "--zero-shot", "--workspace", str(ws), "--out", str(tmp_path / "zs")])
    assert res.exit_code == 0, res.output
    assert "FAR@100 0.00% | FAR@99 0.00% | AUROC 1.0000" in res.output
    scored = tmp_path / "zs" / "testing_set_zero_shot_inference.csv"
    assert scored.is_file() and (tmp_path / "zs" / "metric_result.json").is_file()
    contract = tmp_path / "c.yaml"
    contract.write_text(yaml.safe_dump({"metric_contract": {"name": "far_pct", "operator": "<", "target": 1,
                                                            "unit": "%", "constraints": []}}))
    res = runner.invoke(app, ["evaluate", "--inference-csv", str(scored), "--contract", str(contract)])
    assert res.exit_code == 0, res.output
    assert "far_pct=0% -> PASS (far_pct < 1%)" in res.output
    res = runner.invoke(app, ["evaluate"])
    assert res.exit_code == 2 and "pass --inference-csv CSV" in res.output
