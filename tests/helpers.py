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


def square_detector_onnx(path: Path, height: int, width: int) -> Path:
    """A real (torch-free) detector for runtime tests: it finds the bright square.

    ``input`` [N, 3, H, W] (pixels / 255) → the bright pixels' centroid and area → ``boxes``
    [N, 1, 4] (a square of that area round the centroid) and ``scores`` [N, 1, 1] (0.9 when
    any pixel is bright, else 0). One candidate, one class.
    """
    xs = (np.arange(width, dtype=np.float32) + 0.5)[None, None, None, :]
    ys = (np.arange(height, dtype=np.float32) + 0.5)[None, None, :, None]
    consts = {
        "xgrid": np.broadcast_to(xs, (1, 1, height, width)).copy(),
        "ygrid": np.broadcast_to(ys, (1, 1, height, width)).copy(),
        "half_t": np.float32(0.5),
        "one": np.float32(1.0),
        "two": np.float32(2.0),
        "score": np.float32(0.9),
        "axes_hw": np.array([2, 3], np.int64),
        "ax1": np.array([1], np.int64),
        "ax2": np.array([2], np.int64),
    }
    n = helper.make_node
    nodes = [
        n("ReduceMean", ["input"], ["grey"], axes=[1], keepdims=1),
        n("Greater", ["grey", "half_t"], ["bright"]),
        n("Cast", ["bright"], ["mask"], to=TensorProto.FLOAT),
        n("ReduceSum", ["mask", "axes_hw"], ["area"], keepdims=0),  # [N, 1]
        n("Mul", ["mask", "xgrid"], ["mx"]),
        n("Mul", ["mask", "ygrid"], ["my"]),
        n("ReduceSum", ["mx", "axes_hw"], ["sx"], keepdims=0),
        n("ReduceSum", ["my", "axes_hw"], ["sy"], keepdims=0),
        n("Max", ["area", "one"], ["denom"]),
        n("Div", ["sx", "denom"], ["cx"]),
        n("Div", ["sy", "denom"], ["cy"]),
        n("Sqrt", ["area"], ["side"]),
        n("Div", ["side", "two"], ["half"]),
        n("Sub", ["cx", "half"], ["x0"]),
        n("Sub", ["cy", "half"], ["y0"]),
        n("Add", ["cx", "half"], ["x1"]),
        n("Add", ["cy", "half"], ["y1"]),
        n("Concat", ["x0", "y0", "x1", "y1"], ["box"], axis=1),  # [N, 4]
        n("Unsqueeze", ["box", "ax1"], ["boxes"]),  # [N, 1, 4]
        n("Min", ["area", "one"], ["present"]),  # [N, 1]: 1 with any bright pixel
        n("Mul", ["present", "score"], ["s"]),
        n("Unsqueeze", ["s", "ax2"], ["scores"]),  # [N, 1, 1]
    ]
    graph = helper.make_graph(
        nodes,
        "square_detector",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, height, width])],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", 1, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 1, 1]),
        ],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def detection_bundle(root: Path, size: tuple[int, int] = (64, 96)) -> Path:
    """A detection bundle (fp32 only) of `square_detector_onnx`: label "square", stretch."""
    spec = ModelSpec(
        labels=("square",),
        task="detection",
        input_size=size,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        detection={"candidates": 1},
    )
    root.mkdir(parents=True, exist_ok=True)
    onnx_path = square_detector_onnx(root / "square.onnx", *size)
    return write_bundle(
        root / "det-bundle",
        {"model.fp32.onnx": onnx_path},
        spec,
        {"fp32": {"file": "model.fp32.onnx", "precision": "fp32", "target": "any"}},
    )


def square_clip(
    path: Path,
    frames: int = 24,
    visible: range = range(2, 18),
    size: tuple[int, int] = (192, 128),
    fps: float = 15.0,
    step: int = 6,
    side: int = 24,
) -> Path:
    """An mp4 of a white square moving right by ``step`` px a frame, shown in ``visible``."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened()
    for i in range(frames):
        img = np.zeros((size[1], size[0], 3), np.uint8)
        if i in visible:
            x = 8 + step * i
            img[40 : 40 + side, x : x + side] = 255
        writer.write(img)
    writer.release()
    return path


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
