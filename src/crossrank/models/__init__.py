"""Model catalogue, resolution (local directory or hub), and ONNX export."""

from crossrank.models.catalogue import CATALOGUE, ModelKind, ModelSpec, find_spec, list_supported_models
from crossrank.models.resolve import ModelFiles, resolve_model

__all__ = [
    "CATALOGUE",
    "ModelFiles",
    "ModelKind",
    "ModelSpec",
    "find_spec",
    "list_supported_models",
    "resolve_model",
]
