"""The detector's raw outputs → detections on the original frame (numpy only, no torch).

The runtime side of the detection contract (`edgevision.tasks.detect.spec`): the graph gives
``boxes`` [K, 4] in model-input pixels and ``scores`` [K, classes] for its top-K candidates;
here every (candidate, class) pair above the score threshold is kept, non-maximum
suppression removes duplicates, at most ``max_detections`` remain, and the boxes go back
through the resize `preprocess` applied (`geometry.box_transform`).

Two NMS modes. *Class-aware* (the default here, and COCO's convention: training's evaluation
uses `torchvision.ops.batched_nms` for the same step, and the tests hold the two equal) keeps
one box per object *and label*, so an object the model hesitates about is reported once per
label it scores above the threshold; mAP rewards that hedging. *Class-agnostic* keeps one box
per object with its best label; the runtime uses it by default (`edgevision.runtime.detect`),
because a tracker given two labels on one sign starts a second track on it.
"""

from __future__ import annotations

import functools

import numpy as np

from edgevision.spec import ModelSpec
from edgevision.tasks.detect.geometry import box_transform
from edgevision.tasks.detect.metrics import Detections


def nms(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, limit: int | None = None
) -> np.ndarray:
    """Greedy NMS: indices of the kept boxes, highest score first (torchvision's semantics:
    a box is dropped when its IoU with a kept, higher-scoring box is above the threshold).

    The IoU of every pair is computed at once (a hundred candidates: one small matrix). The
    greedy pass is then resolved a round at a time instead of a box at a time: a box is *kept*
    once no higher-scoring box that may still survive overlaps it, and *dropped* once a kept
    box does. Each round settles at least the first open box, so the result is exactly the
    sequential greedy one, in as many rounds as the longest chain of suppressions (two or
    three on real frames, not one per kept box). ``limit`` keeps the first that many.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float32), kind="stable")
    x0, y0, x1, y1 = boxes[order].T
    area = np.maximum(x1 - x0, 0) * np.maximum(y1 - y0, 0)
    iw = np.maximum(np.minimum(x1[:, None], x1) - np.maximum(x0[:, None], x0), 0)
    ih = np.maximum(np.minimum(y1[:, None], y1) - np.maximum(y0[:, None], y0), 0)
    inter = iw * ih
    union = area[:, None] + area - inter
    # over[i, j]: higher-scoring box i suppresses j (IoU > threshold, without dividing;
    # an empty union overlaps nothing)
    over = (inter > iou_threshold * union) & (union > 0) & _later(len(order))
    open_ = np.ones(len(order), dtype=bool)
    kept = np.zeros(len(order), dtype=bool)
    while open_.any():
        settled = open_ & ~over[open_ | kept].any(axis=0)  # nothing left that may drop it
        kept |= settled
        open_ &= ~settled & ~over[kept].any(axis=0)
    return order[np.flatnonzero(kept)[:limit]]


@functools.lru_cache(maxsize=32)
def _later(n: int) -> np.ndarray:
    """``[i, j]`` True where ``j > i`` (read-only; cached: a frame's candidate count repeats)."""
    mask = np.triu(np.ones((n, n), dtype=bool), 1)
    mask.flags.writeable = False
    return mask


def batched_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    iou_threshold: float,
    limit: int | None = None,
) -> np.ndarray:
    """Class-aware NMS: boxes of different labels never suppress each other."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if boxes.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    # torchvision's trick: move each class to its own region of the plane
    offset = np.asarray(labels, dtype=np.float32)[:, None] * (float(boxes.max()) + 1.0)
    return nms(boxes + offset, scores, iou_threshold, limit)


def postprocess(
    boxes: np.ndarray,
    scores: np.ndarray,
    spec: ModelSpec,
    frame_size: tuple[int, int],
    score_threshold: float | None = None,
    class_agnostic: bool = False,
) -> Detections:
    """One image's ``boxes`` [K, 4] and ``scores`` [K, C] → `Detections` in frame pixels.

    ``frame_size`` is the original frame's (width, height); ``score_threshold`` defaults to the
    spec's ``detection.score_threshold``; ``class_agnostic`` lets boxes of different labels
    suppress each other (one label per object) instead of class-aware NMS.
    """
    options = spec.detection
    threshold = options.score_threshold if score_threshold is None else float(score_threshold)
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(boxes.shape[0], -1)
    cand, label = np.nonzero(scores > threshold)
    b, s = boxes[cand], scores[cand, label]
    if class_agnostic:
        keep = nms(b, s, options.iou_threshold, options.max_detections)
    else:
        keep = batched_nms(b, s, label, options.iou_threshold, options.max_detections)
    to_frame = box_transform(spec, *frame_size).to_frame
    return Detections(to_frame(b[keep]), s[keep], label[keep].astype(np.int64))
