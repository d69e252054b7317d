"""Is a Q/DQ model what TensorRT's explicit quantization accepts?

TensorRT (the calibrator API is gone in 11) reads INT8 from Q/DQ nodes, with rules ONNX Runtime's
CPU kernels do not need: symmetric INT8 (int8 zero points, all 0), positive scales, weights
per-channel on the output-channel axis, per-tensor activation scales, bias left in float,
standard-domain Q/DQ, opset >= 13. `check_tensorrt_qdq` verifies every one of them.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevision.compile.graph import GraphIndex, int_attr
from edgevision.errors import BuildError

if TYPE_CHECKING:
    import onnx

MIN_OPSET = 13
_QDQ = ("QuantizeLinear", "DequantizeLinear")


def _weight_axis(node: Any, weight: np.ndarray) -> int | None:
    """The output-channel axis of ``weight`` as input 1 of ``node`` (None: not a weight op)."""
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        return 1
    if node.op_type == "Gemm":
        trans_b = int_attr(node, "transB", 0)
        return 0 if trans_b else 1
    if node.op_type == "MatMul":
        return weight.ndim - 1
    return None


def _weight_readers(graph: GraphIndex, node: Any) -> list[tuple[Any, int]]:
    """Ops that read ``node``'s output (through the DQ when ``node`` is a weight's Q)."""
    if node.op_type == "QuantizeLinear":
        return graph.dequantized_readers(node)
    return graph.consumers.get(node.output[0], [])


def check_tensorrt_qdq(
    model: onnx.ModelProto | str | os.PathLike[str], raise_on_error: bool = False
) -> list[str]:
    """Every way ``model`` breaks TensorRT's explicit-quantization rules (empty: it is fine).

    With ``raise_on_error``, a non-empty list raises `BuildError` naming all the problems.
    """
    import onnx

    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    graph = GraphIndex(model)
    problems = _check_opset(model)
    qdq = [n for n in model.graph.node if n.op_type in _QDQ]
    if not qdq:
        problems.append("the model has no QuantizeLinear/DequantizeLinear nodes (not quantized)")
    for node in qdq:
        problems.extend(_check_node(graph, node))
    problems.extend(_check_bias(graph))
    if problems and raise_on_error:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise BuildError(
            f"the INT8 model breaks {len(problems)} TensorRT Q/DQ rule(s):\n{listing}",
            "quantize with the tensorrt target (symmetric INT8, per-channel weights, float bias)",
        )
    return problems


def _check_opset(model: onnx.ModelProto) -> list[str]:
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    problems = []
    if opset < MIN_OPSET:
        problems.append(f"opset {opset} < {MIN_OPSET}: per-axis Q/DQ needs opset >= {MIN_OPSET}")
    # A contrib domain declared without nodes still makes TensorRT's parser look for its ops.
    foreign = sorted({o.domain for o in model.opset_import} - STANDARD_DOMAINS)
    if foreign:
        problems.append(
            f"imports non-standard opset domain(s) {foreign}; TensorRT parses ONNX only"
        )
    return problems


STANDARD_DOMAINS = frozenset({"", "ai.onnx"})


def strip_unused_opsets(model: onnx.ModelProto) -> bool:
    """Drop opset imports no node uses (ORT's tools leave com.microsoft.nchwc, ai.onnx.training,
    …); the standard domain stays. Whether anything was dropped."""
    used = {n.domain for n in model.graph.node} | STANDARD_DOMAINS
    keep = [o for o in model.opset_import if o.domain in used]
    if len(keep) == len(model.opset_import):
        return False
    del model.opset_import[:]
    model.opset_import.extend(keep)
    return True


def _label(node: Any) -> str:
    return f"{node.op_type} {node.name or node.output[0]!r}"


def _check_node(graph: GraphIndex, node: Any) -> list[str]:
    label = _label(node)
    data = graph.consts.get(node.input[0])
    if data is not None and data.dtype == np.int32:
        return []  # a quantized bias: reported once, by its consumer, in _check_bias
    problems = []
    if node.domain not in ("", "ai.onnx"):
        problems.append(f"{label}: domain {node.domain!r}; TensorRT parses only standard Q/DQ")
    scale, zero = graph.const(node, 1), graph.const(node, 2)
    if scale is None:
        problems.append(f"{label}: scale is not a constant")
    elif not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        problems.append(f"{label}: scale must be finite and > 0 (min {float(np.min(scale)):g})")
    if zero is None:
        problems.append(f"{label}: no constant zero point (means uint8); needs int8 zero point 0")
    elif zero.dtype != np.int8:
        problems.append(f"{label}: zero point is {zero.dtype}; TensorRT needs int8 (symmetric)")
    elif np.any(zero != 0):
        problems.append(f"{label}: zero point(s) not 0 (asymmetric); TensorRT needs all 0")
    if data is None:
        problems.extend(_check_activation(node, label, scale))
    else:
        problems.extend(_check_weight(graph, node, label, data, scale))
    return problems


def _check_activation(node: Any, label: str, scale: np.ndarray | None) -> list[str]:
    if scale is not None and scale.size != 1:
        return [f"{label}: activation has a per-axis scale ({scale.size} values); use per-tensor"]
    return []


def _check_weight(
    graph: GraphIndex, node: Any, label: str, weight: np.ndarray, scale: np.ndarray | None
) -> list[str]:
    problems = []
    if node.op_type == "DequantizeLinear" and weight.dtype != np.int8:
        problems.append(f"{label}: weight is stored as {weight.dtype}; TensorRT needs int8")
    for consumer, index in _weight_readers(graph, node):
        axis = _weight_axis(consumer, weight) if index == 1 else None
        if axis is None or scale is None or weight.shape[axis] == 1:
            continue
        got = int_attr(node, "axis", 1)
        got = got + weight.ndim if got < 0 else got
        where = f"{label} (weight of {_label(consumer)})"
        if scale.size == 1:
            problems.append(f"{where}: per-tensor weight scale; needs per-channel on axis {axis}")
        elif got != axis or scale.size != weight.shape[axis]:
            problems.append(
                f"{where}: per-channel on axis {got} with {scale.size} scales; needs axis "
                f"{axis} (output channels, {weight.shape[axis]})"
            )
    return problems


def _check_bias(graph: GraphIndex) -> list[str]:
    problems = []
    for node in graph.model.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "Gemm") or len(node.input) < 3:
            continue
        src = graph.producer.get(node.input[2])
        if src is not None and src.op_type == "DequantizeLinear":
            problems.append(f"{_label(node)}: bias is quantized ({_label(src)}); leave it float")
    return problems
