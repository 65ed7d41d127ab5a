"""Native backend training throughput: raw model steps vs end-to-end training on a workspace, in one run.

Prints raw fwd+bwd+optimizer pairs/s on in-memory tensors, end-to-end training pairs/s
(batching, normalization, flips, loss, optimizer, scheduler; validation and checkpoint
writes excluded, reported separately), their ratio (target >= 0.8), and the
epoch-2 / epoch-1 data-time ratio (epoch 1 includes decoding; ~0 shows decode happens once).

    python bench/train_throughput.py [--workspace WS] [--scale small] [--epochs 3] [--threads 2]
"""
from __future__ import annotations

import argparse
import copy
import inspect
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

SCALES: dict[str, tuple[int, int, int]] = {"tiny": (120, 40, 32), "small": (400, 120, 64), "medium": (1500, 400, 64)}


def _synthetic_workspace(root: Path, scale: str, seed: int) -> Path:
    """A workspace in the SPEC §2 layout: two grey lights, PASS pairs misaligned by ≤1 px, defects = blobs."""
    from deftpipe.workspace.spec import default_spec, dump_spec, set_key

    n_train, n_val, size = SCALES[scale]
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_train + n_val):
        golden = np.full((size, size), 50, np.uint8)
        for _ in range(4):
            y, x = rng.integers(0, size - 12, 2)
            golden[y:y + rng.integers(4, 12), x:x + rng.integers(4, 12)] = 170
        test = np.roll(golden, tuple(int(v) for v in rng.integers(-1, 2, 2)), axis=(0, 1)).astype(np.int16)
        test = np.clip(test + rng.integers(-4, 5, test.shape), 0, 255).astype(np.uint8)
        label = "PASS"
        if rng.random() < 0.3:
            label = "blob"
            cy, cx = rng.integers(4, size - 4, 2)
            cv2.circle(test, (int(cx), int(cy)), int(rng.integers(1, 4)), 230, -1)
        obj = f"C{i:05d}@1"
        for folder, img in ((f"boards/b{i % 10}", test), (f"golden/b{i % 10}", golden)):
            (root / "images" / folder).mkdir(parents=True, exist_ok=True)
            for light, gain in (("LightA", 1.0), ("LightB", 0.7)):
                cv2.imwrite(str(root / "images" / folder / f"{obj}_{light}.png"), (img * gain).astype(np.uint8))
        rows.append({"input_path": f"boards/b{i % 10}", "golden_path": f"golden/b{i % 10}", "label": label,
                     "object_name": obj})
    frame = pd.DataFrame(rows)
    (root / "train/base").mkdir(parents=True, exist_ok=True)
    (root / "specs").mkdir(parents=True, exist_ok=True)
    frame.iloc[:n_train].to_csv(root / "train/base/training_set.csv", index=False)
    frame.iloc[n_train:].to_csv(root / "train/base/validation_set.csv", index=False)
    spec = default_spec()
    set_key(spec, "dataset.classify.image_width", size)
    set_key(spec, "dataset.classify.image_height", size)
    (root / "specs/baseline_spec.yaml").write_text(dump_spec(spec))
    return root


def _make_workspace(root: Path, scale: str, seed: int) -> tuple[Path, str]:
    try:
        from deftpipe.demo import make_demo_workspace  # type: ignore[attr-defined]
    except ImportError:
        return _synthetic_workspace(root, scale, seed), "synthetic (bench)"
    params = inspect.signature(make_demo_workspace).parameters
    kwargs: dict[str, Any] = {k: v for k, v in (("scale", scale), ("seed", seed), ("force", True)) if k in params}
    result = make_demo_workspace(root, **kwargs)
    return (Path(result) if isinstance(result, (str, Path)) else root), "deftpipe.demo.make_demo_workspace"


class _RawModel:
    """The training model alone on pre-normalized in-memory tensors, batched exactly like a training epoch."""

    def __init__(self, spec: dict[str, Any], n_channels: int, size: tuple[int, int], n_pairs: int) -> None:
        import torch

        from deftpipe.backends.native.data import split_batches
        from deftpipe.backends.native.model import ArchInfo
        from deftpipe.backends.native.train import TrainSettings, build_model, make_optimizer

        s = TrainSettings.from_spec(spec)
        self.s = s
        arch = ArchInfo(s.backbone, s.difference_module, s.input_mode, n_channels)
        torch.manual_seed(0)
        # NHWC like the training loop (train._fit), so the ratio compares the same kernels.
        self.model = build_model(arch, freeze_backbone=s.freeze_backbone).train().to(memory_format=torch.channels_last)
        self.opt = make_optimizer(self.model, s)
        self.weight = torch.tensor(s.cls_weight)
        h, w = size
        self.batches = []
        for idx in split_batches(torch.arange(n_pairs), s.batch_size):
            b = len(idx)
            cl = torch.channels_last
            diff = (torch.rand(b, 2 * n_channels, h, w).contiguous(memory_format=cl)
                    if arch.input_mode == "registered_diff" else None)
            self.batches.append((torch.randn(b, n_channels, h, w).contiguous(memory_format=cl),
                                 torch.randn(b, n_channels, h, w).contiguous(memory_format=cl), diff,
                                 torch.randint(0, 2, (b,))))
        self.n_pairs = n_pairs
        self.epoch()  # warm-up

    def epoch(self) -> float:
        """Seconds for one epoch's worth of fwd + bwd + optimizer steps."""
        from deftpipe.backends.native.train import weighted_loss

        t0 = time.perf_counter()
        for t, g, d, y in self.batches:
            lsum, wsum = weighted_loss(self.model(t, g, d), y, kind=self.s.loss, weight=self.weight)
            self.opt.zero_grad(set_to_none=True)
            (lsum / wsum).backward()
            self.opt.step()
        return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=None)
    parser.add_argument("--scale", default="small", choices=sorted(SCALES))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--override", action="append", default=[], help="spec override key=value")
    args = parser.parse_args(argv)

    import torch

    from deftpipe.backends import TrainRequest, create_backend
    from deftpipe.workspace.layout import Workspace
    from deftpipe.workspace.spec import ImageSettings, load_spec, set_key

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="deftpipe_bench_") as tmp:
        tmp_path = Path(tmp)
        if args.workspace is None:
            t0 = time.perf_counter()
            root, how = _make_workspace(tmp_path / "ws", args.scale, args.seed)
            print(f"workspace: {root} ({how}, scale {args.scale}, {time.perf_counter() - t0:.1f}s to build)")
        else:
            root, how = args.workspace, "given"
            print(f"workspace: {root}")
        ws = Workspace.at(root)
        spec = load_spec(ws.spec_path, [f"train.num_epochs={args.epochs}", *args.override])
        img = ImageSettings.from_spec(spec)
        n_channels = len(img.lights) * (1 if img.grayscale else 3)
        batch = int(spec["dataset"]["classify"]["batch_size"])
        n_train = len(pd.read_csv(ws.training_csv))
        raw_model = _RawModel(copy.deepcopy(spec), n_channels, (img.height, img.width), n_train)
        raw_times = [raw_model.epoch()]

        images_value = spec["dataset"]["classify"].get("images_dir", "images")
        images_dir = Path(images_value) if Path(images_value).is_absolute() else ws.root / images_value
        set_key(spec, "train.checkpoint_interval", args.epochs)
        set_key(spec, "train.validation_interval", 1)
        out = tmp_path / "train"
        t0 = time.perf_counter()
        raw_in_train: list[float] = []

        def interleave(epoch: int, val_loss: float) -> bool:
            # A raw epoch between end-to-end epochs: both sides see the same background load.
            raw_in_train.append(raw_model.epoch())
            return False

        result = create_backend("native").train(TrainRequest(
            spec=spec, train_csv=ws.training_csv, val_csv=ws.validation_csv, images_dir=images_dir,
            workspace_root=ws.root, out_dir=out, cache_dir=tmp_path / "cache", seed=args.seed, device="cpu",
            on_epoch=interleave))
        wall = time.perf_counter() - t0 - sum(raw_in_train)
        log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
        raw_times += raw_in_train + [raw_model.epoch()]
    raw = n_train / statistics.median(raw_times)

    later = log[1:] or log
    e2e = statistics.median(r["n_pairs"] / r["train_seconds"] for r in later)
    data1 = log[0]["decode_seconds"] + log[0]["data_seconds"]
    data2 = log[1]["data_seconds"] if len(log) > 1 else float("nan")
    total_train_pairs = sum(r["n_pairs"] for r in log)
    print(f"threads: {torch.get_num_threads()}  device: cpu  pairs: train {n_train}  batch {batch}  "
          f"image {img.width}x{img.height}x{n_channels}  mode {spec['model']['classify']['input_mode']}  "
          f"backbone {spec['model']['backbone']['type']}")
    print(f"raw model fwd+bwd+step:          {raw:9.1f} pairs/s  (in-memory tensors, median of "
          f"{len(raw_times)} epochs of {n_train} pairs, interleaved with the training epochs)")
    print(f"end-to-end training (epochs 2+): {e2e:9.1f} pairs/s  (batching, normalization, flips, loss, step)")
    print(f"ratio end-to-end / raw:          {e2e / raw:9.3f}  (target >= 0.8)")
    print(f"data time epoch 1 (decode+registration {log[0]['decode_seconds']:.2f}s + batching "
          f"{log[0]['data_seconds']:.3f}s) = {data1:.3f}s; epoch 2 = {data2:.3f}s; ratio epoch2/epoch1 = "
          f"{data2 / data1:.4f}")
    print(f"whole train call: {wall:.1f}s for {len(log)} epoch(s) = {total_train_pairs / wall:.1f} pairs/s incl. "
          f"decode, validation and checkpoints; best val loss {result.best_val_loss:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
