"""Model backends: the `ModelBackend` protocol (train / infer / embed) and its registry."""
from deftpipe.backends.base import (
    EmbedRequest,
    InferRequest,
    InferResult,
    ModelBackend,
    TrainRequest,
    TrainResult,
)
from deftpipe.backends.registry import create_backend, register_backend, registered_backends

__all__ = [
    "EmbedRequest",
    "InferRequest",
    "InferResult",
    "ModelBackend",
    "TrainRequest",
    "TrainResult",
    "create_backend",
    "register_backend",
    "registered_backends",
]
