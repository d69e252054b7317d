"""Step 1: export the PyTorch model to ONNX and check it against PyTorch on real images.

Two exporters are registered. ``dynamo`` (torch.export, the maintained path since torch 2.9)
is the default: its graph is clean (no Constant nodes, BatchNorm folded) and, after ONNX
Runtime's quantization pre-processing, quantizes to the same QLinearConv graph and speed as the
``legacy`` TorchScript exporter (measured on EfficientNet-Lite0; see tools/bench_build.py).
``legacy`` exports ~20x faster and supports opset 17, which older TensorRT parsers need.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevision.compile.progress import Tracker, silent
from edgevision.errors import BuildError
from edgevision.registry import Registry
from edgevision.spec import ModelSpec

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
MIN_OPSET = 17

# (module, example input, out file, opset, output names)
ExportFn = Callable[["torch.nn.Module", "torch.Tensor", Path, int, tuple[str, ...]], None]
EXPORTERS: Registry[ExportFn] = Registry("ONNX exporter")
# The opset each exporter writes natively; dynamo cannot down-convert to 17.
DEFAULT_OPSET = {"dynamo": 18, "legacy": 17}


@EXPORTERS.register("dynamo")
def _export_dynamo(
    model: torch.nn.Module,
    example: torch.Tensor,
    out: Path,
    opset: int,
    outputs: tuple[str, ...] = (OUTPUT_NAME,),
) -> None:
    import torch

    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.onnx.export(
        model,
        (example,),
        str(out),
        dynamo=True,
        input_names=[INPUT_NAME],
        output_names=list(outputs),
        dynamic_shapes=({0: batch},),
        opset_version=opset,
        external_data=False,
        verbose=False,
    )


@EXPORTERS.register("legacy")
def _export_legacy(
    model: torch.nn.Module,
    example: torch.Tensor,
    out: Path,
    opset: int,
    outputs: tuple[str, ...] = (OUTPUT_NAME,),
) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (example,),
            str(out),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=list(outputs),
            dynamic_axes={name: {0: "batch"} for name in (INPUT_NAME, *outputs)},
            opset_version=opset,
            do_constant_folding=True,
        )


def export_onnx(
    model: torch.nn.Module,
    spec: ModelSpec,
    out: str | os.PathLike[str],
    exporter: str = "dynamo",
    opset: int | None = None,
    track: Tracker = silent,
) -> Path:
    """Export ``model`` (eval mode) to a single-file ONNX at ``out``.

    Input ``input`` [batch, …] and the task's outputs (classification: ``logits`` [batch,
    classes]; detection: ``boxes`` and ``scores``), dynamic batch axis, opset ``opset``
    (default: the exporter's native one, >= 17). The task wraps ``model`` into the deployed
    graph (a detector: its top-K candidates, decoded).
    """
    import torch

    from edgevision.compile.source import build_hooks

    export = EXPORTERS.get(exporter)
    opset = opset or DEFAULT_OPSET.get(exporter, 18)
    if opset < MIN_OPSET:
        raise BuildError(f"opset {opset} is too old", f"use opset >= {MIN_OPSET}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Batch 2 keeps torch.export from specialising the batch axis to the example's size 1.
    example = torch.zeros(spec.input_shape(2), dtype=torch.float32)
    hooks = build_hooks(spec)
    outputs = tuple(hooks.output_names(spec))
    model = hooks.export_module(model.eval(), spec).eval()
    for _ in track([None], 1, f"export ({exporter})"):
        try:
            with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
                export(model, example, out, opset, outputs)
        except Exception as exc:  # exporters raise many types; the message is what matters
            other = next((e for e in EXPORTERS.names() if e != exporter), exporter)
            raise BuildError(
                f"ONNX export with the {exporter} exporter failed: {type(exc).__name__}: {exc}",
                f"try the other exporter ({other}), or simplify the model's forward()",
            ) from None
    validate_onnx(out, spec, outputs, hooks.class_axis(spec))
    return out


def validate_onnx(
    path: Path,
    spec: ModelSpec,
    outputs: tuple[str, ...] = (OUTPUT_NAME,),
    class_axis: tuple[str, int] | None = (OUTPUT_NAME, -1),
) -> None:
    """Check the exported graph: valid ONNX, names ``input`` and ``outputs``, batch dynamic,
    and ``class_axis`` (output, axis; the task's `BuildHooks.class_axis`) the class count."""
    import onnx

    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    inputs = [i.name for i in model.graph.input]
    got = [o.name for o in model.graph.output]
    if inputs != [INPUT_NAME] or got != list(outputs):
        raise BuildError(f"exported {path} has inputs {inputs}, outputs {got}")
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    if batch.HasField("dim_value"):
        raise BuildError(f"exported {path} has a fixed batch size {batch.dim_value}")
    if class_axis is None:
        return
    name, axis = class_axis
    classes = next(o for o in model.graph.output if o.name == name)
    out_dim = classes.type.tensor_type.shape.dim[axis]
    if out_dim.HasField("dim_value") and out_dim.dim_value != spec.num_classes:
        raise BuildError(
            f"exported {path} predicts {out_dim.dim_value} classes, spec has {spec.num_classes}"
        )


@dataclass(frozen=True)
class ExportCheck:
    """PyTorch vs ONNX Runtime on the same preprocessed images."""

    images: int
    max_abs_diff: float
    top1_agreement: float  # fraction in [0, 1]
    atol: float
    min_agreement: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.atol and self.top1_agreement >= self.min_agreement

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_export(
    model: torch.nn.Module,
    onnx_path: str | os.PathLike[str],
    images: np.ndarray,
    atol: float = 1e-3,
    min_agreement: float = 0.99,
    threads: int = 0,
    batch_size: int = 16,
    track: Tracker = silent,
) -> ExportCheck:
    """Run ``images`` (preprocessed, float32) through both and compare the logits.

    Raises `BuildError` with both numbers when the max abs difference exceeds ``atol`` or the
    top-1 agreement falls below ``min_agreement``.
    """
    import torch

    from edgevision.backends.ort import OrtRunner

    if len(images) == 0:
        raise BuildError("check_export got no images", "give at least one preprocessed image")
    ref, got = [], []
    batches = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    with OrtRunner(onnx_path, threads=threads) as runner, torch.no_grad():
        for batch in track(batches, len(batches), "check export"):
            ref.append(model(torch.from_numpy(np.ascontiguousarray(batch))).numpy())
            got.append(runner.infer(batch)[OUTPUT_NAME])
    ref_all, got_all = np.concatenate(ref), np.concatenate(got)
    result = ExportCheck(
        images=len(images),
        max_abs_diff=float(np.max(np.abs(ref_all - got_all))),
        top1_agreement=float(np.mean(ref_all.argmax(1) == got_all.argmax(1))),
        atol=atol,
        min_agreement=min_agreement,
    )
    log.info(
        "export check on %d images: max abs diff %.3g, top-1 agreement %.2f%%",
        result.images,
        result.max_abs_diff,
        100 * result.top1_agreement,
    )
    if not result.ok:
        raise BuildError(
            f"the ONNX export disagrees with PyTorch on {result.images} images: max abs diff "
            f"{result.max_abs_diff:.3g} (tolerance {atol:g}), top-1 agreement "
            f"{100 * result.top1_agreement:.2f}% (needs >= {100 * min_agreement:.2f}%)",
            "try the other exporter (--exporter), or check the model for train-mode layers",
        )
    return result
