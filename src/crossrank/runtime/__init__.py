"""Runtimes see token-id arrays only and return the model's first output.

Each runtime lives in its own module (``onnx``, ``openvino``, ``torch``) and is imported
only when used, so that a process loads one inference library, not all of them.
"""
