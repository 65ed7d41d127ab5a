"""Tiny synthetic SDG workspaces: 48 px two-light component crops and 64 px binary trace crops, drawn with cv2."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

LIGHTS = ("LightA", "LightB")
EXT = ".png"
# per light: board, body, pad, fillet highlight
LEVELS = {"LightA": (40, 120, 200, 235), "LightB": (70, 95, 170, 215)}


def component_golden(kind: str = "chip", size: int = 48, seed: int = 0) -> np.ndarray:
    """(2, H, W): dark board, bright pads with fillets, a grey body; `ic` has three leads per side."""
    rng = np.random.default_rng(seed)
    planes = []
    for light in LIGHTS:
        board, body, pad, fillet = LEVELS[light]
        img = np.full((size, size), board, np.float32)
        img += rng.normal(0, 2.0, img.shape).astype(np.float32)
        if kind == "chip":
            for x0, x1 in ((6, 16), (32, 42)):
                cv2.rectangle(img, (x0, 17), (x1, 30), pad, -1)
            cv2.rectangle(img, (13, 18), (35, 29), body, -1)
            # fillets: a bright gradient on the pad next to each body end
            for xs in (range(8, 13), range(36, 41)):
                for i, x in enumerate(xs):
                    t = i / 4 if xs.start < 20 else 1 - i / 4
                    img[18:30, x] = pad + (fillet - pad) * t
        else:  # ic: body with three leads on each side (leads along y, pads left/right)
            cv2.rectangle(img, (15, 10), (33, 37), body, -1)
            for y in (12, 21, 30):
                for x0, x1 in ((5, 14), (34, 43)):
                    cv2.rectangle(img, (x0, y), (x1, y + 5), pad, -1)
                    cv2.rectangle(img, (x0 + 2, y + 1), (x1 - 2, y + 4), fillet, -1)
        planes.append(np.clip(img, 0, 255).astype(np.uint8))
    return np.stack(planes)


def real_test_of(golden: np.ndarray, seed: int) -> np.ndarray:
    """The test image of a PASS pair: the golden with real misalignment and sensor noise."""
    rng = np.random.default_rng(seed + 1000)
    dx, dy = rng.uniform(-1.0, 1.0, 2)
    out = []
    for plane in golden:
        m = np.float32([[1, 0, dx], [0, 1, dy]])
        moved = cv2.warpAffine(plane, m, plane.shape[::-1], borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
        out.append(np.clip(moved + rng.normal(0, 2.0, plane.shape), 0, 255).astype(np.uint8))
    return np.stack(out)


def trace_golden(size: int = 64, seed: int = 0) -> np.ndarray:
    """(1, H, W) DeepPCB-like: dark copper traces on white, binary."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size), 255, np.uint8)
    cv2.line(img, (4, 14), (60, 14), 0, 5)
    cv2.line(img, (4, 30), (40, 30), 0, 4)
    cv2.line(img, (40, 30), (58, 50), 0, 4)
    cv2.circle(img, (20, 50), 7, 0, -1)
    cv2.circle(img, (20, 50), 2, 255, -1)
    if seed % 2:
        cv2.line(img, (50, 4), (50, 8), 0, 3)
    _ = rng
    return img[None]


def write_stack(folder: Path, obj: str, stack: np.ndarray, lights: tuple[str, ...]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for light, plane in zip(lights, stack):
        ok, buf = cv2.imencode(EXT, plane)
        assert ok
        (folder / f"{obj}_{light}{EXT}").write_bytes(buf.tobytes())


def make_component_ws(root: Path) -> tuple[Path, pd.DataFrame]:
    """Workspace with 6 PASS chip pairs, 4 PASS ic pairs, 2 defect rows; KPI pairs for gaps. Returns (root, train rows)."""
    images = root / "images"
    rows = []
    for i in range(10):
        kind = "chip_resistor" if i < 6 else "ic"
        obj = f"{'R' if kind == 'chip_resistor' else 'U'}{100 + i}@1"
        g = component_golden("chip" if kind == "chip_resistor" else "ic", seed=i)
        write_stack(images / "train/golden", obj, g, LIGHTS)
        write_stack(images / "train/test", obj, real_test_of(g, i), LIGHTS)
        rows.append({"input_path": "train/test", "golden_path": "train/golden", "label": "PASS",
                     "object_name": obj, "component_kind": kind, "boardname": f"b{i % 2}"})
    for i in range(2):
        obj = f"R2{i}@1"
        g = component_golden("chip", seed=50 + i)
        write_stack(images / "train/golden", obj, g, LIGHTS)
        write_stack(images / "train/test", obj, real_test_of(g, 50 + i), LIGHTS)
        rows.append({"input_path": "train/test", "golden_path": "train/golden", "label": "missing",
                     "object_name": obj, "component_kind": "chip_resistor", "boardname": "b0"})
    for i in range(4):  # KPI pairs behind the gaps
        obj = f"K{i}@1"
        g = component_golden("chip", seed=70 + i)
        write_stack(images / "kpi/golden", obj, g, LIGHTS)
        t = real_test_of(g, 70 + i)
        if i == 3:  # a false alarm caused by a gain change
            t = np.clip(t.astype(np.float32) * 1.18, 0, 255).astype(np.uint8)
        write_stack(images / "kpi/test", obj, t, LIGHTS)
    train = pd.DataFrame(rows)
    (root / "train/base").mkdir(parents=True, exist_ok=True)
    train.to_csv(root / "train/base/training_set.csv", index=False)
    (root / "results/run_x").mkdir(parents=True)
    return root, train


def gaps_frame(labels: list[str], kinds: list[str] | None = None) -> pd.DataFrame:
    """Routed SDG gaps in kpi_gaps.parquet shape, one row per label entry."""
    rows = []
    for i, label in enumerate(labels):
        obj = f"K{i % 4}@1"
        rows.append({
            "filepath": f"images/kpi/test/{obj}_LightA.png", "label": label, "siamese_score": 0.1 * i,
            "weakness": 1.0 - 0.05 * i, "is_miss": label != "PASS", "is_false_alarm": label == "PASS",
            "input_path": "kpi/test", "golden_path": "kpi/golden", "object_name": obj,
            "component_kind": (kinds[i] if kinds else "chip_resistor"), "boardname": "kb",
        })
    return pd.DataFrame(rows)


@pytest.fixture
def component_ws(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    return make_component_ws(tmp_path / "ws")


@pytest.fixture
def trace_ws(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    root = tmp_path / "pcb"
    rows = []
    for i in range(4):
        obj = f"T{i}"
        g = trace_golden(seed=i)
        write_stack(root / "images/tr/golden", obj, g, ("gray",))
        write_stack(root / "images/tr/test", obj, g.copy(), ("gray",))
        rows.append({"input_path": "tr/test", "golden_path": "tr/golden", "label": "PASS", "object_name": obj})
    (root / "results/run_y").mkdir(parents=True)
    return root, pd.DataFrame(rows)
