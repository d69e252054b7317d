"""A read-only index of an ONNX model's main graph: constants, producers, consumers.

The Q/DQ checks (`trt_check`), the layer analysis (`sensitivity`), the float-layer rewrite
(`quantize`), the weight rounding (`rounding`) and the kernel rewrites (`cpu_tuning`) walk the
same graph shapes; they share this index and its walks. Build it again after editing the model.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Container
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import onnx


class GraphIndex:
    """Constants (initializers and Constant nodes, as arrays), producers and consumers."""

    def __init__(self, model: onnx.ModelProto) -> None:
        from onnx import numpy_helper

        self.model = model
        self.consts: dict[str, np.ndarray] = {
            i.name: numpy_helper.to_array(i) for i in model.graph.initializer
        }
        self.producer: dict[str, Any] = {}
        self.consumers: dict[str, list[tuple[Any, int]]] = defaultdict(list)
        self.order: dict[str, int] = {}  # node name -> position in the graph
        for position, node in enumerate(model.graph.node):
            self.order[node.name] = position
            if node.op_type == "Constant":
                value = next((a.t for a in node.attribute if a.name == "value"), None)
                if value is not None:
                    self.consts[node.output[0]] = numpy_helper.to_array(value)
            for out in node.output:
                self.producer[out] = node
            for idx, name in enumerate(node.input):
                self.consumers[name].append((node, idx))

    def const(self, node: Any, index: int) -> np.ndarray | None:
        """Input ``index`` of ``node`` when it is a constant, else None."""
        if index >= len(node.input) or not node.input[index]:
            return None
        return self.consts.get(node.input[index])

    def only_reader(self, name: str, op_type: str) -> Any | None:
        """The one node reading ``name`` (as its first input) when it is an ``op_type``."""
        uses = self.consumers.get(name, [])
        if len(uses) == 1 and uses[0][0].op_type == op_type and uses[0][1] == 0:
            return uses[0][0]
        return None

    def readers(self, name: str) -> list[Any]:
        """The nodes reading ``name``, in graph order (a node reading it twice, twice)."""
        return [node for node, _ in self.consumers.get(name, [])]

    def dequantized_readers(self, quantize: Any) -> list[tuple[Any, int]]:
        """What reads the tensor a QuantizeLinear quantizes, through its DequantizeLinear(s):
        (node, input index) pairs, the walk Q -> DQ -> readers."""
        return [
            use
            for dq, _ in self.consumers.get(quantize.output[0], [])
            if dq.op_type == "DequantizeLinear"
            for use in self.consumers.get(dq.output[0], [])
        ]

    def folded_chain(self, tensor: str, present: Container[str]) -> tuple[list[Any], Any | None]:
        """Walk back from the producer of ``tensor`` in this (FP32) graph to the first node
        whose name is in ``present`` (the node names of a model quantized from it).

        Returns the nodes passed on the way, last first (the activations ORT folded into the
        quantization of their producer's output, absent from the quantized model), and the
        node reached (None: none).
        """
        chain, node = [], self.producer.get(tensor)
        while node is not None and node.name not in present:
            chain.append(node)
            node = self.producer.get(node.input[0]) if node.input else None
        return chain, node


def int_attr(node: Any, name: str, default: int) -> int:
    """An integer attribute of ``node``, or ``default`` when it is absent."""
    return next((a.i for a in node.attribute if a.name == name), default)
