"""Zero-shot scorer quality on real DeepPCB pairs (SPEC §8): FAR@100 / FAR@99 / AUROC of 64×64 crops.

PASS tiles: the stride-64 grid tiles that no defect box touches. Defect tiles:
one 64×64 crop centred on every box (clamped inside the board). Nothing is
binarized; every variant is measured in the same run on the same crops, so the
rows compare directly with each other.

    .venv/bin/python bench/zeroshot_deeppcb.py [--root /work/shared/data/deeppcb/PCBData] [--drop-blank]
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from deftpipe.metrics.far import auroc, far_at_recall
from deftpipe.metrics.zeroshot import box_max, tolerant_map, zero_shot_scores

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "deeppcb" / "PCBData"
TILE = 64


def read_boxes(path: Path) -> list[tuple[int, int, int, int, int]]:
    boxes = []
    for line in path.read_text().splitlines():
        parts = [p for p in re.split(r"[,\s]+", line.strip()) if p]
        if len(parts) >= 5:
            x1, y1, x2, y2, kind = (int(float(p)) for p in parts[:5])
            boxes.append((x1, y1, x2, y2, kind))
    return boxes


def crops(root: Path, *, drop_blank: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(test, golden) as (N, 1, 64, 64) uint8, is_defect (N,) bool, defect type (N,) int (0 = PASS)."""
    tests, goldens, kinds = [], [], []
    for test_path in sorted(root.glob("group*/*/*_test.jpg")):
        stem = test_path.name[: -len("_test.jpg")]
        golden_path = test_path.with_name(f"{stem}_temp.jpg")
        box_path = test_path.parent.parent / f"{test_path.parent.name}_not" / f"{stem}.txt"
        if not golden_path.exists() or not box_path.exists():
            continue
        t = cv2.imread(str(test_path), cv2.IMREAD_GRAYSCALE)
        g = cv2.imread(str(golden_path), cv2.IMREAD_GRAYSCALE)
        boxes = read_boxes(box_path)
        h, w = t.shape
        for y in range(0, h - TILE + 1, TILE):
            for x in range(0, w - TILE + 1, TILE):
                touched = any(bx1 <= x + TILE and bx2 >= x and by1 <= y + TILE and by2 >= y
                              for bx1, by1, bx2, by2, _ in boxes)
                if touched:
                    continue
                gt = g[y:y + TILE, x:x + TILE]
                if drop_blank and gt.std() < 1.0:
                    continue
                tests.append(t[y:y + TILE, x:x + TILE])
                goldens.append(gt)
                kinds.append(0)
        for bx1, by1, bx2, by2, kind in boxes:
            cy, cx = (by1 + by2) // 2, (bx1 + bx2) // 2
            y = int(np.clip(cy - TILE // 2, 0, h - TILE))
            x = int(np.clip(cx - TILE // 2, 0, w - TILE))
            tests.append(t[y:y + TILE, x:x + TILE])
            goldens.append(g[y:y + TILE, x:x + TILE])
            kinds.append(kind)
    kind_arr = np.asarray(kinds, dtype=np.int64)
    return (np.stack(tests)[:, None], np.stack(goldens)[:, None], kind_arr > 0, kind_arr)


def report(name: str, scores: np.ndarray, is_defect: np.ndarray) -> dict[str, float]:
    r100 = far_at_recall(scores, is_defect, recall_pct=100.0)
    r99 = far_at_recall(scores, is_defect, recall_pct=99.0)
    a = auroc(scores, is_defect)
    print(f"{name:<48} FAR@100 {r100.far_pct:6.2f} %   FAR@99 {r99.far_pct:6.2f} %   AUROC {a:.4f}")
    return {"far100": r100.far_pct, "far99": r99.far_pct, "auroc": a}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    ap.add_argument("--drop-blank", action="store_true", help="drop PASS tiles whose golden is blank (std < 1)")
    ap.add_argument("--max-shift", type=int, default=3)
    args = ap.parse_args(argv)
    if not args.root.exists():
        print(f"DeepPCB not found at {args.root}; pass --root.", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    test, golden, is_defect, kinds = crops(args.root, drop_blank=args.drop_blank)
    print(f"{len(test)} crops: {int(is_defect.sum())} defect / {int((~is_defect).sum())} PASS "
          f"(decoded in {time.perf_counter() - t0:.1f} s)")
    naive = np.abs(test.astype(np.int16) - golden.astype(np.int16)).mean(axis=(1, 2, 3))
    report("naive: mean |test - golden|", naive, is_defect)
    t0 = time.perf_counter()
    raw = np.concatenate([tolerant_map(test[i:i + 2048], golden[i:i + 2048], max_shift=args.max_shift,
                                       mask_unseen=False) for i in range(0, len(test), 2048)])
    maps = np.concatenate([tolerant_map(test[i:i + 2048], golden[i:i + 2048], max_shift=args.max_shift)
                           for i in range(0, len(test), 2048)])
    dt = (time.perf_counter() - t0) / 2
    for k in (1, 2, 3):
        report(f"reg ±{args.max_shift}px + 1px tolerant, {k}x{k} box, no mask", box_max(raw, k), is_defect)
    for k in (1, 2, 3, 4):
        report(f"reg ±{args.max_shift}px + 1px tolerant, {k}x{k} box, unseen masked", box_max(maps, k), is_defect)
    t0 = time.perf_counter()
    shipped = zero_shot_scores(test, golden, max_shift=args.max_shift)
    dt_ship = time.perf_counter() - t0
    res = report("shipped zero_shot_scores (defaults)", shipped, is_defect)
    thr = far_at_recall(shipped, is_defect).threshold
    worst = np.argsort(shipped[is_defect])[:5]
    print(f"hardest defects (type, score): "
          f"{[(int(kinds[is_defect][i]), round(float(shipped[is_defect][i]), 2)) for i in worst]}; threshold {thr:.3f}")
    print(f"scorer throughput: {len(test) / dt_ship:.0f} pairs/s (tolerant maps {len(test) / dt:.0f} pairs/s)")
    print(f"RESULT far100={res['far100']:.2f} far99={res['far99']:.2f} auroc={res['auroc']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
