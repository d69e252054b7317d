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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevision.compile.calibrate import CalibrationRanges, quantizable_op_types
from edgevision.compile.cpu_tuning import global_pool_as_op, pad_input_channels
from edgevision.compile.trt_check import check_tensorrt_qdq
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

    Then a global-mean ReduceMean becomes GlobalAveragePool (`cpu_tuning.global_pool_as_op`,
    the same computation), which the quantizer quantizes, so an INT8 classifier's tail does not
    drop back to float. Calibrate and quantize this model (not the raw export), so that tensor
    names match.
    """
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = Path(out)
    try:
        quant_pre_process(str(fp32_path), str(out))
    except Exception as exc:  # ORT's optimiser raises its own types
        raise BuildError(
            f"ONNX Runtime's quantization pre-processing failed on {fp32_path}: {exc}",
            "check the model loads in onnxruntime; re-export it with opset 17 or newer",
        ) from None
    model = onnx.load(str(out))
    if global_pool_as_op(model):
        onnx.save(model, str(out))
    return out


def quantize_for_target(
    model_path: str | os.PathLike[str],
    ranges: CalibrationRanges,
    target: str,
    out: str | os.PathLike[str],
    nodes_to_exclude: Sequence[str] = (),
    per_channel: bool = True,
    finalize: bool = True,
) -> Path:
    """Quantize ``model_path`` (pre-processed FP32) for ``target`` with precomputed ``ranges``.

    ``nodes_to_exclude`` keeps those nodes in float (e.g. layers an accuracy search found
    sensitive). ``finalize=False`` skips the target's exact kernel rewrites (the layer
    analysis matches Q/DQ tensors with the FP32 model's, shape for shape). The target's
    verifier runs on the result; a failure raises `BuildError`.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    recipe = TARGETS.get(target)
    out = Path(out)
    _check_node_names(model_path, nodes_to_exclude)
    quantize_static(
        str(model_path),
        str(out),
        calibration_data_reader=None,
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=quantizable_op_types(),
        per_channel=per_channel,
        activation_type=QuantType[recipe.activation_type],
        weight_type=QuantType[recipe.weight_type],
        nodes_to_exclude=list(nodes_to_exclude),
        calibrate_method=ranges.ort_method,
        extra_options=dict(recipe.extra_options),
        calibration_cache_path=str(ranges.cache_path),
    )
    if finalize and recipe.finalize is not None:
        model = onnx.load(str(out))
        if recipe.finalize(model):
            onnx.save(model, str(out))
    if recipe.verify is not None:
        problems = recipe.verify(onnx.load(str(out)))
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
