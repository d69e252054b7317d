"""A classifier that plain INT8 destroys: two activations with an outlier channel.

The model reads the brightness of an image (the classes of ``make_image_tree`` differ in it):
``conv1`` writes the mean of the normalised channels to channel 0 and a constant 5000 to
channel 1, ``conv2`` passes the brightness on beside a 4000 channel, ``conv3`` keeps the
brightness only; then GlobalAveragePool → Flatten → Gemm, whose three lines split the brightness
at thresholds fitted to the data (so FP32 is exact). A per-tensor INT8 range of [-2, 5000] has a
step of ~20: every brightness value rounds to 0 and all images fall into one class. Both
tensors (``c1``, ``c2``) must stay float; ``conv1``, ``conv2`` and ``conv3`` are the nodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgevision.compile import BuildConfig
from edgevision.compile.evaluate import EvalSet, eval_set_from_folder
from edgevision.data.images import read_image
from edgevision.preprocess import preprocess_batch
from edgevision.spec import ModelSpec
from tests.compile.conftest import LABELS, make_image_tree
from tests.helpers import save_classifier

OUTLIER = 5000.0
NODES = ("conv1", "conv2", "conv3")
SIZE = (32, 32)


def brightness(eval_set: EvalSet, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    """What the model computes before its classifier, per image, and the labels."""
    x = preprocess_batch([read_image(p) for p, _ in eval_set.items], spec)
    return x.mean(axis=(1, 2, 3)), np.array([y for _, y in eval_set.items])


def thresholds(values: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Midpoints between the classes' brightness ranges (classes ordered by brightness)."""
    t1 = (values[labels == 0].max() + values[labels == 1].min()) / 2
    t2 = (values[labels == 1].max() + values[labels == 2].min()) / 2
    return float(t1), float(t2)


def _const(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, np.float32), name)


def outlier_classifier(path: Path, size: tuple[int, int], t1: float, t2: float) -> Path:
    """Write the model (opset 17, dynamic batch) to ``path``."""
    h, w = size
    slope = 10.0
    inits = [
        _const("w1", np.array([[1 / 3, 1 / 3, 1 / 3], [0, 0, 0]]).reshape(2, 3, 1, 1)),
        _const("b1", [0.0, OUTLIER]),
        _const("w2", np.array([[1, 0], [0, 0]]).reshape(2, 2, 1, 1)),
        _const("b2", [0.0, 0.8 * OUTLIER]),  # not b1: ORT would share one initializer
        _const("w3", np.array([[1, 0]]).reshape(1, 2, 1, 1)),
        _const("b3", [0.0]),
        _const("fc_w", np.array([[-slope], [0.0], [slope]])),
        _const("fc_b", [slope * t1, 0.0, -slope * t2]),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1"),
        helper.make_node("Conv", ["c1", "w2", "b2"], ["c2"], name="conv2"),
        helper.make_node("Conv", ["c2", "w3", "b3"], ["c3"], name="conv3"),
        helper.make_node("GlobalAveragePool", ["c3"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], transB=1, name="fc"),
    ]
    return save_classifier(path, "outlier", nodes, inits, (h, w), 3)


def make_outlier(root: Path) -> dict[str, Path]:
    """Data (30 labelled images), a spec file and the outlier model under ``root``; FP32 is
    exact on the data."""
    data = make_image_tree(root / "data")
    spec = ModelSpec(labels=LABELS, input_size=SIZE)
    values, labels = brightness(eval_set_from_folder(data, spec), spec)
    model = outlier_classifier(root / "outlier.onnx", SIZE, *thresholds(values, labels))
    return {"root": root, "data": data, "spec": spec.save(root / "spec.json"), "model": model}


def build_config(o: dict[str, Path], out: Path, **kw: Any) -> BuildConfig:
    """A quick build of the outlier model: 16 calibration images, one thread, few timings."""
    base = dict(
        input=o["model"],
        out=out,
        spec=o["spec"],
        calib=str(o["data"]),
        calib_size=16,
        eval=o["data"],
        threads=1,
        cache_dir=o["root"] / "cache",
        latency_iterations=10,
    )
    return BuildConfig(**(base | kw))
