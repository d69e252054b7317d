"""Step 3b: INT8 post-training quantization, one artifact per target, from one calibration.

``TARGETS`` holds each target's recipe for ``onnxruntime.quantization.quantize_static``:

* ``cpu`` — QDQ, U8 activations (asymmetric), S8 per-channel symmetric weights, int32 bias.
  On this project's AVX-512 VNNI CPU, ORT runs it as NHWC QLinearConv; U8S8 beat S8S8 QDQ and
  QOperator (tools/bench_build.py --variants measures them side by side). A 3-channel input is
  padded to 4 inside the model (`cpu_tuning.pad_input_channels`, exact) so that the stem takes
  MLAS's fast symmetric-convolution path.
* ``tensorrt`` — QDQ, symmetric INT8 activations and per-channel weights (zero points 0),
  bias left in float; verified with `check_tensorrt_qdq` after quantizing.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevision.compile.calibrate import CalibrationRanges, quantizable_op_types
from edgevision.compile.cpu_tuning import global_pool_as_op, pad_input_channels
from edgevision.compile.graph import GraphIndex
from edgevision.compile.rounding import DEFAULT_RECIPE, RECIPES, load_statistics, round_weights
from edgevision.compile.trt_check import check_tensorrt_qdq, strip_unused_opsets
from edgevision.errors import BuildError
from edgevision.registry import Registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """How to quantize for one deployment target, and what the artifact is called."""

    name: str
    artifact: str
    file: str
    activation_type: str  # an onnxruntime.quantization.QuantType member name
    weight_type: str
    extra_options: dict[str, Any] = field(default_factory=dict)
    verify: Callable[[Any], list[str]] | None = None
    description: str = ""
    # exact rewrites of the quantized model for the target's kernels (edits it in place,
    # returns what it changed)
    finalize: Callable[[Any], list[str]] | None = None

    def record(self) -> dict[str, Any]:
        """The artifact's manifest entry (its sha256 is filled in by write_bundle)."""
        return {
            "file": self.file,
            "precision": "int8",
            "target": self.name,
            "format": "QDQ",
            "activations": _TYPE_NAMES[self.activation_type],
            "weights": f"{_TYPE_NAMES[self.weight_type]} per-channel",
            "description": self.description,
        }


_TYPE_NAMES = {"QUInt8": "uint8", "QInt8": "int8"}

TARGETS: Registry[Target] = Registry("quantization target")
TARGETS.register(
    "cpu",
    Target(
        "cpu",
        "int8-cpu",
        "model.int8.cpu.onnx",
        "QUInt8",
        "QInt8",
        {"WeightSymmetric": True},
        description="QDQ for ONNX Runtime on CPUs: U8 activations, S8 per-channel weights",
        finalize=pad_input_channels,
    ),
)
TARGETS.register(
    "tensorrt",
    Target(
        "tensorrt",
        "int8-trt",
        "model.int8.trt.onnx",
        "QInt8",
        "QInt8",
        {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
        verify=check_tensorrt_qdq,
        description="QDQ for TensorRT explicit quantization: symmetric INT8, float bias",
    ),
)


def prepare_for_quantization(
    fp32_path: str | os.PathLike[str], out: str | os.PathLike[str]
) -> Path:
    """ORT's quantization pre-processing: symbolic shape inference + graph optimisation.

    Where ORT's symbolic shape inference gives up (legacy exports with a dynamic batch whose
    shapes are computed in the graph, e.g. EfficientViT's window padding), it is done again
    with ONNX's own shape inference alone, which quantizes the same graph there.
    Then a bias initializer that other nodes read too gets its own copy (`unshare_biases`), and
    a global-mean ReduceMean becomes GlobalAveragePool (`cpu_tuning.global_pool_as_op`, the
    same computation), which the quantizer quantizes, so an INT8 classifier's tail does not
    drop back to float. Calibrate and quantize this model (not the raw export), so that tensor
    names match.
    """
    import onnx

    out = Path(out)
    _pre_process(Path(fp32_path), out)
    model = onnx.load(str(out))
    changed = bool(unshare_biases(model))
    changed = bool(global_pool_as_op(model)) or changed
    if changed:
        onnx.save(model, str(out))
    return out


# What ORT's symbolic shape inference leaves in the working directory when it gives up.
_SYMBOLIC_LEFTOVER = "sym_shape_infer_temp.onnx"


def _pre_process(fp32_path: Path, out: Path) -> None:
    """`quant_pre_process`, retried without symbolic shape inference when that fails."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    started = time.time()
    try:
        quant_pre_process(str(fp32_path), str(out))
        return
    except Exception as exc:  # ORT's shape inference and optimiser raise their own types
        first = f"{type(exc).__name__}: {exc}"
    finally:
        _remove_symbolic_leftovers(Path.cwd(), started)
    log.info("symbolic shape inference failed (%s); using ONNX shape inference", first)
    try:
        quant_pre_process(str(fp32_path), str(out), skip_symbolic_shape=True)
    except Exception as exc:
        raise BuildError(
            f"ONNX Runtime's quantization pre-processing failed on {fp32_path}: {first}; "
            f"without symbolic shape inference: {type(exc).__name__}: {exc}",
            "check that the model loads in onnxruntime; re-export it with a fixed batch size "
            "(torch.onnx.export without dynamic_axes) or with the dynamo exporter",
        ) from None


def _remove_symbolic_leftovers(folder: Path, since: float) -> None:
    """Delete the model (and its external-data file) ORT's symbolic shape inference saves in
    the working directory when it fails, if this build wrote it (not older than ``since``)."""
    import onnx

    leftover = folder / _SYMBOLIC_LEFTOVER
    try:
        if leftover.stat().st_mtime < since - 1:
            return
        model = onnx.load(str(leftover), load_external_data=False)
    except Exception:  # absent, half-written or not ONNX: not ours to remove
        return
    locations = {
        entry.value
        for tensor in model.graph.initializer
        for entry in tensor.external_data
        if entry.key == "location"
    }
    for name in [*locations, _SYMBOLIC_LEFTOVER]:
        path = folder / name
        if path.parent == folder and path.is_file():
            path.unlink()


_BIAS_OPS = ("Conv", "ConvTranspose", "Gemm")


def unshare_biases(model: Any) -> list[str]:
    """Give every Conv/ConvTranspose/Gemm bias initializer that is read elsewhere too its own
    copy (the last reader keeps the original); edits ``model`` in place and returns the nodes
    whose bias was renamed.

    Why: exporters and ORT's optimiser share identical initializers (LeViT's random-init conv
    bias and a BatchNorm scale are the same zeros). The quantizer then puts a Q/DQ pair on the
    tensor for the BatchNorm and the convolution reads its bias through it (TensorRT wants a
    float bias; `check_tensorrt_qdq` refuses it), the int32 bias of the ``cpu`` target is made
    with one consumer's scales, and bias correction would change the other readers as well.
    """
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    reads = Counter(name for node in graph.node for name in node.input)
    reads.update(o.name for o in graph.output)
    taken = set(inits) | {o for node in graph.node for o in node.output}
    changed = []
    for node in graph.node:
        name = node.input[2] if node.op_type in _BIAS_OPS and len(node.input) > 2 else ""
        if name not in inits or reads[name] < 2:
            continue
        label = node.name or node.output[0]
        copy = _unique(f"{name}_bias_of_{label}", taken)
        graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(inits[name]), copy))
        node.input[2] = copy
        reads[name] -= 1
        changed.append(label)
    return changed


def _unique(name: str, taken: set[str]) -> str:
    out, i = name, 1
    while out in taken:
        out, i = f"{name}_{i}", i + 1
    taken.add(out)
    return out


def quantize_for_target(
    model_path: str | os.PathLike[str],
    ranges: CalibrationRanges,
    target: str,
    out: str | os.PathLike[str],
    nodes_to_exclude: Sequence[str] = (),
    per_channel: bool = True,
    finalize: bool = True,
    recipe: str = DEFAULT_RECIPE,
) -> Path:
    """Quantize ``model_path`` (pre-processed FP32) for ``target`` with precomputed ``ranges``.

    ``nodes_to_exclude`` keeps those nodes in float (e.g. layers an accuracy search found
    sensitive): their weights stay float and they read float inputs (`float_inputs`).
    ``recipe`` re-rounds the INT8 weights and corrects the biases (`rounding.RECIPES`; the
    default needs the statistics `calibrate` keeps with the ranges, else it is plain).
    ``finalize=False`` skips the target's exact kernel rewrites (the layer
    analysis matches Q/DQ tensors with the FP32 model's, shape for shape). The target's
    verifier runs on the result; a failure raises `BuildError`.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    RECIPES.get(recipe)
    target_recipe = TARGETS.get(target)
    out = Path(out)
    _check_node_names(model_path, nodes_to_exclude)
    quantize_static(
        str(model_path),
        str(out),
        calibration_data_reader=None,
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=quantizable_op_types(),
        per_channel=per_channel,
        activation_type=QuantType[target_recipe.activation_type],
        weight_type=QuantType[target_recipe.weight_type],
        nodes_to_exclude=list(nodes_to_exclude),
        calibrate_method=ranges.ort_method,
        extra_options=dict(target_recipe.extra_options),
        calibration_cache_path=str(ranges.cache_path),
    )
    stats = ranges.weights_path
    rounding = recipe != "plain" and stats is not None and stats.is_file()
    if nodes_to_exclude or rounding:
        model, fp32 = onnx.load(str(out)), onnx.load(str(model_path))
        if rounding:
            round_weights(model, fp32, load_statistics(stats), recipe, nodes_to_exclude)
        float_inputs(model, fp32, nodes_to_exclude)
        onnx.save(model, str(out))
    model = onnx.load(str(out))
    changed = strip_unused_opsets(model)
    if finalize and target_recipe.finalize is not None:
        changed = target_recipe.finalize(model) or changed
    if changed:
        onnx.save(model, str(out))
    if target_recipe.verify is not None:
        problems = target_recipe.verify(model)
        if nodes_to_exclude:  # everything in float is a float model, not a broken one
            problems = [p for p in problems if "no QuantizeLinear/DequantizeLinear" not in p]
        if problems:
            listing = "\n".join(f"  - {p}" for p in problems)
            raise BuildError(
                f"the {target} INT8 model fails its checks ({len(problems)}):\n{listing}",
                "report this with the model; exclude the offending nodes meanwhile",
            )
    return out


def _check_node_names(model_path: str | os.PathLike[str], names: Sequence[str]) -> None:
    """Refuse names the model does not have (a typo would silently quantize everything)."""
    if not names:
        return
    import onnx

    known = {n.name for n in onnx.load(str(model_path), load_external_data=False).graph.node}
    unknown = [n for n in names if not n or n not in known]
    if unknown:
        sample = ", ".join(sorted(k for k in known if k)[:5])
        raise BuildError(
            f"nodes_to_exclude names {unknown[:5]} are not nodes of {model_path}",
            f"use node names of the pre-processed model, e.g. {sample}",
        )


_Q, _DQ = "QuantizeLinear", "DequantizeLinear"


# Float nodes of these types read their inputs in float (`float_inputs`); any other float node
# (Sigmoid, Add, Concat, Resize, TopK, ...) computes in float on its producers' output as they
# emit it: a quantized producer's INT8 output, dequantized.
FLOAT_READERS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


def float_inputs(model: Any, fp32: Any, nodes: Sequence[str]) -> list[str]:
    """Feed each of ``nodes`` (excluded from quantization) that is a Conv / ConvTranspose /
    Gemm / MatMul the float tensor its Q/DQ pair was made from, and drop the Q/DQ nodes nobody
    reads any more. Edits ``model`` in place and returns the nodes whose inputs changed.

    Why: ``quantize_static`` keeps an excluded node's weights float but still puts a Q/DQ pair
    on its inputs when their producer is quantized. ONNX Runtime's ``WeightBiasQuantization``
    session transformer (graph optimisation level 1 and up, ORT >= 1.20) then takes
    ``DequantizeLinear -> Conv/Gemm(float weight)`` for a quantized node and quantizes the
    float weight **per tensor** when the session loads: a depthwise convolution "kept in
    float" ran with one INT8 scale for all its channels, far worse than the per-channel
    weights it would have had quantized. Reading the float tensor is also simply what "in
    float" means. Where ORT folded a Relu/Clip into the Q (the producer's output carries the
    activation's name but not its clamp), the activation is re-applied from ``fp32``, the
    pre-processed model that was quantized.

    A float node without weights (``FLOAT_READERS`` aside) keeps its input Q/DQ: it computes
    in float from its producer's INT8 output, and that producer stays fully INT8. Feeding it
    the float tensor instead made the producer output float: a detector's final convolutions
    ran in FP32 because their decode and sigmoid were float, 1.79x faster than FP32 instead
    of 2.09x, and no more accurate (`tools/bench_build_detect.py`).
    """
    excluded = set(nodes)
    index, ref = GraphIndex(model), GraphIndex(fp32)
    present = {n.name for n in model.graph.node}
    made: dict[str, str] = {}  # quantized tensor -> the float tensor that replaces it
    changed = []
    for node in list(model.graph.node):
        if node.name not in excluded or node.op_type not in FLOAT_READERS:
            continue
        for i, name in enumerate(node.input):
            dq = index.producer.get(name)
            if dq is None or dq.op_type != _DQ or dq.input[0] in index.consts:
                continue
            q = index.producer.get(dq.input[0])
            if q is None or q.op_type != _Q:
                continue
            source = q.input[0]
            if source not in made:
                made[source] = _float_source(model, index, ref, present, source)
            node.input[i] = made[source]
            changed.append(node.name)
    if changed:
        _drop_unread_qdq(model)
    return list(dict.fromkeys(changed))


def _float_source(model: Any, index: GraphIndex, ref: GraphIndex, present: set, name: str) -> str:
    """``name`` as the FP32 model computes it: itself, or the producer's raw output with the
    activations ORT folded into the Q re-applied (copied from the FP32 model)."""
    from onnx import numpy_helper

    producer, original = index.producer.get(name), ref.producer.get(name)
    if producer is None or original is None or original.name == producer.name:
        return name
    chain, node = ref.folded_chain(name, present)  # the folded activations, last first
    if node is None or node.name != producer.name:
        return name  # not the folding pattern: leave the tensor as it is
    known = {i.name for i in model.graph.initializer} | set(index.producer)
    at = list(model.graph.node).index(producer) + 1
    current = name
    for act in reversed(chain):
        copy = type(act)()
        copy.CopyFrom(act)
        copy.name = f"{act.name}_float"
        copy.input[0] = current
        copy.output[0] = f"{act.output[0]}_float"
        for extra in copy.input[1:]:
            if extra and extra not in known and extra in ref.consts:
                model.graph.initializer.append(numpy_helper.from_array(ref.consts[extra], extra))
                known.add(extra)
        model.graph.node.insert(at, copy)
        at += 1
        current = copy.output[0]
    return current


def _drop_unread_qdq(model: Any) -> None:
    """Remove Q/DQ nodes whose outputs nobody reads, then the initializers left unused."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    while True:
        read = {n for node in graph.node for n in node.input} | outputs
        dead = [n for n in graph.node if n.op_type in (_Q, _DQ) and n.output[0] not in read]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    used = {n for node in graph.node for n in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
