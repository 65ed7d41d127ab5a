"""The siamese model: backbone registry, input modes, freezing, embedding shape."""
from __future__ import annotations

import pytest
import torch

from deftpipe.backends.native.model import (
    ArchInfo,
    ResNetEncoder,
    SiameseClassifier,
    count_parameters,
    create_backbone,
    register_backbone,
    registered_backbones,
    scores_from_logits,
)
from deftpipe.errors import ConfigError


def test_builtin_backbones_have_the_advertised_size() -> None:
    tiny = count_parameters(SiameseClassifier(ArchInfo("resnet_tiny", "learnable", "raw", 2)))
    small = count_parameters(SiameseClassifier(ArchInfo("resnet_small", "learnable", "raw", 2)))
    assert 60_000 < tiny < 150_000 and 200_000 < small < 600_000


def test_a_new_backbone_can_be_registered() -> None:
    if "test_wide" not in registered_backbones():
        register_backbone("test_wide")(lambda c: ResNetEncoder(c, (8, 8, 24)))
    model = SiameseClassifier(ArchInfo("test_wide", "abs-diff", "raw", 1))
    x = torch.zeros(2, 1, 16, 16)
    assert model(x, x).shape == (2, 2)
    with pytest.raises(ConfigError, match="Did you mean 'resnet_tiny'"):
        create_backbone("resnet_tiyn", 2)


@pytest.mark.parametrize("mode", ["registered_diff", "raw"])
def test_forward_and_embed_shapes(mode: str) -> None:
    model = SiameseClassifier(ArchInfo("resnet_tiny", "learnable", mode, 2)).eval()
    x = torch.randn(3, 2, 32, 32)
    diff = torch.rand(3, 4, 32, 32) if mode == "registered_diff" else None
    emb = model.embed(x, x, diff)
    assert emb.shape == (3, model.embed_dim)
    logits = model(x, x, diff)
    assert torch.allclose(scores_from_logits(logits), logits[:, 1] - logits[:, 0])


def test_frozen_backbone_gets_no_gradient_and_keeps_bn_stats() -> None:
    model = SiameseClassifier(ArchInfo("resnet_tiny", "learnable", "raw", 2))
    model.freeze_backbone(True)
    model.train()
    assert not model.encoder.training and model.head.training
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    x = torch.randn(4, 2, 32, 32)
    model(x, torch.randn_like(x)).sum().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.encoder.state_dict().items())
