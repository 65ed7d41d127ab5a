"""Training loop of the native backend: spec keys of SPEC §2 -> checkpoints, status.json, train_log.jsonl.

Same machine + same thread count + same seed -> same numbers: every random draw
comes from generators seeded by (seed, epoch), so a resumed run repeats what an
uninterrupted one would have done.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from deftpipe.backends.base import TrainRequest, TrainResult
from deftpipe.backends.native.checkpoint import (
    check_arch,
    checkpoint_name,
    load_checkpoint,
    parse_checkpoint_name,
    plain,
    save_checkpoint,
)
from deftpipe.backends.native.data import BatchMaker, Normalization, PairTensors, load_pair_tensors, split_batches
from deftpipe.backends.native.model import LABEL_NAMES, ArchInfo, SiameseClassifier, registered_backbones
from deftpipe.errors import ConfigError, ContractError
from deftpipe.workspace import spec as spec_mod
from deftpipe.workspace.io import read_jsonl, write_json_atomic, write_text_atomic
from deftpipe.workspace.paths import ImageLocator
from deftpipe.workspace.spec import ImageSettings
from deftpipe.workspace.tables import read_samples_csv

KEEP_CHOICES: tuple[str, ...] = ("best_latest", "all")
FOCAL_GAMMA = 2.0


@dataclass(frozen=True)
class TrainSettings:
    """The honoured training keys of a resolved spec, with the template's defaults filled in."""

    num_epochs: int
    checkpoint_interval: int
    validation_interval: int
    lr: float
    optim: str
    policy: str
    momentum: float
    weight_decay: float
    loss: str
    cls_weight: tuple[float, float]
    backbone: str
    freeze_backbone: bool
    difference_module: str
    input_mode: str
    max_shift_px: int
    batch_size: int
    hflip: float
    vflip: float
    pretrained_model_path: str | None
    resume_training_checkpoint_path: str | None

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> TrainSettings:
        base = spec_mod.default_spec()

        def pick(key: str) -> Any:
            value = spec_mod.get(spec, key)
            return spec_mod.get(base, key) if value is None else value

        aug = spec_mod.get(spec, "dataset.classify.augmentation_config") or {}
        weights = pick("train.classify.cls_weight")
        return cls(
            num_epochs=int(pick("train.num_epochs")),
            checkpoint_interval=int(pick("train.checkpoint_interval")),
            validation_interval=int(pick("train.validation_interval")),
            lr=float(pick("train.optim.lr")),
            optim=str(pick("train.optim.optim")),
            policy=str(pick("train.optim.policy")),
            momentum=float(pick("train.optim.momentum")),
            weight_decay=float(pick("train.optim.weight_decay")),
            loss=str(pick("train.classify.loss")),
            cls_weight=(float(weights[0]), float(weights[1])),
            backbone=str(pick("model.backbone.type")),
            freeze_backbone=bool(pick("model.backbone.freeze_backbone")),
            difference_module=str(pick("model.classify.difference_module")),
            input_mode=str(pick("model.classify.input_mode")),
            max_shift_px=int(pick("model.classify.max_shift_px")),
            batch_size=int(pick("dataset.classify.batch_size")),
            hflip=float(aug.get("hflip_probability", 0.0)),
            vflip=float(aug.get("vflip_probability", 0.0)),
            pretrained_model_path=spec_mod.get(spec, "train.pretrained_model_path") or None,
            resume_training_checkpoint_path=spec_mod.get(spec, "train.resume_training_checkpoint_path") or None,
        )


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"device '{device}' is not a torch device; use auto, cpu, cuda or cuda:N.") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{device}' requested but CUDA is not available here; use --device cpu or auto.")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@contextlib.contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic kernels where cheap, restored afterwards (other code in the process is not affected).

    CPU kernels of this model are deterministic for a fixed thread count already, and
    `torch.use_deterministic_algorithms` costs seconds of imports, so it is only switched on for CUDA.
    """
    if device.type != "cuda":
        yield
        return
    prev_alg = torch.are_deterministic_algorithms_enabled()
    prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    prev_cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev_alg, warn_only=prev_warn)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = prev_cudnn


def arch_from_spec(spec: Mapping[str, Any]) -> ArchInfo:
    s = TrainSettings.from_spec(spec)
    img = ImageSettings.from_spec(spec)
    return ArchInfo(s.backbone, s.difference_module, s.input_mode, len(img.lights) * (1 if img.grayscale else 3))


def build_model(arch: ArchInfo, *, freeze_backbone: bool = False) -> SiameseClassifier:
    model = SiameseClassifier(arch)
    if freeze_backbone:
        model.freeze_backbone(True)
    return model


def weighted_loss(logits: torch.Tensor, labels: torch.Tensor, *, kind: str, weight: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of weighted per-sample losses, sum of weights): CE or focal (γ=2), class weights [PASS, defect]."""
    logits = logits.float()
    ce = F.cross_entropy(logits, labels, reduction="none")
    if kind == "focal":
        p_t = torch.exp(-ce)
        ce = (1.0 - p_t).pow(FOCAL_GAMMA) * ce
    w = weight[labels]
    return (ce * w).sum(), w.sum()


def make_optimizer(model: torch.nn.Module, s: TrainSettings) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if s.optim == "adamw":
        return torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    if s.optim == "adam":
        return torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay)
    if s.optim == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    raise ConfigError(f"train.optim.optim: '{s.optim}' is not one of ['adamw', 'adam', 'sgd'].")


def make_scheduler(opt: torch.optim.Optimizer, s: TrainSettings, steps_per_epoch: int
                   ) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once per optimizer step: cosine to 0 over the run, step = ×0.1 every third of it, or constant."""
    total = max(1, s.num_epochs * steps_per_epoch)
    if s.policy == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    if s.policy == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, s.num_epochs // 3) * steps_per_epoch, gamma=0.1)
    if s.policy == "constant":
        return torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)
    raise ConfigError(f"train.optim.policy: '{s.policy}' is not one of ['cosine', 'step', 'constant'].")


@dataclass
class InitState:
    """Where training starts: epoch/step counters, the checkpoint it came from, optimizer state to restore."""

    start_epoch: int = 0
    step: int = 0
    source: Path | None = None
    mode: str = "scratch"  # scratch | pretrained | resume
    optimizer: Mapping[str, Any] | None = None
    scheduler: Mapping[str, Any] | None = None
    best_val_loss: float = math.inf
    best_val_file: str | None = None


def _load_weights(model: SiameseClassifier, payload: Mapping[str, Any], *, path: Path, purpose: str) -> None:
    """Weights whose shapes contradict the checkpoint's own `arch` are a user error naming the file, not a crash."""
    try:
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, TypeError, KeyError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ContractError(
            f"{purpose}: checkpoint '{path}' holds weights that do not fit the architecture it declares "
            f"({payload['arch']}): {first[:300]}. Re-create it with `deftpipe train`, or point {purpose} "
            "at a checkpoint trained with this spec."
        ) from exc


def initialize(model: SiameseClassifier, s: TrainSettings, arch: ArchInfo) -> InitState:
    """Apply `resume_training_checkpoint_path` (wins when both are set) or `pretrained_model_path` to `model`.

    Raises:
        ContractError: an unreadable or foreign checkpoint, another architecture, or weights of other shapes.
    """
    if s.resume_training_checkpoint_path:
        path = Path(s.resume_training_checkpoint_path)
        payload = load_checkpoint(path)
        check_arch(payload, arch, path=path, purpose="train.resume_training_checkpoint_path")
        _load_weights(model, payload, path=path, purpose="train.resume_training_checkpoint_path")
        if payload.get("optimizer") is None:
            raise ContractError(
                f"train.resume_training_checkpoint_path: '{path}' holds no optimizer state (an exported or "
                "weights-only file); use it as train.pretrained_model_path instead."
            )
        best = payload.get("best_val_loss")
        return InitState(int(payload["epoch"]), int(payload["step"]), path, "resume", payload["optimizer"],
                         payload.get("scheduler"), math.inf if best is None else float(best),
                         payload.get("best_val_file"))
    if s.pretrained_model_path:
        path = Path(s.pretrained_model_path)
        payload = load_checkpoint(path)
        check_arch(payload, arch, path=path, purpose="train.pretrained_model_path")
        _load_weights(model, payload, path=path, purpose="train.pretrained_model_path")
        return InitState(source=path, mode="pretrained")
    return InitState()


class _Run:
    """Bookkeeping of one training run: checkpoint files, retention, status.json and train_log.jsonl."""

    def __init__(self, out_dir: Path, keep: str, init: InitState, protected: set[Path]) -> None:
        self.out_dir = out_dir
        self.keep = keep
        self.protected = {p.resolve() for p in protected}
        self.best_loss = init.best_val_loss
        self.best_path: Path | None = None
        if init.best_val_file:
            # A resume may write into a new folder; the best file then stays where the interrupted run left it.
            folders = [out_dir] + ([init.source.parent] if init.source is not None else [])
            self.best_path = next((f / init.best_val_file for f in folders if (f / init.best_val_file).is_file()), None)
        if self.best_path is None:
            self.best_loss = math.inf
        self.latest_path: Path | None = None
        self.val_losses: dict[int, float] = {}
        self.log: list[dict[str, Any]] = []
        if init.mode == "resume":
            self.log = [r for r in read_jsonl(out_dir / "train_log.jsonl") if int(r.get("epoch", 0)) <= init.start_epoch]
            self.val_losses = {int(r["epoch"]): float(r["val_loss"]) for r in self.log if r.get("val_loss") is not None}

    def prune(self) -> None:
        if self.keep == "all":
            return
        keep = {p.resolve() for p in (self.best_path, self.latest_path) if p is not None} | self.protected
        for f in self.out_dir.iterdir():
            if parse_checkpoint_name(f.name) and f.resolve() not in keep:
                f.unlink(missing_ok=True)

    def write_status(self, state: str, epoch: int, num_epochs: int, step: int) -> None:
        write_json_atomic(self.out_dir / "status.json", {
            "state": state, "epoch": epoch, "num_epochs": num_epochs, "step": step,
            "best_val": str(self.best_path) if self.best_path else None,
            "best_val_loss": None if math.isinf(self.best_loss) else self.best_loss,
            "latest": str(self.latest_path) if self.latest_path else None,
            "val_losses": {str(k): v for k, v in sorted(self.val_losses.items())},
        })

    def write_log(self) -> None:
        import json

        write_text_atomic(self.out_dir / "train_log.jsonl", "".join(json.dumps(r) + "\n" for r in self.log))


def _check_resume_not_finished(init: InitState, s: TrainSettings) -> None:
    if init.mode == "resume" and init.start_epoch >= s.num_epochs:
        raise ConfigError(
            f"train.resume_training_checkpoint_path: '{init.source}' already finished epoch {init.start_epoch} "
            f"of train.num_epochs={s.num_epochs}; raise train.num_epochs to train further, or use it as "
            "train.pretrained_model_path for a fresh run."
        )


def _expected_arch(s: TrainSettings, img: ImageSettings) -> ArchInfo:
    return ArchInfo(s.backbone, s.difference_module, s.input_mode, len(img.lights) * (1 if img.grayscale else 3))


def _read_rows(path: Path, what: str) -> Any:
    return read_samples_csv(path, name=f"{what} CSV '{path}'")


def train_model(request: TrainRequest, *, keep_checkpoints: str = "best_latest") -> TrainResult:
    """Train per `request.spec`; see the module docstring for the files written under `request.out_dir`.

    Raises:
        ConfigError: bad spec values, an impossible checkpoint interval, a finished resume.
        ContractError: bad CSVs or images, unreadable or foreign checkpoints.
    """
    if keep_checkpoints not in KEEP_CHOICES:
        raise ConfigError(f"keep_checkpoints '{keep_checkpoints}' is not one of {list(KEEP_CHOICES)}.")
    spec = plain(request.spec)
    checked = copy.deepcopy(spec)
    if spec_mod.get(spec, "model.backbone.type") in registered_backbones():
        # The backbone registry, not the spec's static choice list, is the authority on backbone names.
        spec_mod.set_key(checked, "model.backbone.type", "resnet_tiny")
    spec_mod.validate_spec(checked, source="train spec")
    spec_mod.set_key(spec, "train.seed", int(request.seed))
    s = TrainSettings.from_spec(spec)
    img = ImageSettings.from_spec(spec)
    device = resolve_device(request.device)
    # The start checkpoint is checked before anything is written: a foreign or mismatched file must
    # leave no output folder and no decode cache behind. Channels follow decode_pairs' stacking rule.
    if s.resume_training_checkpoint_path or s.pretrained_model_path:
        expected = _expected_arch(s, img)
        _check_resume_not_finished(initialize(build_model(expected), s, expected), s)
    out_dir = Path(request.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    progress = request.progress

    t0 = time.perf_counter()
    locator = ImageLocator(Path(request.images_dir), Path(request.workspace_root), img.lights, img.image_ext)
    train_rows = _read_rows(Path(request.train_csv), "training")
    val_rows = _read_rows(Path(request.val_csv), "validation")
    load = dict(input_mode=s.input_mode, max_shift=s.max_shift_px, cache_dir=request.cache_dir, progress=progress)
    train_data = load_pair_tensors(train_rows, locator, img, csv_name=f"training CSV '{request.train_csv}'", **load)
    val_data = load_pair_tensors(val_rows, locator, img, csv_name=f"validation CSV '{request.val_csv}'", **load)
    decode_seconds = time.perf_counter() - t0

    arch = ArchInfo(s.backbone, s.difference_module, s.input_mode, int(train_data.test.shape[1]))
    norm = Normalization.from_spec(spec, arch.in_channels)
    with deterministic(device):
        seed_everything(request.seed)
        model = build_model(arch)
        init = initialize(model, s, arch)
        model.freeze_backbone(s.freeze_backbone)
        return _fit(request, spec, s, img, arch, norm, model, init, train_data, val_data, device, out_dir,
                    keep_checkpoints, decode_seconds, progress)


def _fit(request: TrainRequest, spec: dict[str, Any], s: TrainSettings, img: ImageSettings, arch: ArchInfo,
         norm: Normalization, model: SiameseClassifier, init: InitState, train_data: PairTensors,
         val_data: PairTensors, device: torch.device, out_dir: Path, keep: str, decode_seconds: float,
         progress: Any) -> TrainResult:
    cuda = device.type == "cuda"
    # NHWC on every device: cuDNN wants it for tensor cores, and oneDNN's CPU convolutions run this
    # small-channel net about 1.6x faster in it (fwd+bwd, 1 thread: 6.2 vs 10.7 ms per pair).
    model.to(device).to(memory_format=torch.channels_last)
    if cuda:
        train_data, val_data = train_data.to(device), val_data.to(device)
    amp_dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else None
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    n = len(train_data)
    if n < 2:
        raise ContractError(f"training CSV '{request.train_csv}' has {n} row(s); training needs at least 2.")
    if len(val_data) == 0:
        raise ContractError(f"validation CSV '{request.val_csv}' has no rows; add validation samples.")
    steps_per_epoch = len(split_batches(torch.arange(n), s.batch_size))
    opt = make_optimizer(model, s)
    sched = make_scheduler(opt, s, steps_per_epoch)
    if init.mode == "resume":
        opt.load_state_dict(init.optimizer)  # type: ignore[arg-type]
        if init.scheduler is not None:
            sched.load_state_dict(init.scheduler)  # type: ignore[arg-type]
    weight = torch.tensor(s.cls_weight, dtype=torch.float32, device=device)
    maker = BatchMaker(norm, has_diff=train_data.diff is not None, device=device, channels_last=True,
                       hflip=s.hflip, vflip=s.vflip)
    eval_maker = BatchMaker(norm, has_diff=train_data.diff is not None, device=device, channels_last=True)
    # A pretrained source may be another run's deliverable: never pruned. A resume source is superseded
    # by the next save of this run, so it follows the normal retention rule.
    protected = {init.source} if init.mode == "pretrained" and init.source is not None else set()
    run = _Run(out_dir, keep, init, protected)
    common = {
        "spec": spec, "arch": arch.to_dict(), "label_names": list(LABEL_NAMES), "normalization": norm.to_dict(),
        "preprocess": {"input_mode": arch.input_mode, "max_shift_px": s.max_shift_px, "tolerance": 1},
        "image": {"lights": list(img.lights), "image_ext": img.image_ext, "height": img.height,
                  "width": img.width, "grayscale": img.grayscale},
        "seed": int(request.seed), "init_mode": init.mode,
        "init_source": str(init.source) if init.source else None,
    }

    def save(epoch: int, step: int, val_loss: float | None, *, is_best: bool = False) -> Path:
        path = out_dir / checkpoint_name(epoch, step)
        if is_best:
            run.best_loss, run.best_path = float(val_loss), path  # type: ignore[arg-type]
        save_checkpoint(path, {
            **common, "state_dict": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "epoch": epoch, "step": step, "val_loss": val_loss,
            "best_val_loss": None if math.isinf(run.best_loss) else run.best_loss,
            "best_val_file": run.best_path.name if run.best_path else None,
        })
        return path

    step = init.step
    total_steps = s.num_epochs * steps_per_epoch
    epoch = init.start_epoch
    stopped_early = False
    run.write_status("running", epoch, s.num_epochs, step)
    gen = torch.Generator()
    last_summary = ""
    for epoch in range(init.start_epoch + 1, s.num_epochs + 1):
        t_epoch = time.perf_counter()
        model.train()
        gen.manual_seed(int(request.seed) * 1_000_003 + epoch)
        order = torch.randperm(n, generator=gen)
        loss_sum = torch.zeros((), device=device)
        weight_sum = torch.zeros((), device=device)
        data_s = 0.0
        for batch_idx in split_batches(order, s.batch_size):
            t_data = time.perf_counter()
            test, golden, diff, labels = maker(train_data, batch_idx, gen)
            data_s += time.perf_counter() - t_data
            with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                logits = model(test, golden, diff)
            lsum, wsum = weighted_loss(logits, labels, kind=s.loss, weight=weight)
            opt.zero_grad(set_to_none=True)
            scaler.scale(lsum / wsum).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            step += 1
            loss_sum += lsum.detach()
            weight_sum += wsum.detach()
            if progress is not None:
                progress(step, total_steps, f"epoch {epoch}/{s.num_epochs}{last_summary}")
        train_loss = float(loss_sum / weight_sum)
        train_s = time.perf_counter() - t_epoch
        val_loss: float | None = None
        if epoch % s.validation_interval == 0 or epoch == s.num_epochs:
            val_loss = evaluate_loss(model, val_data, eval_maker, s, weight, amp_dtype)
            run.val_losses[epoch] = val_loss
        if not math.isfinite(train_loss) or (val_loss is not None and not math.isfinite(val_loss)):
            run.write_status("failed", epoch, s.num_epochs, step)
            raise ConfigError(
                f"training diverged at epoch {epoch} (train loss {train_loss}, val loss {val_loss}); "
                f"lower train.optim.lr (now {s.lr})."
            )
        saved: Path | None = None
        if val_loss is not None and val_loss < run.best_loss:
            saved = save(epoch, step, val_loss, is_best=True)
        if val_loss is not None and request.on_epoch is not None and request.on_epoch(epoch, val_loss):
            stopped_early = True
        if epoch % s.checkpoint_interval == 0 or epoch == s.num_epochs or stopped_early:
            run.latest_path = saved or save(epoch, step, val_loss)
        run.prune()
        run.log.append({"epoch": epoch, "step": step, "train_loss": train_loss, "val_loss": val_loss,
                        "lr": float(opt.param_groups[0]["lr"]), "seconds": round(time.perf_counter() - t_epoch, 4),
                        "train_seconds": round(train_s, 4), "data_seconds": round(data_s, 4),
                        "decode_seconds": round(decode_seconds, 4) if epoch == init.start_epoch + 1 else 0.0,
                        "n_pairs": n})
        run.write_log()
        run.write_status("running", epoch, s.num_epochs, step)
        last_summary = f" (epoch {epoch}: train loss {train_loss:.4f}" + (
            f", val loss {val_loss:.4f})" if val_loss is not None else ")")
        if stopped_early:
            break
    assert run.latest_path is not None and run.best_path is not None  # the last epoch always validates and saves
    run.write_status("stopped_early" if stopped_early else "complete", epoch, s.num_epochs, step)
    history = tuple(
        {"epoch": float(r["epoch"]), "train_loss": float(r["train_loss"]),
         "val_loss": float(r["val_loss"]) if r.get("val_loss") is not None else math.nan}
        for r in run.log
    )
    return TrainResult(best_val_ckpt=run.best_path, latest_ckpt=run.latest_path, epochs_run=epoch - init.start_epoch,
                       best_val_loss=float(run.best_loss), history=history, stopped_early=stopped_early)


@torch.no_grad()
def evaluate_loss(model: SiameseClassifier, data: PairTensors, maker: BatchMaker, s: TrainSettings,
                  weight: torch.Tensor, amp_dtype: torch.dtype | None, batch_size: int = 256) -> float:
    """Weighted validation loss over the whole set (same loss and class weights as training)."""
    model.eval()
    loss_sum = torch.zeros((), device=weight.device)
    weight_sum = torch.zeros((), device=weight.device)
    for idx in torch.arange(len(data)).split(batch_size):
        test, golden, diff, labels = maker(data, idx)
        with torch.autocast(weight.device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = model(test, golden, diff)
        lsum, wsum = weighted_loss(logits, labels, kind=s.loss, weight=weight)
        loss_sum += lsum
        weight_sum += wsum
    return float(loss_sum / weight_sum)
