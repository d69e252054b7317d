"""The detector's raw outputs → detections on the original frame (numpy only, no torch).

The runtime side of the detection contract (`edgevision.tasks.detect.spec`): the graph gives
``boxes`` [K, 4] in model-input pixels and ``scores`` [K, classes] for its top-K candidates;
here every (candidate, class) pair above the score threshold is kept, class-aware
non-maximum suppression removes duplicates, at most ``max_detections`` remain, and the boxes
go back through the resize `preprocess` applied (`geometry.box_transform`). Training's
evaluation uses `torchvision.ops.batched_nms` for the same step; the tests hold the two equal.
"""

from __future__ import annotations

import numpy as np

from edgevision.spec import ModelSpec
from edgevision.tasks.detect.geometry import box_transform
from edgevision.tasks.detect.metrics import Detections


def nms(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, limit: int | None = None
) -> np.ndarray:
    """Greedy NMS: indices of the kept boxes, highest score first (torchvision's semantics:
    a box is dropped when its IoU with a kept, higher-scoring box is above the threshold).

    The IoU of every pair is computed at once (a few hundred candidates: one small matrix);
    the greedy pass then only reads rows. ``limit`` stops after that many kept boxes.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float32), kind="stable")
    b = boxes[order]
    area = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    wh = np.minimum(b[:, None, 2:], b[None, :, 2:]) - np.maximum(b[:, None, :2], b[None, :, :2])
    inter = wh.clip(0).prod(axis=2)
    union = area[:, None] + area[None, :] - inter
    over = inter > iou_threshold * union  # IoU > threshold, without dividing (union >= 0)
    over &= union > 0
    n = len(order)
    removed = np.zeros(n, dtype=bool)
    keep: list[int] = []
    for i in range(n):
        if removed[i]:
            continue
        keep.append(i)
        if limit is not None and len(keep) >= limit:
            break
        removed |= over[i]
    return order[np.asarray(keep, dtype=np.int64)]


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
) -> Detections:
    """One image's ``boxes`` [K, 4] and ``scores`` [K, C] → `Detections` in frame pixels.

    ``frame_size`` is the original frame's (width, height); ``score_threshold`` defaults to the
    spec's ``detection.score_threshold``.
    """
    options = spec.detection
    threshold = options.score_threshold if score_threshold is None else float(score_threshold)
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(boxes.shape[0], -1)
    cand, label = np.nonzero(scores > threshold)
    b, s = boxes[cand], scores[cand, label]
    keep = batched_nms(b, s, label, options.iou_threshold, options.max_detections)
    to_frame = box_transform(spec, *frame_size).to_frame
    return Detections(to_frame(b[keep]), s[keep], label[keep].astype(np.int64))
