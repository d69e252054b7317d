"""The head a build keeps in float: the walk back from a graph's outputs to its last weighted
layers, and the report's record of it.

Torch-free; ``onnx`` is imported inside `head_in_float`. Every task whose build offers
``--float-head`` (detection, segmentation) walks its prepared model the same way:
`head_float_nodes` finds the final weighted layers and everything after them, `describe_head`
describes them for the report and `head_in_float` is the build hooks' default float nodes
(``mode`` ``"head"``: those nodes; ``"tail"``: only the nodes after the final layers).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import onnx

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


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


def head_float_nodes(model: onnx.ModelProto, outputs: Sequence[str]) -> tuple[str, ...]:
    """Names of the nodes from the last weighted layers to ``outputs``, in graph order.

    Walks back from each output tensor through its producers and takes every node it reaches,
    stopping at (and taking) a weighted layer: a Conv / ConvTranspose / Gemm / MatMul whose
    weight (``input[1]``) is an initializer or a Constant (or computed from those alone, e.g. a
    transposed initializer). Graph inputs and initializers end the walk. On a detector that is
    the head's final box-regression and score layers and everything after them, on a segmenter
    its final classifier convs and what follows them. An output computed with no weighted layer
    on its way gives the nodes back to the graph input.
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


def head_in_float(
    prep: str | Path, outputs: Sequence[str], mode: str, why: Mapping[str, str]
) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The head's nodes in the prepared model ``prep`` (walked back from ``outputs``) and their
    report record; ``mode`` ``"tail"`` leaves the final weighted layers out, ``why[mode]`` is
    the record's reason."""
    import onnx

    model = onnx.load(str(prep), load_external_data=False)
    nodes = head_float_nodes(model, outputs)
    record = describe_head(model, nodes)
    if mode == "tail":
        final = set(record["final_layers"])
        nodes = tuple(n for n in nodes if n not in final)
    return nodes, record | {"mode": mode, "nodes": list(nodes), "why": why[mode]}


__all__ = ["WEIGHTED_OPS", "describe_head", "head_float_nodes", "head_in_float"]
