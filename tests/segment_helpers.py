"""A small torch-free segmenter and a synthetic mask dataset for the segmentation build tests.

`square_segmenter_onnx` really segments: bright squares (class 1) on a dark background
(class 0), through three strided convs and a 1x1 classifier (stride 8 logits, as LR-ASPP's), or
with the upsampling, ArgMax and Cast in the graph (``output="classmap"``).
`write_square_dataset` writes the images and masks it segments, in the dataset layout the
segmentation task reads (``images/`` + ``masks/`` + ``classes.txt``, optionally per split).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgevision.spec import ModelSpec

LABELS = ("background", "square")
IGNORE = 255


def segmentation_spec(
    size: tuple[int, int] = (64, 96),
    labels: Sequence[str] = LABELS,
    output: str = "logits",
    resize: str = "stretch",
) -> ModelSpec:
    """The spec of `square_segmenter_onnx`: pixels / 255, no mean/std, RGB."""
    return ModelSpec(
        labels=tuple(labels),
        task="segmentation",
        input_size=size,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        resize=resize,
        segmentation={"output": output},
    )


def square_segmenter_model(
    height: int,
    width: int,
    classes: int = 2,
    output: str = "logits",
    stride: int = 8,
    batch: str | int = "N",
    seed: int = 0,
) -> onnx.ModelProto:
    """``input`` [N, 3, H, W] (pixels / 255) → ``logits`` [N, C, H/stride, W/stride] or
    ``classes`` [N, H, W] uint8: class 1 where the image is bright, class 0 where dark.

    ``stride`` is 2, 4 or 8 (one 3x3 stride-2 conv each). Channel 0 carries ``brightness -
    0.5``, channel 1 its negation (ReLU'd, then 3x3 means), channels 2-3 small random mixes (so
    INT8 has something to get slightly wrong); the 1x1 ``classifier`` sets class 1 = 8 (c0 -
    c1), class 0 its negation, further classes -4.
    """
    rng = np.random.default_rng(seed)
    levels = {2: 1, 4: 2, 8: 3}[stride]
    inits, nodes = [], []
    x = "input"
    for level in range(levels):
        cin = 3 if level == 0 else 4
        w = rng.normal(0, 0.05, (4, cin, 3, 3)).astype(np.float32)
        b = np.zeros(4, np.float32)
        if level == 0:
            w[0], w[1] = 1 / 27, -1 / 27
            b[0], b[1] = -0.5, 0.5
        else:
            w[:2] = 0
            w[0, 0], w[1, 1] = 1 / 9, 1 / 9
        name = f"conv{level}"
        inits += [numpy_helper.from_array(w, f"{name}_w"), numpy_helper.from_array(b, f"{name}_b")]
        nodes += [
            helper.make_node(
                "Conv",
                [x, f"{name}_w", f"{name}_b"],
                [f"{name}_out"],
                name=name,
                strides=[2, 2],
                pads=[1, 1, 1, 1],
                kernel_shape=[3, 3],
            ),
            helper.make_node("Relu", [f"{name}_out"], [f"{name}_relu"], name=f"{name}_relu"),
        ]
        x = f"{name}_relu"
    cw = np.zeros((classes, 4, 1, 1), np.float32)
    cb = np.full(classes, -4.0, np.float32)
    cw[0, 0, 0, 0], cw[0, 1, 0, 0], cb[0] = -8.0, 8.0, 0.0
    cw[1, 0, 0, 0], cw[1, 1, 0, 0], cb[1] = 8.0, -8.0, 0.0
    cw[:, 2:] = rng.normal(0, 0.05, (classes, 2, 1, 1))
    inits += [numpy_helper.from_array(cw, "cls_w"), numpy_helper.from_array(cb, "cls_b")]
    h, w = height // stride, width // stride
    logits = "logits" if output == "logits" else "low_logits"
    nodes.append(
        helper.make_node(
            "Conv", [x, "cls_w", "cls_b"], [logits], name="classifier", kernel_shape=[1, 1]
        )
    )
    if output == "logits":
        out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes, h, w])
    else:
        scales = np.array([1, 1, stride, stride], np.float32)
        inits.append(numpy_helper.from_array(scales, "up_scales"))
        nodes += [
            helper.make_node(
                "Resize", [logits, "", "up_scales"], ["up"], name="upsample", mode="linear"
            ),
            helper.make_node("ArgMax", ["up"], ["ids"], name="argmax", axis=1, keepdims=0),
            helper.make_node("Cast", ["ids"], ["classes"], name="to_uint8", to=TensorProto.UINT8),
        ]
        out = helper.make_tensor_value_info("classes", TensorProto.UINT8, [batch, height, width])
    graph = helper.make_graph(
        nodes,
        "square_segmenter",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, height, width])],
        [out],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def square_segmenter_onnx(path: Path, height: int = 64, width: int = 96, **kw) -> Path:
    """`square_segmenter_model` saved at ``path``."""
    onnx.save(square_segmenter_model(height, width, **kw), str(path))
    return path


def save(model: onnx.ModelProto, path: Path) -> Path:
    """Save a (possibly edited) model unchecked: the contract check is what is tested."""
    onnx.save(model, str(path))
    return path


def square_scene(
    rng: np.random.Generator, size: tuple[int, int] = (120, 80)
) -> tuple[np.ndarray, np.ndarray]:
    """One BGR image (``size`` = width, height) of 1-2 bright squares on a dark noisy ground,
    and its mask: 1 inside the squares, 0 outside, 255 on each square's outermost ring."""
    import cv2

    w, h = size
    img = rng.integers(10, 60, (h, w, 3)).astype(np.uint8)
    mask = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(1, 3))):
        side = int(rng.integers(min(w, h) // 4, min(w, h) // 2))
        x0, y0 = int(rng.integers(0, w - side)), int(rng.integers(0, h - side))
        colour = [int(v) for v in rng.integers(200, 250, 3)]
        cv2.rectangle(img, (x0, y0), (x0 + side - 1, y0 + side - 1), colour, -1)
        mask[y0 : y0 + side, x0 : x0 + side] = IGNORE
        mask[y0 + 1 : y0 + side - 1, x0 + 1 : x0 + side - 1] = 1
    return img, mask


def write_square_dataset(
    root: Path,
    images: int = 12,
    size: tuple[int, int] = (120, 80),
    seed: int = 0,
    labels: Sequence[str] = LABELS,
    splits: dict[str, int] | None = None,
) -> Path:
    """``root/images/NNNN.png`` + ``root/masks/NNNN.png`` + ``root/classes.txt``; with
    ``splits`` ({"train": 8, "val": 2, "test": 4}) one such folder per split instead."""
    import cv2

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(labels) + "\n")
    folders = splits or {"": images}
    k = 0
    for split, count in folders.items():
        base = root / split if split else root
        (base / "images").mkdir(parents=True, exist_ok=True)
        (base / "masks").mkdir(parents=True, exist_ok=True)
        for _ in range(count):
            img, mask = square_scene(rng, size)
            cv2.imwrite(str(base / "images" / f"{k:04d}.png"), img)
            cv2.imwrite(str(base / "masks" / f"{k:04d}.png"), mask)
            k += 1
    return root


def segmentation_bundle(root: Path, size: tuple[int, int] = (64, 96)) -> Path:
    """A segmentation bundle (fp32 only) of `square_segmenter_onnx`: background / square."""
    from edgevision.bundle import write_bundle

    root.mkdir(parents=True, exist_ok=True)
    onnx_path = square_segmenter_onnx(root / "seg.onnx", *size)
    return write_bundle(
        root / "seg-bundle",
        {"model.fp32.onnx": onnx_path},
        segmentation_spec(size=size),
        {"fp32": {"file": "model.fp32.onnx", "precision": "fp32", "target": "any"}},
    )
