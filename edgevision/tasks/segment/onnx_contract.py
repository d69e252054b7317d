"""A user's segmentation ONNX against the segmentation contract, and its head.

Torch-free; ``onnx`` is imported inside the functions. The contract
(`edgevision.tasks.segment.spec`): one image input ``[batch, 3, H, W]`` (NCHW; ``[batch, H, W,
3]`` NHWC), H/W fixed or dynamic, the batch possibly dynamic; exactly one output, named by the
spec's ``segmentation.output``:

* ``"logits"``: ``logits`` ``[batch, C, h, w]`` float, ``C`` the spec's label count, ``h`` and
  ``w`` fixed and dividing ``H`` and ``W`` (the decoder's stride, 8 for LR-ASPP);
* ``"classmap"``: ``classes`` ``[batch, H, W]`` uint8 at the input size (upsampling, ArgMax
  and the Cast in the graph).

The batch dim may be dynamic; every other output dim is fixed (shape inference at the spec's
input size fills in dims an exporter declared as symbols). `check_segmenter_onnx` refuses
anything else with a `BuildError` (or a `SpecError` when the model is fine but the spec names
the other output kind) that says what it found and states the contract. `head_float_nodes`
finds the segmentation head's final classifier layers and what follows them (the walk the
build offers for ``--float-head``, see `edgevision.tasks.segment.build`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgevision.errors import BuildError, SpecError
from edgevision.tasks import onnx_head
from edgevision.tasks.onnx_shapes import (
    FLOAT_TYPES,
    Dim,
    check_batch,
    check_image_input,
    dims_of,
    inferred_outputs,
    is_fixed,
    merge_dims,
    shape_text,
    type_name,
)
from edgevision.tasks.segment.spec import CLASSES, LOGITS, OUTPUT_KINDS

if TYPE_CHECKING:
    import onnx

    from edgevision.spec import ModelSpec

_WHAT = "segmentation ONNX"
_UINT8 = 2  # TensorProto.UINT8
_INT_TYPES = (2, 3, 4, 5, 6, 7, 12, 13)  # (U)INT8/16/32/64
_CONTRACT = (
    "a segmentation ONNX has one image input and exactly one output: "
    f"{LOGITS!r} [batch, C, h, w] float (spec segmentation.output 'logits'; C = the spec's "
    "label count, h and w fixed and dividing the input's H and W, e.g. H/8 x W/8) or "
    f"{CLASSES!r} [batch, H, W] uint8 class ids at the input size (segmentation.output "
    "'classmap': upsample, ArgMax and Cast in the graph)"
)


@dataclass(frozen=True)
class SegmenterIO:
    """What `check_segmenter_onnx` read from a contract-conforming segmenter."""

    input_shape: tuple[int | None, ...]  # None: a dynamic dim
    classes: int  # C, the spec's label count
    kind: str  # "logits" or "classmap" (the spec's segmentation.output)
    output_name: str  # "logits" or "classes"
    output_size: tuple[int, int]  # (h, w) of the output map
    stride: tuple[int, int]  # (H / h, W / w): 1 for a class map
    input_name: str
    notes: list[str] = field(default_factory=list)


def check_segmenter_onnx(path: str | Path, spec: ModelSpec) -> SegmenterIO:
    """Check a user's segmentation ONNX against the contract; raise `BuildError` if off.

    A fixed input height/width that differs from the spec raises `SpecError` (as for a
    classifier, `edgevision.compile.source.check_input_shape`), and so does a model whose one
    output is the other kind's (``classes`` for a ``logits`` spec or the reverse).
    """
    from edgevision.compile.source import check_input_shape, load_user_onnx

    path = Path(path)
    options = spec.segmentation
    if options is None:
        raise SpecError(
            f"the spec for {path} is a {spec.task} spec, not a segmentation one",
            'set "task": "segmentation" (and "segmentation": {"output": "logits"}) in the spec',
        )
    fix = "export the segmenter again with torch.onnx.export (opset 17)"
    model = load_user_onnx(path, _WHAT, fix)
    graph = model.graph
    classes = len(spec.labels)
    input_name, in_dims = check_image_input(path, graph, spec, _WHAT, "segmenter", _CONTRACT)
    out = _check_output_name(path, graph, options.output, classes)
    dims = dims_of(out)
    if dims is None or not all(is_fixed(x) for x in dims[1:]):
        inferred = inferred_outputs(model, input_name, spec).get(out.name)
        dims = merge_dims(dims, inferred)
    height, width = spec.input_size
    if options.output == "logits":
        size = _check_logits(path, out, dims, classes, (height, width))
    else:
        size = _check_classes(path, out, dims, classes, (height, width))
    assert dims is not None
    batch_fix = (
        "export the output with the input's batch dim (dynamic_axes={'input': {0: "
        f"'batch'}}, {out.name!r}: {{0: 'batch'}}}}, or all fixed)"
    )
    check_batch(path, _WHAT, input_name, in_dims, {out.name: dims}, batch_fix)
    shape = tuple(d if is_fixed(d) else None for d in in_dims)
    check_input_shape(path, shape, spec)
    stride = (height // size[0], width // size[1])
    return SegmenterIO(shape, classes, options.output, out.name, size, stride, input_name)


def _describe(outs: Sequence[Any]) -> str:
    return (
        ", ".join(
            f"{o.name!r} {shape_text(dims_of(o))} {type_name(o.type.tensor_type.elem_type)}"
            for o in outs
        )
        or "none"
    )


def _check_output_name(path: Path, graph: Any, kind: str, classes: int) -> Any:
    """The one output, named as the spec's ``segmentation.output`` says."""
    want = OUTPUT_KINDS[kind][0]
    other_kind = next(k for k in OUTPUT_KINDS if k != kind)
    other = OUTPUT_KINDS[other_kind][0]
    outs = list(graph.output)
    names = [o.name for o in outs]
    found = _describe(outs)
    if names == [want]:
        return outs[0]
    if names == [other]:
        raise SpecError(
            f"segmentation ONNX {path} outputs {found}, a {other_kind} model, but the spec's "
            f"segmentation.output is {kind!r} (which names the output {want!r})",
            f'set "segmentation": {{"output": "{other_kind}"}} in the spec, or re-export: '
            f"{_CONTRACT}",
        )
    if len(outs) == 1:
        fix = f"rename the output {names[0]!r} → {want!r} (torch.onnx.export output_names=[...])"
        guess = _guess_kind(outs[0], classes)
        if guess is not None and guess != kind:
            fix = (
                f"its shape looks like a {guess} output: rename it to {OUTPUT_KINDS[guess][0]!r} "
                f'and set "segmentation": {{"output": "{guess}"}} in the spec'
            )
        raise BuildError(
            f"segmentation ONNX {path} has 1 output named {found}, not {want!r}",
            f"{fix}; {_CONTRACT}",
        )
    if not outs:
        raise BuildError(f"segmentation ONNX {path} has no output", _CONTRACT)
    if want in names:
        fix = (
            f"export only {want!r}: drop auxiliary outputs (e.g. torchvision's 'aux' head, "
            f"intermediate features) from the exported forward(); {_CONTRACT}"
        )
    else:
        fix = f"export one output {want!r}; {_CONTRACT}"
    raise BuildError(
        f"segmentation ONNX {path} has {len(outs)} outputs ({found}); the contract has one",
        fix,
    )


def _guess_kind(out: Any, classes: int) -> str | None:
    """``"logits"`` / ``"classmap"`` when an output's shape and type make its kind plain."""
    dims = dims_of(out)
    elem = out.type.tensor_type.elem_type
    if dims is not None and len(dims) == 4 and dims[1] == classes and elem in FLOAT_TYPES:
        return "logits"
    if dims is not None and len(dims) == 3 and elem in _INT_TYPES:
        return "classmap"
    return None


def _check_logits(
    path: Path,
    out: Any,
    dims: tuple[Dim, ...] | None,
    classes: int,
    size: tuple[int, int],
) -> tuple[int, int]:
    """(h, w) of a ``logits`` output [batch, C, h, w] whose h, w divide the input's H, W."""
    if dims is None or len(dims) != 4:
        found = "no known shape" if dims is None else f"rank {len(dims)} {shape_text(dims)}"
        fix = _CONTRACT
        if dims is not None and len(dims) == 3:
            fix = (
                "a rank-3 output is a class map: name it 'classes' (uint8) and set "
                f'"segmentation": {{"output": "classmap"}} in the spec; {_CONTRACT}'
            )
        raise BuildError(
            f"segmentation ONNX {path} output {out.name!r} has {found}; expected [batch, C, h, w]",
            fix,
        )
    elem = out.type.tensor_type.elem_type
    if elem and elem not in FLOAT_TYPES:
        raise BuildError(
            f"segmentation ONNX {path} output {out.name!r} has element type {type_name(elem)}; "
            "logits are float",
            f"export the logits before any ArgMax, or name a class map 'classes' and set "
            f'"segmentation": {{"output": "classmap"}}; {_CONTRACT}',
        )
    if dims[1] != classes:
        found = f"{dims[1]} classes" if is_fixed(dims[1]) else "a class count that is not fixed"
        raise BuildError(
            f"segmentation ONNX {path} output {out.name!r} has shape {shape_text(dims)}: {found} "
            f"on axis 1, but the spec has {classes} labels",
            "give the spec written for this model (one label per logit channel, class id "
            f"order), or re-export; {_CONTRACT}",
        )
    h, w = dims[2], dims[3]
    height, width = size
    if not (is_fixed(h) and is_fixed(w)):
        raise BuildError(
            f"segmentation ONNX {path} output {out.name!r} has shape {shape_text(dims)}: its h, w "
            "are not fixed (shape inference at the spec's input size cannot fix them either)",
            f"export with a fixed input size {height}x{width} (only the batch dynamic); "
            f"{_CONTRACT}",
        )
    assert isinstance(h, int) and isinstance(w, int)
    if height % h or width % w:
        raise BuildError(
            f"segmentation ONNX {path} output {out.name!r} is {h}x{w}, which does not divide "
            f"the input size {height}x{width}: the runtime could not map it back onto the frame",
            "give the spec the input size the model was exported at (a multiple of the "
            f"decoder's stride, e.g. of 8 or 32); {_CONTRACT}",
        )
    return h, w


def _check_classes(
    path: Path,
    out: Any,
    dims: tuple[Dim, ...] | None,
    classes: int,
    size: tuple[int, int],
) -> tuple[int, int]:
    """(H, W) of a ``classes`` output [batch, H, W] uint8 at the input size."""
    height, width = size
    if dims is None or len(dims) != 3:
        found = "no known shape" if dims is None else f"rank {len(dims)} {shape_text(dims)}"
        fix = _CONTRACT
        if dims is not None and len(dims) == 4 and dims[1] == 1:
            fix = f"squeeze the channel axis (ArgMax keepdims=0): {_CONTRACT}"
        elif dims is not None and len(dims) == 4:
            fix = (
                "a [batch, C, h, w] output is logits: take the ArgMax over C in the graph, or "
                f'name it \'logits\' and set "segmentation": {{"output": "logits"}}; {_CONTRACT}'
            )
        raise BuildError(
            f"segmentation ONNX {path} output {out.name!r} has {found}; expected [batch, "
            f"{height}, {width}] uint8",
            fix,
        )
    elem = out.type.tensor_type.elem_type
    if elem != _UINT8:
        fix = _CONTRACT
        if elem in _INT_TYPES:
            fix = f"Cast the ArgMax to uint8 (to=TensorProto.UINT8) before the output; {_CONTRACT}"
        raise BuildError(
            f"segmentation ONNX {path} output {out.name!r} has element type "
            f"{type_name(elem) if elem else 'unknown'}; a class map is uint8",
            fix,
        )
    if (dims[1], dims[2]) != (height, width):
        raise BuildError(
            f"segmentation ONNX {path} output {out.name!r} has shape {shape_text(dims)}; a class "
            f"map is at the input size {height}x{width}",
            "upsample the logits to the input size (bilinear) before the ArgMax, or give the "
            f"spec the model's input size; {_CONTRACT}",
        )
    return height, width


def head_float_nodes(model: onnx.ModelProto, outputs: Sequence[str]) -> tuple[str, ...]:
    """The segmentation head's final weighted layers and every node after them.

    The walk back from the output to the first Conv / Gemm / MatMul with constant weights on
    every path (`edgevision.tasks.onnx_head.head_float_nodes`). On LR-ASPP that is
    its two 1x1 classifier convs (``low_classifier`` on the stride-8 features and
    ``high_classifier`` on the upsampled, sigmoid-gated branch) and the Add joining them, and
    for a class map also the final Resize, ArgMax and Cast; the gate itself (pool, 1x1 conv,
    Sigmoid, Mul) and the branch's Resize come before ``high_classifier`` and are not part of
    it.
    """
    return onnx_head.head_float_nodes(model, outputs)


__all__ = ["SegmenterIO", "check_segmenter_onnx", "head_float_nodes"]
