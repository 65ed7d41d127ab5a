"""Model backends: the `ModelBackend` protocol (train / infer / embed) and its registry."""
from deftpipe.backends.base import (
    EmbedRequest,
    InferRequest,
    InferResult,
    ModelBackend,
    TrainRequest,
    TrainResult,
)
from deftpipe.backends.registry import (
    KEEP_CHECKPOINTS,
    create_backend,
    create_training_backend,
    register_backend,
    registered_backends,
)

__all__ = [
    "KEEP_CHECKPOINTS",
    "EmbedRequest",
    "InferRequest",
    "InferResult",
    "ModelBackend",
    "TrainRequest",
    "TrainResult",
    "create_backend",
    "create_training_backend",
    "register_backend",
    "registered_backends",
]
