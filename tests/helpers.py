"""Small models and bundles for tests, built in temporary folders (no torch needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgevision.bundle import write_bundle
from edgevision.spec import ModelSpec


def tiny_classifier_onnx(
    path: Path, num_classes: int = 3, size: tuple[int, int] = (32, 48), seed: int = 0
) -> Path:
    """Conv → Relu → GlobalAveragePool → Flatten → Gemm, dynamic batch, opset 17."""
    rng = np.random.default_rng(seed)
    h, w = size
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(rng.normal(0, 0.1, (8,)).astype(np.float32), "conv_b"),
        numpy_helper.from_array(rng.normal(0, 0.5, (num_classes, 8)).astype(np.float32), "fc_w"),
        numpy_helper.from_array(np.zeros(num_classes, np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "conv_w", "conv_b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], transB=1),
    ]
    return save_classifier(path, "tiny", nodes, inits, (h, w), num_classes)


def save_classifier(
    path: Path, name: str, nodes: list, inits: list, size: tuple[int, int], num_classes: int
) -> Path:
    """Check and save a graph ``input`` [batch, 3, H, W] → ``logits`` [batch, classes], opset 17."""
    h, w = size
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, h, w])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", num_classes])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def tiny_bundle(root: Path, labels: tuple[str, ...] = ("a", "b", "c")) -> Path:
    """A bundle with an fp32 artifact only (the tiny classifier), hashed and verified."""
    spec = ModelSpec(labels=labels, input_size=(32, 48))
    onnx_path = tiny_classifier_onnx(root / "tiny.onnx", num_classes=len(labels))
    return write_bundle(
        root / "bundle",
        {"model.fp32.onnx": onnx_path},
        spec,
        {"fp32": {"file": "model.fp32.onnx", "precision": "fp32", "target": "any"}},
    )


def free_port() -> int:
    """A TCP port nobody listens on now (for a test's torch.distributed rendezvous)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_torchrun_env(rank: int, world: int, port: int) -> None:
    """What torchrun sets for each process, for a rank started by ``mp.spawn``."""
    import os

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE=str(world),
    )
