"""The native siamese classifier: a shared encoder, a difference module, a diff stem and a 2-class head.

Inputs are normalized float tensors (N, C, H, W) with C = lights (× 3 for colour);
in `registered_diff` mode the golden is already registered to the test and the
tolerant + untolerant difference maps arrive as `diff` (N, 2C, H, W). Output
logits index 0 = PASS, 1 = defect; the score is logit(defect) − logit(PASS).
"""
from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from deftpipe.errors import ConfigError

LABEL_NAMES: tuple[str, str] = ("PASS", "defect")
# BatchNorm running statistics follow training faster than torch's default 0.1: runs here are short
# (tens of steps), and with 0.1 the eval-mode statistics lag so far behind that validation loss and
# scores stay near chance for the first epochs (tiny demo, 6 epochs: KPI AUROC 0.56 at 0.1, 0.98 at 0.3).
BN_MOMENTUM = 0.3
INPUT_MODES: tuple[str, ...] = ("registered_diff", "raw")
DIFFERENCE_MODULES: tuple[str, ...] = ("learnable", "abs-diff")

BackboneFactory = Callable[[int], "Backbone"]
_BACKBONES: dict[str, BackboneFactory] = {}


def register_backbone(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    """Register an encoder factory `(in_channels) -> Backbone` under `name` (e.g. a bigger GPU backbone).

    Example:
        @register_backbone("resnet_wide")
        def _wide(in_channels: int) -> Backbone:
            return ResNetEncoder(in_channels, widths=(64, 128, 256))
    """
    def add(factory: BackboneFactory) -> BackboneFactory:
        if name in _BACKBONES:
            raise ValueError(f"backbone '{name}' registered twice")
        _BACKBONES[name] = factory
        return factory

    return add


def registered_backbones() -> list[str]:
    return sorted(_BACKBONES)


def create_backbone(name: str, in_channels: int) -> Backbone:
    if name not in _BACKBONES:
        near = difflib.get_close_matches(name, _BACKBONES, n=1)
        tip = f" Did you mean '{near[0]}'?" if near else ""
        raise ConfigError(f"model.backbone.type: unknown backbone '{name}'; known: {registered_backbones()}.{tip}")
    return _BACKBONES[name](in_channels)


class Backbone(nn.Module):
    """An encoder with a known number of output channels (feature map at 1/8 resolution)."""

    out_channels: int


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.short: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.short = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.short(x))


class ResNetEncoder(Backbone):
    """Stem (stride 2) + three basic blocks (strides 1, 2, 2): 1/8 resolution, `widths[-1]` channels."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int]) -> None:
        super().__init__()
        w1, w2, w3 = widths
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w1, 3, 2, 1, bias=False), nn.BatchNorm2d(w1),
                                  nn.ReLU(inplace=True))
        self.layers = nn.Sequential(_BasicBlock(w1, w1, 1), _BasicBlock(w1, w2, 2), _BasicBlock(w2, w3, 2))
        self.out_channels = w3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.stem(x))


@register_backbone("resnet_tiny")
def _resnet_tiny(in_channels: int) -> Backbone:
    return ResNetEncoder(in_channels, (16, 32, 64))


@register_backbone("resnet_small")
def _resnet_small(in_channels: int) -> Backbone:
    return ResNetEncoder(in_channels, (32, 64, 128))


@dataclass(frozen=True)
class ArchInfo:
    """Everything that fixes the weight shapes; stored in every checkpoint and compared on load."""

    backbone: str
    difference_module: str
    input_mode: str
    in_channels: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchInfo:
        return cls(str(data["backbone"]), str(data["difference_module"]), str(data["input_mode"]),
                   int(data["in_channels"]))

    def mismatches(self, other: ArchInfo) -> list[str]:
        """Human-readable 'field: mine vs theirs' for every differing field."""
        a, b = self.to_dict(), other.to_dict()
        return [f"{k}: {a[k]!r} vs {b[k]!r}" for k in a if a[k] != b[k]]


class SiameseClassifier(nn.Module):
    """f_t = E(test), f_g = E(golden); d = D(f_t, f_g) [+ S(diff)]; pooled (avg ‖ max) → embedding → 2 logits."""

    def __init__(self, arch: ArchInfo) -> None:
        super().__init__()
        if arch.input_mode not in INPUT_MODES:
            raise ConfigError(f"model.classify.input_mode: '{arch.input_mode}' is not one of {list(INPUT_MODES)}.")
        if arch.difference_module not in DIFFERENCE_MODULES:
            raise ConfigError(
                f"model.classify.difference_module: '{arch.difference_module}' is not one of {list(DIFFERENCE_MODULES)}."
            )
        self.arch = arch
        self.encoder = create_backbone(arch.backbone, arch.in_channels)
        feat = self.encoder.out_channels
        self.fuse: nn.Module | None = None
        if arch.difference_module == "learnable":
            self.fuse = nn.Sequential(nn.Conv2d(3 * feat, feat, 1, bias=False), nn.BatchNorm2d(feat),
                                      nn.ReLU(inplace=True))
        self.diff_stem: nn.Module | None = None
        diff_feat = 0
        if arch.input_mode == "registered_diff":
            # Stride-8 stem over the tolerant + untolerant maps; max pooling below keeps 1–3 px blobs visible.
            diff_feat = 32
            c = 2 * arch.in_channels
            self.diff_stem = nn.Sequential(
                nn.Conv2d(c, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
                nn.Conv2d(16, 24, 3, 2, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU(inplace=True),
                nn.Conv2d(24, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
                nn.Conv2d(32, diff_feat, 3, 2, 1, bias=False), nn.BatchNorm2d(diff_feat), nn.ReLU(inplace=True),
            )
        self.embed_dim = 2 * (feat + diff_feat)
        self.head = nn.Linear(self.embed_dim, len(LABEL_NAMES))
        self.frozen_backbone = False
        for module in self.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = BN_MOMENTUM

    def freeze_backbone(self, frozen: bool = True) -> None:
        """Freeze the encoder: no gradients and BatchNorm statistics kept (eval mode even while training)."""
        self.frozen_backbone = frozen
        for p in self.encoder.parameters():
            p.requires_grad_(not frozen)
        if frozen:
            self.encoder.eval()

    def train(self, mode: bool = True) -> SiameseClassifier:
        super().train(mode)
        if self.frozen_backbone:
            self.encoder.eval()
        return self

    def embed(self, test: torch.Tensor, golden: torch.Tensor, diff: torch.Tensor | None = None) -> torch.Tensor:
        """The pooled pair feature (N, embed_dim) the head classifies."""
        both = self.encoder(torch.cat([test, golden], dim=0))
        f_t, f_g = both.chunk(2, dim=0)
        d = (f_t - f_g).abs()
        if self.fuse is not None:
            d = self.fuse(torch.cat([f_t, f_g, d], dim=1))
        if self.diff_stem is not None:
            if diff is None:
                raise ValueError("registered_diff model needs the difference channels")
            s = self.diff_stem(diff)
            if s.shape[-2:] != d.shape[-2:]:
                s = nn.functional.adaptive_max_pool2d(s, d.shape[-2:])
            d = torch.cat([d, s], dim=1)
        return torch.cat([d.mean(dim=(2, 3)), d.amax(dim=(2, 3))], dim=1)

    def forward(self, test: torch.Tensor, golden: torch.Tensor, diff: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.embed(test, golden, diff))


def scores_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """logit(defect) − logit(PASS): higher = more likely defect, no ties piling up at 0 or 1."""
    return logits[:, 1] - logits[:, 0]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
