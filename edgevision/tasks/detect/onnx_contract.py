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

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgevision.errors import BuildError
from edgevision.tasks import onnx_head
from edgevision.tasks.detect.spec import BOXES, OUTPUTS, SCORES
from edgevision.tasks.onnx_head import WEIGHTED_OPS, describe_head
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

if TYPE_CHECKING:
    import onnx

    from edgevision.spec import ModelSpec

_WHAT = "detector ONNX"
_CONTRACT = (
    f"a detector ONNX has one image input and exactly two outputs: {BOXES!r} {OUTPUTS[BOXES]} "
    f"and {SCORES!r} {OUTPUTS[SCORES]}, with K a fixed candidate count"
)
_BATCH_FIX = (
    "export the outputs with the input's batch dim (dynamic_axes={'input': {0: 'batch'}, "
    "'boxes': {0: 'batch'}, 'scores': {0: 'batch'}}, or all fixed)"
)


@dataclass(frozen=True)
class DetectorIO:
    """What `check_detector_onnx` read from a contract-conforming detector."""

    input_shape: tuple[int | None, ...]  # None: a dynamic dim
    candidates: int  # K
    classes: int  # C
    input_name: str
    notes: list[str] = field(default_factory=list)


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
    model = load_user_onnx(path, _WHAT, fix)
    graph = model.graph
    classes = len(spec.labels)
    input_name, in_dims = check_image_input(path, graph, spec, _WHAT, "detector", _CONTRACT)
    boxes, scores = _check_output_names(path, graph, classes)
    bd, sd = dims_of(boxes), dims_of(scores)
    if any(d is None or not all(is_fixed(x) for x in d[1:]) for d in (bd, sd)):
        inferred = inferred_outputs(model, input_name, spec)
        bd, sd = merge_dims(bd, inferred.get(BOXES)), merge_dims(sd, inferred.get(SCORES))
    k = _check_outputs(path, bd, sd, classes, boxes, scores, _data_dependent_ops(graph))
    check_batch(path, _WHAT, input_name, in_dims, {BOXES: bd, SCORES: sd}, _BATCH_FIX)

    shape = tuple(d if is_fixed(d) else None for d in in_dims)
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
            f"ONNX input of {path.name} has dynamic dims {shape_text(in_dims)}: fixed to the "
            f"spec's {shape_text(spec.input_shape('batch'))} (input_size {spec.input_size[0]}x"
            f"{spec.input_size[1]}), the size calibration and the runtime use"
        )
    return DetectorIO(shape, k, classes, input_name, notes)


def _check_output_names(path: Path, graph: Any, classes: int) -> tuple[Any, Any]:
    outs = list(graph.output)
    by_name = {o.name: o for o in outs}
    if len(outs) == 2 and set(by_name) == {BOXES, SCORES}:
        return by_name[BOXES], by_name[SCORES]
    found = ", ".join(f"{o.name!r} {shape_text(dims_of(o))}" for o in outs) or "none"
    fix = _CONTRACT
    if len(outs) == 1:
        dims = dims_of(outs[0])
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
    last = [(dims_of(o) or (None,))[-1] for o in outs]
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
            found = "no known shape" if dims is None else f"rank {len(dims)} {shape_text(dims)}"
            raise BuildError(
                f"detector ONNX {path} output {out.name!r} has {found}; "
                f"expected [batch, K, {want}]",
                _CONTRACT,
            )
        elem = out.type.tensor_type.elem_type
        if elem and elem not in FLOAT_TYPES:
            raise BuildError(
                f"detector ONNX {path} output {out.name!r} has element type {type_name(elem)}",
                f"export {out.name!r} as float: {_CONTRACT}",
            )
    assert bd is not None and sd is not None
    if bd[2] != 4:
        raise BuildError(
            f"detector ONNX {path} output {BOXES!r} has shape {shape_text(bd)}; its last dim "
            "must be 4 (x0, y0, x1, y1)",
            _CONTRACT,
        )
    if sd[2] != classes:
        found = f"{sd[2]} classes" if is_fixed(sd[2]) else "a class count that is not fixed"
        raise BuildError(
            f"detector ONNX {path} output {SCORES!r} has shape {shape_text(sd)}: {found}, but "
            f"the spec has {classes} labels",
            "give the spec written for this model (one label per score column), or re-export; "
            f"{_CONTRACT}",
        )
    for out, dims in ((boxes, bd), (scores, sd)):
        if not is_fixed(dims[1]):
            why = (
                f"the graph has {', '.join(sorted(data_dependent))}: NMS or a filter inside "
                "makes the count depend on the image"
                if data_dependent
                else "shape inference cannot fix it either"
            )
            raise BuildError(
                f"detector ONNX {path} output {out.name!r} has shape {shape_text(dims)}: the "
                f"candidate count K ({'?' if dims[1] is None else dims[1]}) is dynamic ({why})",
                "the candidate count must be a fixed integer: export the top-K candidates "
                "before NMS (TopK + GatherElements, no score threshold) and leave NMS to the "
                "runtime",
            )
    if bd[1] != sd[1]:
        raise BuildError(
            f"detector ONNX {path} outputs disagree on K: {BOXES!r} {shape_text(bd)}, "
            f"{SCORES!r} {shape_text(sd)}",
            f"give one score row per box: {_CONTRACT}",
        )
    return int(bd[1])


# --- the head the build keeps in float -------------------------------------------------------


def head_float_nodes(
    model: onnx.ModelProto, outputs: Sequence[str] = (BOXES, SCORES)
) -> tuple[str, ...]:
    """Names of the nodes from the last weighted layers to ``outputs``, in graph order
    (`edgevision.tasks.onnx_head.head_float_nodes`): on a detector, the head's final
    box-regression and score layers and everything after them (decode, sigmoid, top-K)."""
    return onnx_head.head_float_nodes(model, outputs)


__all__ = [
    "WEIGHTED_OPS",
    "DetectorIO",
    "check_detector_onnx",
    "describe_head",
    "head_float_nodes",
]
