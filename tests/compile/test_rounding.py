"""`weight_statistics`: E[x xᵀ] and E[x] of each layer's input, against a direct im2col."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgevision.compile.rounding import weight_statistics


def _one_layer(tmp_path, node_kwargs, weight_shape, channels=4, size=(9, 11)):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=weight_shape).astype(np.float32), "w")
    if node_kwargs.get("op") == "Gemm":
        x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", weight_shape[1]])
        node = helper.make_node("Gemm", ["x", "w"], ["y"], name="layer", transB=1)
    else:
        x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", channels, *size])
        node = helper.make_node("Conv", ["x", "w"], ["y"], name="layer", **node_kwargs)
    y_info = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph([node], "g", [x_info], [y_info], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    return path


def _reference(x, kernel, pads=(0, 0, 0, 0), strides=(1, 1), dilations=(1, 1), group=1):
    """Every patch as its own vector, one output position at a time (K ordered c, ky, kx)."""
    x = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    n, c, h, w = x.shape
    kh, kw = kernel
    ho = (h - dilations[0] * (kh - 1) - 1) // strides[0] + 1
    wo = (w - dilations[1] * (kw - 1) - 1) // strides[1] + 1
    per = c // group
    vectors = [[] for _ in range(group)]
    for i in range(n):
        for oy in range(ho):
            for ox in range(wo):
                ys = oy * strides[0] + dilations[0] * np.arange(kh)
                xs = ox * strides[1] + dilations[1] * np.arange(kw)
                patch = x[i][:, ys][:, :, xs]  # (c, kh, kw)
                for g in range(group):
                    vectors[g].append(patch[g * per : (g + 1) * per].reshape(-1))
    v = np.stack([np.stack(vs) for vs in vectors])  # (group, rows, K)
    return np.einsum("grk,grl->gkl", v, v) / v.shape[1], v.mean(1)


@pytest.mark.parametrize(
    "kwargs, weight_shape",
    [
        ({"pads": [1, 1, 1, 1], "strides": [2, 2]}, (6, 4, 3, 3)),  # a strided 3x3
        ({"pads": [2, 1, 2, 1], "group": 4, "dilations": [2, 1]}, (4, 1, 3, 3)),  # depthwise
        ({}, (5, 4, 1, 1)),  # pointwise: a view, no im2col copy
        ({"group": 4, "strides": [1, 2]}, (4, 1, 1, 1)),  # depthwise 1x1, strided
    ],
)
def test_convolution_statistics_equal_a_direct_im2col(tmp_path, kwargs, weight_shape):
    path = _one_layer(tmp_path, kwargs, weight_shape)
    x = np.random.default_rng(1).normal(1.0, 2.0, (5, 4, 9, 11)).astype(np.float32)
    stats = weight_statistics(path, x, threads=1, batch_size=2)  # batches of 2, 2 and 1
    h, mean = _reference(
        x,
        weight_shape[2:],
        tuple(kwargs.get("pads", (0, 0, 0, 0))),
        tuple(kwargs.get("strides", (1, 1))),
        tuple(kwargs.get("dilations", (1, 1))),
        kwargs.get("group", 1),
    )
    np.testing.assert_allclose(stats["layer|H"], h, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(stats["layer|mean"], mean, rtol=1e-6, atol=1e-6)


def test_gemm_statistics(tmp_path):
    path = _one_layer(tmp_path, {"op": "Gemm"}, (3, 7))
    x = np.random.default_rng(2).normal(size=(10, 7)).astype(np.float32)
    stats = weight_statistics(path, x, threads=1, batch_size=4)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(stats["layer|H"], (x64.T @ x64 / 10)[None], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["layer|mean"], x64.mean(0)[None], rtol=1e-6, atol=1e-7)


def test_a_grouped_convolution_is_left_to_plain_rounding(tmp_path):
    path = _one_layer(tmp_path, {"group": 2}, (6, 2, 1, 1))
    x = np.random.default_rng(3).normal(size=(2, 4, 9, 11)).astype(np.float32)
    assert weight_statistics(path, x, threads=1) == {}
