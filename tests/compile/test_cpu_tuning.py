"""The exact rewrites for ONNX Runtime's CPU kernels: same outputs, the fast kernels' shapes."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper

from edgevision.compile.cpu_tuning import global_pool_as_op, pad_input_channels
from edgevision.compile.quantize import quantize_for_target


def _run(model_or_path, x):
    data = model_or_path.SerializeToString() if hasattr(model_or_path, "graph") else model_or_path
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


@pytest.fixture(scope="module")
def plain_cpu(quantized, tmp_path_factory):
    """The tiny classifier quantized with the cpu recipe without (and with) its rewrite."""
    out = tmp_path_factory.mktemp("tune") / "plain.onnx"
    plain = quantize_for_target(quantized["prep"], quantized["ranges"], "cpu", out, finalize=False)
    return {"plain": plain, "tuned": quantized["cpu"], "calib": quantized["calib"]}


def test_padding_the_input_channels_changes_no_output_bit(plain_cpu):
    model = onnx.load(plain_cpu["plain"])
    assert pad_input_channels(model) == ["Conv_0"]
    onnx.checker.check_model(model)
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    widened = [w for w in weights.values() if w.dtype == np.int8 and w.ndim == 4]
    assert [w.shape for w in widened] == [(8, 4, 3, 3)]
    assert not widened[0][:, 3].any()
    pad = next(n for n in model.graph.node if n.op_type == "Pad")
    assert weights[pad.input[2]].dtype == np.uint8  # filled with the input's zero point
    assert model.graph.input[0].type.tensor_type.shape.dim[1].dim_value == 3  # unchanged
    x = plain_cpu["calib"].tensors
    np.testing.assert_array_equal(_run(model, x), _run(str(plain_cpu["plain"]), x))


def test_the_cpu_recipe_applies_it(plain_cpu):
    tuned = onnx.load(plain_cpu["tuned"])
    assert [n.op_type for n in tuned.graph.node].count("Pad") == 1
    x = plain_cpu["calib"].tensors
    np.testing.assert_array_equal(_run(tuned, x), _run(str(plain_cpu["plain"]), x))
    assert pad_input_channels(tuned) == []  # already a multiple of 4: nothing to do


def test_padding_leaves_other_inputs_alone(plain_cpu):
    model = onnx.load(plain_cpu["plain"])
    quant = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    # the input also feeds another node: widening it would change that reader
    model.graph.node.append(helper.make_node("Identity", [quant.output[0]], ["spare"]))
    assert pad_input_channels(model) == []
    asym = onnx.load(plain_cpu["plain"])
    for init in asym.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.dtype == np.int8 and array.ndim == 1 and init.name.endswith("zero_point"):
            init.CopyFrom(numpy_helper.from_array(np.ones_like(array), init.name))
    assert pad_input_channels(asym) == []  # asymmetric weights: not MLAS's symmetric path


def _mean_model(axes, keepdims):
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(np.asarray(axes, np.int64), "axes"),
        numpy_helper.from_array(rng.normal(0, 0.5, (3, 8)).astype(np.float32), "fc_w"),
        numpy_helper.from_array(np.zeros(3, np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("ReduceMean", ["r", "axes"], ["m"], keepdims=keepdims, name="pool"),
        helper.make_node("Flatten", ["m"], ["f"]),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "mean",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["batch", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", 3])],
        inits,
    )
    # opset 18: ReduceMean takes its axes as an input, as torch's exporter writes it
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.mark.parametrize("axes", [[2, 3], [-1, -2]])
def test_global_mean_becomes_global_average_pool(axes):
    model = _mean_model(axes, keepdims=1)
    x = np.random.default_rng(1).normal(size=(2, 3, 16, 16)).astype(np.float32)
    want = _run(model, x)
    assert global_pool_as_op(model) == ["pool"]
    assert [n.op_type for n in model.graph.node][2] == "GlobalAveragePool"
    assert "axes" not in {i.name for i in model.graph.initializer}  # no unused initializer
    np.testing.assert_allclose(_run(model, x), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("axes", "keepdims"), [([2, 3], 0), ([1], 1), ([2], 1)])
def test_other_reductions_stay(axes, keepdims):
    model = _mean_model(axes, keepdims)
    assert global_pool_as_op(model) == []
    assert "GlobalAveragePool" not in [n.op_type for n in model.graph.node]
