"""ONNX Runtime backend."""

from edgevision.backends.ort.runner import OrtRunner

__all__ = ["OrtRunner"]
