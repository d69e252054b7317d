"""A user's detector ONNX against the detection contract, and the head the build keeps in float.

Torch-free; ``onnx`` is imported inside the functions. The contract
(`edgevision.tasks.detect.spec`): one image input ``[batch, 3, H, W]`` (NCHW; ``[batch, H, W, 3]``
NHWC), H/W fixed or dynamic, the batch possibly dynamic; exactly two outputs, ``boxes``
``[batch, K, 4]`` and ``scores`` ``[batch, K, C]`` with ``K`` a fixed integer and ``C`` the
spec's label count; opset >= 13.

`check_detector_onnx` refuses anything else with a `BuildError` that names what it found and
states the contract. `head_float_nodes` finds the nodes the build keeps in float by default:
the head's final box-regression and score layers and everything after them (decode, sigmoid,
top-K), found by walking back from the outputs to the first weighted layers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgevision.errors import BuildError
from edgevision.tasks.detect.spec import BOXES, OUTPUTS, SCORES

if TYPE_CHECKING:
    import onnx

    from edgevision.spec import ModelSpec

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_FLOAT_TYPES = (1, 10, 11, 16)  # FLOAT, FLOAT16, DOUBLE, BFLOAT16 (TensorProto.DataType)
_CONTRACT = (
    f"a detector ONNX has one image input and exactly two outputs: {BOXES!r} {OUTPUTS[BOXES]} "
    f"and {SCORES!r} {OUTPUTS[SCORES]}, with K a fixed candidate count"
)


@dataclass(frozen=True)
class DetectorIO:
    """What `check_detector_onnx` read from a contract-conforming detector."""

    input_shape: tuple[int | None, ...]  # None: a dynamic dim
    candidates: int  # K
    classes: int  # C
    input_name: str
    notes: list[str] = field(default_factory=list)


Dim = int | str | None  # a fixed size, a named dynamic dim (dim_param), or an unnamed one


def _dims(value_info: Any) -> tuple[Dim, ...] | None:
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


def _text(dims: Sequence[Dim] | None) -> str:
    if dims is None:
        return "(no shape)"
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _fixed(d: Dim) -> bool:
    return isinstance(d, int)


def _inferred_outputs(
    model: onnx.ModelProto, input_name: str, spec: ModelSpec
) -> dict[str, tuple[Dim, ...] | None]:
    """The outputs' shapes by shape inference, dynamic input H/W fixed to the spec's size.

    Exporters often declare dims they could not work out as symbols (torch's TorchScript
    exporter names K ``GatherElementsboxes_dim_1`` after a TopK + GatherElements), so a
    symbol in the file is not yet a dynamic dim. ONNX Runtime's symbolic shape inference works
    the sizes out through Shape / Where / Expand; ONNX's own inference is the fallback.
    """
    import onnx

    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    inp = next(i for i in fixed.graph.input if i.name == input_name)
    want = spec.input_shape("batch")
    for d, w in zip(inp.type.tensor_type.shape.dim[1:], want[1:], strict=False):
        if not (d.HasField("dim_value") and d.dim_value > 0):
            d.dim_value = int(w)  # the build fixes dynamic H/W to the spec's size too
    for out in fixed.graph.output:
        out.type.tensor_type.ClearField("shape")
    found: dict[str, tuple[Dim, ...] | None] = {o.name: None for o in fixed.graph.output}
    for infer in (_ort_inference, _onnx_inference):
        try:
            inferred = infer(fixed)
        except Exception:  # a custom op or an odd graph: try the next, then keep the file's
            continue
        for out in inferred.graph.output:
            found[out.name] = _merge(found.get(out.name), _dims(out))
        if all(d is not None and all(_fixed(x) for x in d[1:]) for d in found.values()):
            break
    return found


def _ort_inference(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    return SymbolicShapeInference.infer_shapes(model, auto_merge=True)


def _onnx_inference(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnx

    return onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)


def _merge(a: tuple[Dim, ...] | None, b: tuple[Dim, ...] | None) -> tuple[Dim, ...] | None:
    """Two views of one shape: a fixed dim wins over a symbol, ``a`` over ``b``."""
    if a is None or b is None or len(a) != len(b):
        return a if a is not None else b
    return tuple(x if _fixed(x) or not _fixed(y) else y for x, y in zip(a, b, strict=True))


DATA_DEPENDENT_OPS = ("NonMaxSuppression", "NonZero", "Compress", "Unique")


def _data_dependent_ops(graph: Any) -> set[str]:
    """Ops whose output size depends on the data (NMS and friends), in subgraphs too."""
    found = set()
    for node in graph.node:
        if node.op_type in DATA_DEPENDENT_OPS or "NMS" in node.op_type:
            found.add(node.op_type)
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                found |= _data_dependent_ops(sub)
    return found


def check_detector_onnx(path: Path, spec: ModelSpec) -> DetectorIO:
    """Check a user's detector ONNX against the detection contract; raise `BuildError` if off.

    A fixed input height/width that differs from the spec raises `SpecError` (as for a
    classifier, `edgevision.compile.source.check_input_shape`).
    """
    from edgevision.compile.source import check_input_shape, load_user_onnx

    path = Path(path)
    fix = "export the detector again with torch.onnx.export (opset 17)"
    model = load_user_onnx(path, "detector ONNX", fix)
    graph = model.graph
    classes = len(spec.labels)
    input_name, in_dims = _check_input(path, graph, spec)
    boxes, scores = _check_output_names(path, graph, classes)
    bd, sd = _dims(boxes), _dims(scores)
    if any(d is None or not all(_fixed(x) for x in d[1:]) for d in (bd, sd)):
        inferred = _inferred_outputs(model, input_name, spec)
        bd, sd = _merge(bd, inferred.get(BOXES)), _merge(sd, inferred.get(SCORES))
    k = _check_outputs(path, bd, sd, classes, boxes, scores, _data_dependent_ops(graph))
    _check_batch(path, input_name, in_dims, {BOXES: bd, SCORES: sd})

    shape = tuple(d if _fixed(d) else None for d in in_dims)
    check_input_shape(path, shape, spec)
    notes = []
    want = spec.detection.candidates if spec.detection is not None else None
    if want is not None and k != want:
        notes.append(
            f"{path.name} keeps K={k} candidates per image; the spec's detection.candidates is "
            f"{want}: the runtime reads the {k} the model gives"
        )
    if any(d is None for d in shape[1:]):
        notes.append(
            f"ONNX input of {path.name} has dynamic dims {_text(in_dims)}: fixed to the spec's "
            f"{_text(spec.input_shape('batch'))} (input_size {spec.input_size[0]}x"
            f"{spec.input_size[1]}), the size calibration and the runtime use"
        )
    return DetectorIO(shape, k, classes, input_name, notes)


def _check_input(path: Path, graph: Any, spec: ModelSpec) -> tuple[str, tuple[Dim, ...]]:
    inits = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    layout = "[batch, 3, H, W]" if spec.layout == "NCHW" else "[batch, H, W, 3]"
    if len(inputs) != 1:
        names = ", ".join(f"{i.name!r} {_text(_dims(i))}" for i in inputs) or "none"
        raise BuildError(
            f"detector ONNX {path} has {len(inputs)} inputs ({names}); it needs one image input",
            f"export the detector with a single {spec.layout} image input {layout}: {_CONTRACT}",
        )
    inp = inputs[0]
    dims = _dims(inp)
    channel = 1 if spec.layout == "NCHW" else 3
    if dims is None or len(dims) != 4 or (_fixed(dims[channel]) and dims[channel] != 3):
        raise BuildError(
            f"detector ONNX {path} input {inp.name!r} has shape {_text(dims)}; the spec's "
            f"{spec.layout} layout wants an image {layout}",
            f"export the detector with a single {spec.layout} image input {layout}, or fix "
            "the spec's layout",
        )
    elem = inp.type.tensor_type.elem_type
    if elem and elem not in _FLOAT_TYPES:
        raise BuildError(
            f"detector ONNX {path} input {inp.name!r} has element type {_type_name(elem)}; "
            "the build feeds normalised float pixels",
            f"export the detector with a float32 image input {layout} (mean/std from the spec)",
        )
    return inp.name, dims


def _type_name(elem: int) -> str:
    import onnx

    try:
        return onnx.TensorProto.DataType.Name(elem)
    except ValueError:
        return str(elem)


def _check_output_names(path: Path, graph: Any, classes: int) -> tuple[Any, Any]:
    outs = list(graph.output)
    by_name = {o.name: o for o in outs}
    if len(outs) == 2 and set(by_name) == {BOXES, SCORES}:
        return by_name[BOXES], by_name[SCORES]
    found = ", ".join(f"{o.name!r} {_text(_dims(o))}" for o in outs) or "none"
    fix = _CONTRACT
    if len(outs) == 1:
        dims = _dims(outs[0])
        what = f"detector ONNX {path} has 1 output ({found}); the contract has two"
        if dims is not None and len(dims) == 3 and 4 not in dims[1:]:  # not boxes alone
            what += ": it looks like a YOLO-style [batch, N, 4+C] head"
            wide = {4 + classes: "4 + C", 5 + classes: "4 + objectness + C"}
            what += "".join(
                f" (its dim {i}, {d}, is {wide[d]} for the spec's C={classes})"
                for i, d in list(enumerate(dims))[1:]
                if d in wide
            )
            fix = (
                f"split it into {BOXES!r} [batch, K, 4] (x0, y0, x1, y1 in input pixels) and "
                f"{SCORES!r} [batch, K, {classes}] with the sigmoid applied (transpose a "
                "[batch, 4+C, N] output first), e.g. by exporting a small torch wrapper around "
                f"the model that slices, decodes and applies the sigmoid; {_CONTRACT}"
            )
    elif len(outs) == 2:
        what = f"detector ONNX {path} has 2 outputs named {found}, not {BOXES!r} and {SCORES!r}"
        fix = f"rename the outputs (torch.onnx.export output_names=[...]): {_CONTRACT}"
        guess = _guess_names(outs, classes)
        if guess:
            fix = f"rename {guess} (torch.onnx.export output_names=[...]): {_CONTRACT}"
    else:
        what = f"detector ONNX {path} has {len(outs)} outputs ({found}); the contract has two"
        if {BOXES, SCORES} <= set(by_name):
            fix = f"export only {BOXES!r} and {SCORES!r}: {_CONTRACT}"
        else:
            fix = (
                f"{_CONTRACT}; a graph with NMS in it (a detection count and padded results) "
                "must be exported without the NMS, giving the top-K candidates before it"
            )
    raise BuildError(what, fix)


def _guess_names(outs: list[Any], classes: int) -> str:
    """``'a' → 'boxes' and 'b' → 'scores'`` when the shapes make the mapping plain."""
    last = [(_dims(o) or (None,))[-1] for o in outs]
    if last[0] == 4 and last[1] == classes != 4:
        return f"{outs[0].name!r} → {BOXES!r} and {outs[1].name!r} → {SCORES!r}"
    if last[1] == 4 and last[0] == classes != 4:
        return f"{outs[1].name!r} → {BOXES!r} and {outs[0].name!r} → {SCORES!r}"
    return ""


def _check_outputs(
    path: Path,
    bd: tuple[Dim, ...] | None,
    sd: tuple[Dim, ...] | None,
    classes: int,
    boxes: Any,
    scores: Any,
    data_dependent: set[str],
) -> int:
    """K from the outputs' dims ``bd``/``sd`` (declared, completed by shape inference)."""
    for out, dims, want in ((boxes, bd, "4"), (scores, sd, str(classes))):
        if dims is None or len(dims) != 3:
            found = "no known shape" if dims is None else f"rank {len(dims)} {_text(dims)}"
            raise BuildError(
                f"detector ONNX {path} output {out.name!r} has {found}; "
                f"expected [batch, K, {want}]",
                _CONTRACT,
            )
        elem = out.type.tensor_type.elem_type
        if elem and elem not in _FLOAT_TYPES:
            raise BuildError(
                f"detector ONNX {path} output {out.name!r} has element type {_type_name(elem)}",
                f"export {out.name!r} as float: {_CONTRACT}",
            )
    assert bd is not None and sd is not None
    if bd[2] != 4:
        raise BuildError(
            f"detector ONNX {path} output {BOXES!r} has shape {_text(bd)}; its last dim must be "
            "4 (x0, y0, x1, y1)",
            _CONTRACT,
        )
    if sd[2] != classes:
        found = f"{sd[2]} classes" if _fixed(sd[2]) else "a class count that is not fixed"
        raise BuildError(
            f"detector ONNX {path} output {SCORES!r} has shape {_text(sd)}: {found}, but "
            f"the spec has {classes} labels",
            "give the spec written for this model (one label per score column), or re-export; "
            f"{_CONTRACT}",
        )
    for out, dims in ((boxes, bd), (scores, sd)):
        if not _fixed(dims[1]):
            why = (
                f"the graph has {', '.join(sorted(data_dependent))}: NMS or a filter inside "
                "makes the count depend on the image"
                if data_dependent
                else "shape inference cannot fix it either"
            )
            raise BuildError(
                f"detector ONNX {path} output {out.name!r} has shape {_text(dims)}: the candidate "
                f"count K ({'?' if dims[1] is None else dims[1]}) is dynamic ({why})",
                "the candidate count must be a fixed integer: export the top-K candidates "
                "before NMS (TopK + GatherElements, no score threshold) and leave NMS to the "
                "runtime",
            )
    if bd[1] != sd[1]:
        raise BuildError(
            f"detector ONNX {path} outputs disagree on K: {BOXES!r} {_text(bd)}, "
            f"{SCORES!r} {_text(sd)}",
            f"give one score row per box: {_CONTRACT}",
        )
    return int(bd[1])


def _check_batch(
    path: Path, input_name: str, in_dims: tuple[Dim, ...], outs: dict[str, tuple[Dim, ...]]
) -> None:
    """The batch dims agree: no two fixed and different, no fixed output of a dynamic input."""
    batch = in_dims[0]
    for name, dims in outs.items():
        b = dims[0]
        if (_fixed(batch) and _fixed(b) and b != batch) or (not _fixed(batch) and _fixed(b)):
            raise BuildError(
                f"detector ONNX {path} input {input_name!r} has batch {_text([batch])[1:-1]} but "
                f"output {name!r} has batch {_text([b])[1:-1]} ({_text(dims)})",
                "export the outputs with the input's batch dim (dynamic_axes={'input': {0: "
                "'batch'}, 'boxes': {0: 'batch'}, 'scores': {0: 'batch'}}, or all fixed)",
            )


# --- the head the build keeps in float -------------------------------------------------------


def _constants(model: onnx.ModelProto) -> set[str]:
    """Tensors fixed at build time: initializers, Constant outputs, and ops of only those."""
    graph = model.graph
    const = {i.name for i in graph.initializer}
    for node in graph.node:  # graph order is topological
        if node.op_type == "Constant" or (
            node.input and all(not x or x in const for x in node.input)
        ):
            const.update(x for x in node.output if x)
    return const


def _is_weighted(node: Any, const: set[str]) -> bool:
    return node.op_type in WEIGHTED_OPS and len(node.input) > 1 and node.input[1] in const


def head_float_nodes(
    model: onnx.ModelProto, outputs: Sequence[str] = (BOXES, SCORES)
) -> tuple[str, ...]:
    """Names of the nodes from the last weighted layers to ``outputs``, in graph order.

    Walks back from each output tensor through its producers and takes every node it reaches,
    stopping at (and taking) a weighted layer: a Conv / ConvTranspose / Gemm / MatMul whose
    weight (``input[1]``) is an initializer or a Constant (or computed from those alone, e.g. a
    transposed initializer). Graph inputs and initializers end the walk. On a detector that is
    the head's final box-regression and score layers and everything after them. An output
    computed with no weighted layer on its way gives the nodes back to the graph input.
    """
    graph = model.graph
    producer: dict[str, Any] = {}
    for node in graph.node:
        for x in node.output:
            if x:
                producer[x] = node
    known = producer.keys() | {i.name for i in graph.input} | {i.name for i in graph.initializer}
    missing = [o for o in outputs if o not in known]
    if missing:
        raise ValueError(f"tensor(s) {missing} are not in the graph")
    const = _constants(model)
    reached: set[int] = set()  # id() of reached nodes
    seen: set[str] = set()
    stack = list(outputs)
    while stack:
        tensor = stack.pop()
        if not tensor or tensor in seen:
            continue
        seen.add(tensor)
        node = producer.get(tensor)
        if node is None or id(node) in reached:
            continue
        reached.add(id(node))
        if not _is_weighted(node, const):
            stack.extend(node.input)
            stack.extend(_outer_inputs(node))  # what an If / Loop body reads from outside
    nodes = [n for n in graph.node if id(n) in reached]
    unnamed = [n.op_type for n in nodes if not n.name]
    if unnamed:
        raise ValueError(
            f"{len(unnamed)} head node(s) have no name ({', '.join(sorted(set(unnamed)))}): "
            "name the graph's nodes before choosing the ones kept in float"
        )
    counts = Counter(n.name for n in graph.node)
    dup = sorted({n.name for n in nodes if counts[n.name] > 1})
    if dup:
        raise ValueError(f"node name(s) {dup} are used more than once in the graph")
    return tuple(n.name for n in nodes)


def _outer_inputs(node: Any) -> set[str]:
    """Tensors a node's subgraphs (If branches, Loop/Scan bodies) take from the outer scope."""
    found: set[str] = set()
    for attr in node.attribute:
        for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
            local = {i.name for i in sub.input} | {i.name for i in sub.initializer}
            for inner in sub.node:
                found |= {x for x in inner.input if x and x not in local}
                found |= {x for x in _outer_inputs(inner) if x not in local}
                local.update(inner.output)
    return found


def describe_head(model: onnx.ModelProto, names: Sequence[str]) -> dict[str, Any]:
    """For the build report: the weighted final layers, how many nodes follow, their op types."""
    const = _constants(model)
    wanted = set(names)
    nodes = [n for n in model.graph.node if n.name in wanted]
    final = [n.name for n in nodes if _is_weighted(n, const)]
    ops = Counter(n.op_type for n in nodes)
    return {
        "final_layers": final,
        "after": len(nodes) - len(final),
        "op_types": dict(sorted(ops.items())),
    }
