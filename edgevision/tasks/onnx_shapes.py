"""Reading a user's ONNX for a task's contract: tensor dims, shape inference, the image input.

Torch-free; ``onnx`` (and ONNX Runtime's symbolic shape inference) are imported inside the
functions. One reading of ONNX dims for every task's contract (`edgevision.tasks.detect.
onnx_contract`, `edgevision.tasks.segment.onnx_contract`): a dim is a fixed size, a named
dynamic dim (``dim_param``) or an unnamed one (None). `check_image_input` and `check_batch`
are the checks both contracts make the same way; ``what`` names the model in their messages
(``"detector ONNX"``) and ``noun`` what to export again (``"detector"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgevision.errors import BuildError

if TYPE_CHECKING:
    import onnx

    from edgevision.spec import ModelSpec

FLOAT_TYPES = (1, 10, 11, 16)  # FLOAT, FLOAT16, DOUBLE, BFLOAT16 (TensorProto.DataType)

Dim = int | str | None  # a fixed size, a named dynamic dim (dim_param), or an unnamed one


def dims_of(value_info: Any) -> tuple[Dim, ...] | None:
    """The dims of a tensor's value info; None when it carries no shape at all."""
    t = value_info.type
    if not t.HasField("tensor_type") or not t.tensor_type.HasField("shape"):
        return None
    out: list[Dim] = []
    for d in t.tensor_type.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            out.append(int(d.dim_value))
        elif d.HasField("dim_param") and d.dim_param:
            out.append(d.dim_param)
        else:
            out.append(None)
    return tuple(out)


def shape_text(shape: Sequence[Dim] | None) -> str:
    """Dims as ``[batch, 3, ?, 640]`` (``(no shape)`` for None)."""
    if shape is None:
        return "(no shape)"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def is_fixed(d: Dim) -> bool:
    """A fixed size (not a symbol or unknown)."""
    return isinstance(d, int)


def type_name(elem: int) -> str:
    """A TensorProto element type's name (its number when unknown)."""
    import onnx

    try:
        return onnx.TensorProto.DataType.Name(elem)
    except ValueError:
        return str(elem)


def inferred_outputs(
    model: onnx.ModelProto, input_name: str, spec: ModelSpec
) -> dict[str, tuple[Dim, ...] | None]:
    """The outputs' shapes by shape inference, dynamic input H/W fixed to the spec's size.

    Exporters often declare dims they could not work out as symbols (torch's TorchScript
    exporter names K ``GatherElementsboxes_dim_1`` after a TopK + GatherElements), so a
    symbol in the file is not yet a dynamic dim. ONNX Runtime's symbolic shape inference works
    the sizes out through Shape / Where / Expand; ONNX's own inference is the fallback.
    """
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    inp = next(i for i in copy.graph.input if i.name == input_name)
    want = spec.input_shape("batch")
    for d, w in zip(inp.type.tensor_type.shape.dim[1:], want[1:], strict=False):
        if not (d.HasField("dim_value") and d.dim_value > 0):
            d.dim_value = int(w)  # the build fixes dynamic H/W to the spec's size too
    for out in copy.graph.output:
        out.type.tensor_type.ClearField("shape")
    found: dict[str, tuple[Dim, ...] | None] = {o.name: None for o in copy.graph.output}
    for infer in (_ort_inference, _onnx_inference):
        try:
            inferred = infer(copy)
        except Exception:  # a custom op or an odd graph: try the next, then keep the file's
            continue
        for out in inferred.graph.output:
            found[out.name] = merge_dims(found.get(out.name), dims_of(out))
        if all(d is not None and all(is_fixed(x) for x in d[1:]) for d in found.values()):
            break
    return found


def _ort_inference(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    return SymbolicShapeInference.infer_shapes(model, auto_merge=True)


def _onnx_inference(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnx

    return onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)


def merge_dims(a: tuple[Dim, ...] | None, b: tuple[Dim, ...] | None) -> tuple[Dim, ...] | None:
    """Two views of one shape: a fixed dim wins over a symbol, ``a`` over ``b``."""
    if a is None or b is None or len(a) != len(b):
        return a if a is not None else b
    return tuple(x if is_fixed(x) or not is_fixed(y) else y for x, y in zip(a, b, strict=True))


def check_image_input(
    path: Path, graph: Any, spec: ModelSpec, what: str, noun: str, contract: str
) -> tuple[str, tuple[Dim, ...]]:
    """The graph's one image input (name, dims): ``[batch, 3, H, W]`` for an NCHW spec,
    ``[batch, H, W, 3]`` for NHWC, float; a `BuildError` naming what was found otherwise."""
    inits = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    layout = "[batch, 3, H, W]" if spec.layout == "NCHW" else "[batch, H, W, 3]"
    if len(inputs) != 1:
        names = ", ".join(f"{i.name!r} {shape_text(dims_of(i))}" for i in inputs) or "none"
        raise BuildError(
            f"{what} {path} has {len(inputs)} inputs ({names}); it needs one image input",
            f"export the {noun} with a single {spec.layout} image input {layout}: {contract}",
        )
    inp = inputs[0]
    shape = dims_of(inp)
    channel = 1 if spec.layout == "NCHW" else 3
    if shape is None or len(shape) != 4 or (is_fixed(shape[channel]) and shape[channel] != 3):
        raise BuildError(
            f"{what} {path} input {inp.name!r} has shape {shape_text(shape)}; the spec's "
            f"{spec.layout} layout wants an image {layout}",
            f"export the {noun} with a single {spec.layout} image input {layout}, or fix "
            "the spec's layout",
        )
    elem = inp.type.tensor_type.elem_type
    if elem and elem not in FLOAT_TYPES:
        raise BuildError(
            f"{what} {path} input {inp.name!r} has element type {type_name(elem)}; "
            "the build feeds normalised float pixels",
            f"export the {noun} with a float32 image input {layout} (mean/std from the spec)",
        )
    return inp.name, shape


def check_batch(
    path: Path,
    what: str,
    input_name: str,
    in_dims: tuple[Dim, ...],
    outputs: dict[str, tuple[Dim, ...]],
    fix: str,
) -> None:
    """The batch dims agree: no two fixed and different, no fixed output of a dynamic input."""
    batch = in_dims[0]
    for name, shape in outputs.items():
        b = shape[0]
        if (is_fixed(batch) and is_fixed(b) and b != batch) or (
            not is_fixed(batch) and is_fixed(b)
        ):
            raise BuildError(
                f"{what} {path} input {input_name!r} has batch {shape_text([batch])[1:-1]} but "
                f"output {name!r} has batch {shape_text([b])[1:-1]} ({shape_text(shape)})",
                fix,
            )


__all__ = [
    "FLOAT_TYPES",
    "Dim",
    "check_batch",
    "check_image_input",
    "dims_of",
    "inferred_outputs",
    "is_fixed",
    "merge_dims",
    "shape_text",
    "type_name",
]
