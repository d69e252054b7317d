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

# The shape helpers are the detection contract's: one reading of ONNX dims for every task.
from edgevision.tasks.detect.onnx_contract import (
    _FLOAT_TYPES,
    Dim,
    _dims,
    _fixed,
    _inferred_outputs,
    _merge,
    _text,
    _type_name,
)
from edgevision.tasks.detect.onnx_contract import head_float_nodes as _head_walk
from edgevision.tasks.segment.spec import CLASSES, LOGITS, OUTPUT_KINDS

if TYPE_CHECKING:
    import onnx

    from edgevision.spec import ModelSpec

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
    model = load_user_onnx(path, "segmentation ONNX", fix)
    graph = model.graph
    classes = len(spec.labels)
    input_name, in_dims = _check_input(path, graph, spec)
    out = _check_output_name(path, graph, options.output, classes)
    dims = _dims(out)
    if dims is None or not all(_fixed(x) for x in dims[1:]):
        inferred = _inferred_outputs(model, input_name, spec).get(out.name)
        dims = _merge(dims, inferred)
    height, width = spec.input_size
    if options.output == "logits":
        size = _check_logits(path, out, dims, classes, (height, width))
    else:
        size = _check_classes(path, out, dims, classes, (height, width))
    assert dims is not None
    _check_batch(path, input_name, in_dims, out.name, dims)
    shape = tuple(d if _fixed(d) else None for d in in_dims)
    check_input_shape(path, shape, spec)
    stride = (height // size[0], width // size[1])
    return SegmenterIO(shape, classes, options.output, out.name, size, stride, input_name)


def _check_input(path: Path, graph: Any, spec: ModelSpec) -> tuple[str, tuple[Dim, ...]]:
    inits = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    layout = "[batch, 3, H, W]" if spec.layout == "NCHW" else "[batch, H, W, 3]"
    if len(inputs) != 1:
        names = ", ".join(f"{i.name!r} {_text(_dims(i))}" for i in inputs) or "none"
        raise BuildError(
            f"segmentation ONNX {path} has {len(inputs)} inputs ({names}); it needs one image "
            "input",
            f"export the segmenter with a single {spec.layout} image input {layout}: {_CONTRACT}",
        )
    inp = inputs[0]
    dims = _dims(inp)
    channel = 1 if spec.layout == "NCHW" else 3
    if dims is None or len(dims) != 4 or (_fixed(dims[channel]) and dims[channel] != 3):
        raise BuildError(
            f"segmentation ONNX {path} input {inp.name!r} has shape {_text(dims)}; the spec's "
            f"{spec.layout} layout wants an image {layout}",
            f"export the segmenter with a single {spec.layout} image input {layout}, or fix "
            "the spec's layout",
        )
    elem = inp.type.tensor_type.elem_type
    if elem and elem not in _FLOAT_TYPES:
        raise BuildError(
            f"segmentation ONNX {path} input {inp.name!r} has element type "
            f"{_type_name(elem)}; the build feeds normalised float pixels",
            f"export the segmenter with a float32 image input {layout} (mean/std from the spec)",
        )
    return inp.name, dims


def _describe(outs: Sequence[Any]) -> str:
    return (
        ", ".join(
            f"{o.name!r} {_text(_dims(o))} {_type_name(o.type.tensor_type.elem_type)}" for o in outs
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
    dims = _dims(out)
    elem = out.type.tensor_type.elem_type
    if dims is not None and len(dims) == 4 and dims[1] == classes and elem in _FLOAT_TYPES:
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
        found = "no known shape" if dims is None else f"rank {len(dims)} {_text(dims)}"
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
    if elem and elem not in _FLOAT_TYPES:
        raise BuildError(
            f"segmentation ONNX {path} output {out.name!r} has element type {_type_name(elem)}; "
            "logits are float",
            f"export the logits before any ArgMax, or name a class map 'classes' and set "
            f'"segmentation": {{"output": "classmap"}}; {_CONTRACT}',
        )
    if dims[1] != classes:
        found = f"{dims[1]} classes" if _fixed(dims[1]) else "a class count that is not fixed"
        raise BuildError(
            f"segmentation ONNX {path} output {out.name!r} has shape {_text(dims)}: {found} "
            f"on axis 1, but the spec has {classes} labels",
            "give the spec written for this model (one label per logit channel, class id "
            f"order), or re-export; {_CONTRACT}",
        )
    h, w = dims[2], dims[3]
    height, width = size
    if not (_fixed(h) and _fixed(w)):
        raise BuildError(
            f"segmentation ONNX {path} output {out.name!r} has shape {_text(dims)}: its h, w "
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
        found = "no known shape" if dims is None else f"rank {len(dims)} {_text(dims)}"
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
            f"{_type_name(elem) if elem else 'unknown'}; a class map is uint8",
            fix,
        )
    if (dims[1], dims[2]) != (height, width):
        raise BuildError(
            f"segmentation ONNX {path} output {out.name!r} has shape {_text(dims)}; a class "
            f"map is at the input size {height}x{width}",
            "upsample the logits to the input size (bilinear) before the ArgMax, or give the "
            f"spec the model's input size; {_CONTRACT}",
        )
    return height, width


def _check_batch(
    path: Path, input_name: str, in_dims: tuple[Dim, ...], name: str, dims: tuple[Dim, ...]
) -> None:
    """The batch dims agree: not both fixed and different, no fixed output of a dynamic input."""
    batch, b = in_dims[0], dims[0]
    if (_fixed(batch) and _fixed(b) and b != batch) or (not _fixed(batch) and _fixed(b)):
        raise BuildError(
            f"segmentation ONNX {path} input {input_name!r} has batch {_text([batch])[1:-1]} "
            f"but output {name!r} has batch {_text([b])[1:-1]} ({_text(dims)})",
            "export the output with the input's batch dim (dynamic_axes={'input': {0: "
            f"'batch'}}, {name!r}: {{0: 'batch'}}}}, or all fixed)",
        )


def head_float_nodes(model: onnx.ModelProto, outputs: Sequence[str]) -> tuple[str, ...]:
    """The segmentation head's final weighted layers and every node after them.

    The walk back from the output to the first Conv / Gemm / MatMul with constant weights on
    every path (`edgevision.tasks.detect.onnx_contract.head_float_nodes`). On LR-ASPP that is
    its two 1x1 classifier convs (``low_classifier`` on the stride-8 features and
    ``high_classifier`` on the upsampled, sigmoid-gated branch) and the Add joining them, and
    for a class map also the final Resize, ArgMax and Cast; the gate itself (pool, 1x1 conv,
    Sigmoid, Mul) and the branch's Resize come before ``high_classifier`` and are not part of
    it.
    """
    return _head_walk(model, outputs)


__all__ = ["SegmenterIO", "check_segmenter_onnx", "head_float_nodes"]
