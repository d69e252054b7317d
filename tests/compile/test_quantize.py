"""Quantization targets, and the TensorRT Q/DQ checker proven on good and broken models."""

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from edgevision.backends.ort import OrtRunner
from edgevision.compile.quantize import TARGETS, quantize_for_target
from edgevision.compile.trt_check import check_tensorrt_qdq
from edgevision.errors import BuildError, RegistryError


def _qdq(model, op_type, weight: bool):
    """The first activation Q/DQ, or the first weight DQ (int8 data, not an int32 bias)."""
    inits = {i.name: i.data_type for i in model.graph.initializer}
    return next(
        n
        for n in model.graph.node
        if n.op_type == op_type
        and (n.input[0] in inits) == weight
        and inits.get(n.input[0]) != onnx.TensorProto.INT32
    )


def _set_init(model, name, array):
    for i, init in enumerate(model.graph.initializer):
        if init.name == name:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(array, name))
            return
    raise KeyError(name)


def _init(model, name):
    return next(numpy_helper.to_array(i) for i in model.graph.initializer if i.name == name)


def test_cpu_target_is_u8_activations_s8_per_channel_weights(quantized):
    model = onnx.load(quantized["cpu"])
    act = _qdq(model, "QuantizeLinear", weight=False)
    assert _init(model, act.input[2]).dtype == np.uint8
    w = _qdq(model, "DequantizeLinear", weight=True)
    assert _init(model, w.input[0]).dtype == np.int8
    assert _init(model, w.input[1]).shape == (8,)  # per output channel of the 8-filter conv
    assert not np.any(_init(model, w.input[2]))  # symmetric weights
    assert TARGETS.get("cpu").record()["activations"] == "uint8"


def test_both_artifacts_run_and_agree_with_fp32(quantized):
    x = quantized["calib"].tensors
    with OrtRunner(quantized["fp32"], threads=1) as ref:
        want = ref.infer(x)["logits"]
    for target in TARGETS.names():
        with OrtRunner(quantized[target], threads=1) as runner:
            got = runner.infer(x)["logits"]
        assert got.shape == want.shape
        assert np.abs(got - want).max() < 0.1 * np.abs(want).max(), target


def test_tensorrt_artifact_passes_and_cpu_artifact_fails(quantized):
    assert check_tensorrt_qdq(quantized["tensorrt"]) == []
    problems = check_tensorrt_qdq(quantized["cpu"])
    assert any("zero point is uint8" in p for p in problems)
    assert any("bias is quantized" in p for p in problems)
    assert check_tensorrt_qdq(onnx.load(quantized["fp32"])) == [
        "the model has no QuantizeLinear/DequantizeLinear nodes (not quantized)"
    ]


def _broken(quantized, how):
    model = onnx.load(quantized["tensorrt"])
    how(model)
    return check_tensorrt_qdq(model)


def _zero_scale(m):
    n = _qdq(m, "QuantizeLinear", weight=False)
    _set_init(m, n.input[1], np.array(0.0, np.float32))


def _nonzero_point(m):
    n = _qdq(m, "QuantizeLinear", weight=False)
    _set_init(m, n.input[2], np.array(3, np.int8))


def _per_tensor_weight(m):
    n = _qdq(m, "DequantizeLinear", weight=True)
    _set_init(m, n.input[1], np.array(0.01, np.float32))
    _set_init(m, n.input[2], np.array(0, np.int8))


def _wrong_axis(m):
    n = _qdq(m, "DequantizeLinear", weight=True)
    del n.attribute[:]
    n.attribute.append(helper.make_attribute("axis", 1))


def _per_axis_activation(m):
    n = _qdq(m, "DequantizeLinear", weight=False)
    _set_init(m, n.input[1], np.full(3, 0.02, np.float32))
    _set_init(m, n.input[2], np.zeros(3, np.int8))


def _old_opset(m):
    next(o for o in m.opset_import if o.domain in ("", "ai.onnx")).version = 12


def _contrib_domain(m):
    _qdq(m, "QuantizeLinear", weight=False).domain = "com.microsoft"


def _contrib_import(m):
    m.opset_import.append(helper.make_opsetid("com.microsoft.nchwc", 1))


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        (_zero_scale, "scale must be finite and > 0"),
        (_nonzero_point, "zero point(s) not 0"),
        (_per_tensor_weight, "per-tensor weight scale; needs per-channel on axis 0"),
        (_wrong_axis, "per-channel on axis 1 with 8 scales; needs axis 0"),
        (_per_axis_activation, "activation has a per-axis scale"),
        (_old_opset, "opset 12 < 13"),
        (_contrib_domain, "domain 'com.microsoft'"),
        (_contrib_import, "non-standard opset domain(s) ['com.microsoft.nchwc']"),
    ],
)
def test_checker_catches_each_broken_rule(quantized, how, expected):
    problems = _broken(quantized, how)
    assert any(expected in p for p in problems), problems


def test_checker_catches_quantized_bias_and_raises_with_all(quantized, tmp_path):
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    ranges = quantized["ranges"]
    out = tmp_path / "bias.onnx"
    quantize_static(
        str(quantized["prep"]),
        str(out),
        None,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=ranges.ort_method,
        extra_options={"ActivationSymmetric": True},  # bias quantized: TensorRT wants float
        calibration_cache_path=str(ranges.cache_path),
    )
    problems = check_tensorrt_qdq(out)
    # ORT's raw output also declares contrib domains no node uses (our artifacts strip them).
    assert len(problems) == 3 and "non-standard opset domain(s)" in problems[0]
    assert all("bias is quantized" in p for p in problems[1:])
    with pytest.raises(BuildError, match=r"breaks 3 TensorRT Q/DQ rule\(s\)"):
        check_tensorrt_qdq(out, raise_on_error=True)


def test_artifacts_import_only_the_domains_their_nodes_use(quantized):
    for target in ("cpu", "tensorrt"):
        model = onnx.load(str(quantized[target]))
        assert {o.domain for o in model.opset_import} == {n.domain for n in model.graph.node}


def test_strip_unused_opsets(quantized):
    from edgevision.compile.trt_check import strip_unused_opsets

    model = onnx.load(str(quantized["tensorrt"]))
    for domain in ("com.microsoft.nchwc", "org.pytorch.aten", "ai.onnx.training"):
        model.opset_import.append(helper.make_opsetid(domain, 1))
    assert strip_unused_opsets(model) and not strip_unused_opsets(model)
    assert [o.domain for o in model.opset_import] == [""]


def test_nodes_to_exclude_stay_float(quantized, tmp_path):
    model = onnx.load(quantized["prep"])
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    out = quantize_for_target(
        quantized["prep"], quantized["ranges"], "cpu", tmp_path / "x.onnx", [conv.name]
    )
    q = onnx.load(out)
    qconv = next(n for n in q.graph.node if n.name == conv.name)
    weight = next(i for i in q.graph.initializer if i.name == qconv.input[1])
    assert weight.data_type == onnx.TensorProto.FLOAT  # weights not quantized
    gemm = next(n for n in q.graph.node if n.op_type == "Gemm")
    producers = {o: n.op_type for n in q.graph.node for o in n.output}
    assert producers[gemm.input[1]] == "DequantizeLinear"  # the rest still is


def test_a_float_node_without_weights_reads_its_producers_int8_output(quantized, tmp_path):
    # GlobalAveragePool in float computes in float from the Conv's dequantized INT8 output;
    # the Conv stays fully INT8 (a Q on its output) instead of being made to output float
    model = onnx.load(quantized["prep"])
    pool = next(n for n in model.graph.node if n.op_type == "GlobalAveragePool")
    out = quantize_for_target(
        quantized["prep"], quantized["ranges"], "cpu", tmp_path / "x.onnx", [pool.name]
    )
    q = onnx.load(out)
    producers = {o: n for n in q.graph.node for o in n.output}
    qpool = next(n for n in q.graph.node if n.name == pool.name)
    dq = producers[qpool.input[0]]
    assert dq.op_type == "DequantizeLinear"
    assert producers[dq.input[0]].op_type == "QuantizeLinear"
    assert not any(
        n.op_type == "QuantizeLinear" and n.input[0] == qpool.output[0] for n in q.graph.node
    )  # its own output stays float
    x = quantized["calib"].tensors
    with OrtRunner(quantized["fp32"], threads=1) as ref, OrtRunner(out, threads=1) as runner:
        want, got = ref.infer(x)["logits"], runner.infer(x)["logits"]
    assert np.abs(got - want).max() < 0.1 * np.abs(want).max()


def test_unknown_nodes_to_exclude(quantized, tmp_path):
    with pytest.raises(BuildError, match=r"(?s)\['Conv_9'\] are not nodes.*Conv_0"):
        quantize_for_target(
            quantized["prep"], quantized["ranges"], "cpu", tmp_path / "x.onnx", ["Conv_9"]
        )


def test_unknown_target(quantized, tmp_path):
    with pytest.raises(RegistryError, match="cpu, tensorrt"):
        quantize_for_target(quantized["prep"], quantized["ranges"], "npu", tmp_path / "x.onnx")


def test_unshare_biases_copies_each_shared_bias_but_the_last_reader(quantized):
    from edgevision.compile.quantize import unshare_biases

    model = onnx.load(quantized["prep"])
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    assert unshare_biases(model) == []  # nothing shared: nothing renamed
    twin = onnx.NodeProto()
    twin.CopyFrom(conv)
    twin.name, twin.output[0] = "twin", "twin_out"  # a second conv reading the same bias
    model.graph.node.insert(1, twin)
    bias = conv.input[2]
    assert unshare_biases(model) == [conv.name]
    assert conv.input[2] == f"{bias}_bias_of_{conv.name}" and twin.input[2] == bias
    np.testing.assert_array_equal(_init(model, conv.input[2]), _init(model, bias))
    assert gemm.input[2] == "fc_b" and unshare_biases(model) == []
