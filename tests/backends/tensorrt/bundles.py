"""Small bundles with TensorRT artifacts, made in temporary folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgevision.bundle import write_bundle
from edgevision.spec import ModelSpec
from tests.helpers import tiny_classifier_onnx

SPEC = ModelSpec(labels=("a", "b", "c"), input_size=(32, 48))
ARTIFACTS = {
    "fp32": {"file": "model.fp32.onnx", "precision": "fp32", "target": "any"},
    "int8-trt": {"file": "model.int8.trt.onnx", "precision": "int8", "target": "tensorrt"},
}


def qdq_model(src: Path, dst: Path) -> Path:
    """Symmetric INT8 Q/DQ (zero points 0, per-channel weights) with ONNX Runtime's quantizer:
    the form TensorRT's explicit quantization reads."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from edgevision.preprocess import preprocess

    class Reader(CalibrationDataReader):
        # Calibrated on preprocessed random frames: the tests' parity images look alike.
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            frames = [rng.integers(0, 256, (40, 60, 3), dtype=np.uint8) for _ in range(16)]
            self.feeds = iter({"input": preprocess(f, SPEC)} for f in frames)

        def get_next(self):
            return next(self.feeds, None)

    quantize_static(
        str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )  # fmt: skip
    return dst


def make_trt_bundle(root: Path, qdq: bool = False, extra: dict | None = None) -> Path:
    """fp32 + int8-trt artifacts. Without ``qdq`` the int8-trt model is a copy of the fp32 one
    (enough for the fake parser); with it, a real symmetric Q/DQ model."""
    fp32 = tiny_classifier_onnx(root / "fp32.onnx", num_classes=3)
    int8 = qdq_model(fp32, root / "int8.onnx") if qdq else fp32
    files = {"model.fp32.onnx": fp32, "model.int8.trt.onnx": int8, **(extra or {})}
    artifacts = {k: dict(v) for k, v in ARTIFACTS.items()}
    return write_bundle(root / "bundle", files, SPEC, artifacts)
