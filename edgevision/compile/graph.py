"""A read-only index of an ONNX model's main graph: constants, producers, consumers.

The Q/DQ checks (`trt_check`) and the kernel rewrites (`cpu_tuning`) walk the same graph
shapes; they share this index. Build it again after editing the model.
"""

from __future__ import annotations

from collections import defaultdict
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
        for node in model.graph.node:
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


def int_attr(node: Any, name: str, default: int) -> int:
    """An integer attribute of ``node``, or ``default`` when it is absent."""
    return next((a.i for a in node.attribute if a.name == name), default)
