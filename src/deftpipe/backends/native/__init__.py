"""The native PyTorch backend (CPU or CUDA): a small siamese classifier trained and scored in-process.

Registered as "native". torch is imported when a method runs, not at import time,
so listing backends stays fast.

Example:
    backend = create_backend("native", keep_checkpoints="all")
    result = backend.train(TrainRequest(spec=spec, train_csv=..., val_csv=..., images_dir=ws.images_dir,
                                        workspace_root=ws.root, out_dir=run_dir / "baseline/train"))
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from deftpipe.backends.base import EmbedRequest, InferRequest, InferResult, TrainRequest, TrainResult
from deftpipe.backends.registry import KEEP_CHECKPOINTS, check_keep_checkpoints, register_backend

if TYPE_CHECKING:
    import numpy as np


@register_backend("native")
class NativeBackend:
    """`ModelBackend` in plain torch.

    Args:
        keep_checkpoints: "best_latest" (default) keeps only the best-validation and the latest
            checkpoint files of a training run; "all" keeps every file.
    """

    name = "native"

    def __init__(self, *, keep_checkpoints: str = "best_latest") -> None:
        self.keep_checkpoints = check_keep_checkpoints(keep_checkpoints, where="keep_checkpoints")

    def train(self, request: TrainRequest) -> TrainResult:
        from deftpipe.backends.native.train import train_model

        return train_model(request, keep_checkpoints=self.keep_checkpoints)

    def infer(self, request: InferRequest) -> InferResult:
        from deftpipe.backends.native.infer import infer

        return infer(request)

    def embed(self, request: EmbedRequest) -> np.ndarray:
        from deftpipe.backends.native.infer import embed

        return embed(request)


__all__ = ["KEEP_CHECKPOINTS", "NativeBackend"]
