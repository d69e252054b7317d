"""Models a team brings, in the two shapes that broke the build (issue 20): a legacy export
whose shapes are computed in the graph (EfficientViT's window padding: ORT's symbolic shape
inference gives up), and an initializer shared by a convolution's bias and a BatchNorm
(LeViT: the quantizer put Q/DQ on the bias, which TensorRT refuses). Small stand-ins for
each, built in a second, quantized for both targets."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from edgevision.backends.ort import OrtRunner
from edgevision.compile.calibrate import calibrate
from edgevision.compile.calibration import CalibrationSet
from edgevision.compile.quantize import TARGETS, prepare_for_quantization, quantize_for_target
from edgevision.compile.trt_check import check_tensorrt_qdq
from edgevision.errors import BuildError
from edgevision.spec import ModelSpec
from tests.helpers import save_classifier

SPEC = ModelSpec(labels=("a", "b", "c"), input_size=(10, 10))


def _window_model(path: Path) -> Path:
    """Conv, then EfficientViT-style window padding computed from the input's shape, exported
    by the legacy exporter with a dynamic batch (as `torch.onnx.export(dynamo=False)` users
    do)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Windowed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.head = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.conv(x)
            b, c, h, w = x.shape
            p = (4 - h % 4) % 4
            y = F.pad(x, (0, p, 0, p)).reshape(b, c, (h + p) // 4, 4, (w + p) // 4, 4)
            y = y.transpose(3, 4).reshape(b, c, h + p, w + p)[:, :, :h, :w]
            return self.head((x + y).mean((2, 3)))

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Windowed().eval(),
            (torch.zeros(2, 3, *SPEC.input_size),),
            str(path),
            dynamo=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
        )
    return path


def _shared_bias_model(path: Path) -> Path:
    """Conv → Relu → BatchNorm → Conv → pool → Gemm, where the first conv's bias and the
    BatchNorm's scale are one initializer (``shared``), as LeViT's export has them."""
    rng = np.random.default_rng(0)

    def init(name: str, *shape: int, scale: float = 0.5) -> onnx.TensorProto:
        return numpy_helper.from_array(rng.normal(0, scale, shape).astype(np.float32), name)

    inits = [
        init("w1", 4, 3, 3, 3),
        numpy_helper.from_array(np.full(4, 0.5, np.float32), "shared"),
        init("bn_b", 4, scale=0.1),
        numpy_helper.from_array(np.zeros(4, np.float32), "bn_mean"),
        numpy_helper.from_array(np.ones(4, np.float32), "bn_var"),
        init("w2", 4, 4, 3, 3),
        init("b2", 4, scale=0.1),
        init("fc_w", 3, 4),
        numpy_helper.from_array(np.zeros(3, np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "shared"], ["c1"], "conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], "relu1"),
        helper.make_node(
            "BatchNormalization", ["r1", "shared", "bn_b", "bn_mean", "bn_var"], ["n"], "bn"
        ),
        helper.make_node("Conv", ["n", "w2", "b2"], ["c2"], "conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], "relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], "pool"),
        helper.make_node("Flatten", ["g"], ["f"], "flatten"),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], "fc", transB=1),
    ]
    return save_classifier(path, "shared_bias", nodes, inits, SPEC.input_size, 3)


def _quantize_both(fp32: Path, work: Path) -> dict[str, Path]:
    prep = prepare_for_quantization(fp32, work / "prep.onnx")
    rng = np.random.default_rng(1)
    tensors = rng.normal(size=(16, *SPEC.input_shape(1)[1:])).astype(np.float32)
    calib = CalibrationSet(work, "random normal", [], tensors)
    ranges = calibrate(prep, calib, SPEC, cache_dir=work / "cache", threads=1)
    out = {"prep": prep}
    for target in TARGETS.names():
        out[target] = quantize_for_target(prep, ranges, target, work / f"{target}.onnx")
    return out


def _logits(model: Path, batch: int) -> np.ndarray:
    x = np.random.default_rng(batch).normal(size=(batch, *SPEC.input_shape(1)[1:]))
    with OrtRunner(model, threads=1) as runner:
        return runner.infer(x.astype(np.float32))["logits"]


def test_legacy_dynamic_batch_export_with_computed_shapes_builds(tmp_path, monkeypatch):
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32 = _window_model(tmp_path / "windowed.onnx")
    ort_cwd, cwd = tmp_path / "ort", tmp_path / "cwd"
    ort_cwd.mkdir(), cwd.mkdir()
    monkeypatch.chdir(ort_cwd)
    with pytest.raises(Exception, match="Incomplete symbolic shape inference"):
        quant_pre_process(str(fp32), str(tmp_path / "ort.onnx"))  # what failed the build
    assert (ort_cwd / "sym_shape_infer_temp.onnx").is_file()  # ...leaving its model behind
    monkeypatch.chdir(cwd)
    models = _quantize_both(fp32, tmp_path)
    assert list(cwd.iterdir()) == []  # the build removes what ORT's failed inference saved
    for batch in (1, 3):  # the batch stays dynamic and the graph computes what it did
        np.testing.assert_allclose(_logits(models["prep"], batch), _logits(fp32, batch), atol=1e-5)
    assert check_tensorrt_qdq(models["tensorrt"]) == []
    quantized = onnx.load(str(models["cpu"]))
    conv = next(n for n in quantized.graph.node if n.op_type == "Conv")
    producers = {o: n.op_type for n in quantized.graph.node for o in n.output}
    assert producers[conv.input[1]] == "DequantizeLinear"  # quantized, not skipped


def test_a_model_neither_inference_can_read_names_what_to_change(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an ONNX model")
    with pytest.raises(BuildError) as info:
        prepare_for_quantization(bad, tmp_path / "prep.onnx")
    assert "without symbolic shape inference" in str(info.value)
    assert "fixed batch size" in info.value.fix and "opset 17" not in info.value.fix


def test_bias_shared_with_a_batchnorm_is_unshared_and_stays_float_for_tensorrt(tmp_path):
    fp32 = _shared_bias_model(tmp_path / "shared.onnx")
    models = _quantize_both(fp32, tmp_path)
    prep = onnx.load(str(models["prep"]))
    conv1 = next(n for n in prep.graph.node if n.name == "conv1")
    bn = next(n for n in prep.graph.node if n.op_type == "BatchNormalization")
    assert conv1.input[2] != bn.input[1] == "shared"
    np.testing.assert_allclose(_logits(models["prep"], 2), _logits(fp32, 2), atol=1e-5)
    assert check_tensorrt_qdq(models["tensorrt"]) == []
    trt = onnx.load(str(models["tensorrt"]))
    floats = {i.name for i in trt.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    assert next(n for n in trt.graph.node if n.name == "conv1").input[2] in floats
    for target in TARGETS.names():  # both still compute the model
        got, want = _logits(models[target], 4), _logits(fp32, 4)
        assert np.abs(got - want).max() < 0.1 * np.abs(want).max() + 0.05, target
