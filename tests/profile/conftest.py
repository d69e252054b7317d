"""Bundles for the profiler's tests: tiny models made in tmp_path, one of them quantized."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgevision.bundle import write_bundle
from edgevision.profile.report import Measurement, ProfileReport
from edgevision.spec import ModelSpec
from tests.helpers import tiny_bundle, tiny_classifier_onnx

SIZE = (32, 48)


def quantize_qdq(fp32: Path, out: Path, size: tuple[int, int] = SIZE) -> Path:
    """A real QDQ INT8 model (ONNX Runtime static quantization on 4 random inputs)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.feeds = iter(
                [{"input": rng.normal(size=(1, 3, *size)).astype(np.float32)} for _ in range(4)]
            )

        def get_next(self):
            return next(self.feeds, None)

    quantize_static(str(fp32), str(out), Reader(), quant_format=QuantFormat.QDQ)
    return out


@pytest.fixture
def bundle(tmp_path) -> Path:
    """fp32 only."""
    return tiny_bundle(tmp_path)


@pytest.fixture
def full_bundle(tmp_path) -> Path:
    """fp32 (any), int8-cpu (a real QDQ model, cpu) and int8-trt (tensorrt)."""
    fp32 = tiny_classifier_onnx(tmp_path / "fp32.onnx", size=SIZE)
    int8 = quantize_qdq(fp32, tmp_path / "int8.onnx")
    return write_bundle(
        tmp_path / "full",
        {"model.fp32.onnx": fp32, "model.int8.cpu.onnx": int8, "model.int8.trt.onnx": int8},
        ModelSpec(labels=("a", "b", "c"), input_size=SIZE),
        {
            "fp32": {"file": "model.fp32.onnx", "precision": "fp32", "target": "any"},
            "int8-cpu": {"file": "model.int8.cpu.onnx", "precision": "int8", "target": "cpu"},
            "int8-trt": {"file": "model.int8.trt.onnx", "precision": "int8", "target": "tensorrt"},
        },
    )


@pytest.fixture
def no_tensorrt(monkeypatch):
    """Make TensorRT unavailable, as on a CPU-only CI runner, even on a GPU machine."""
    import edgevision.backends.select as select

    real = select.is_backend_available
    monkeypatch.setattr(
        select, "is_backend_available", lambda name: name != "tensorrt" and real(name)
    )
    import edgevision.profile.plan as plan

    monkeypatch.setattr(plan, "is_backend_available", select.is_backend_available)


def fake_report(latencies: dict[str, list[float]], deployed: str | None = None, **kw):
    """A report with the given samples (ms) per key, as if measured at batch 1."""
    ms = [
        Measurement(key=k, kind="model", artifact=k.split("@")[0], samples_ms=v)
        for k, v in latencies.items()
    ]
    return ProfileReport(
        mode=kw.get("mode", "models"),
        bundle={"path": "b", "manifest_sha256": kw.get("sha", "0" * 64)},
        machine=kw.get("machine", {"cpu_model": "test cpu", "usable_cores": 2}),
        settings={"threads": 1},
        measurements=ms,
        deployed=deployed,
    )
