"""Runtimes see token-id arrays only and return the model's first output."""

from crossrank.runtime.onnx import OnnxRuntime

__all__ = ["OnnxRuntime"]
