"""Runtime postprocess: numpy NMS equals torchvision's; boxes land on the original frame."""

import numpy as np
import pytest
import torch
from torchvision.ops import batched_nms as tv_batched_nms
from torchvision.ops import nms as tv_nms

from edgevision.spec import ModelSpec
from edgevision.tasks.detect.postprocess import batched_nms, nms, postprocess


def _random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    xy = rng.uniform(0, 200, (n, 2))
    wh = rng.uniform(2, 60, (n, 2))
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("iou", [0.3, 0.5, 0.7])
def test_nms_matches_torchvision(seed, iou):
    rng = np.random.default_rng(seed)
    boxes, scores = _random_boxes(rng, 200), rng.uniform(0, 1, 200).astype(np.float32)
    labels = rng.integers(0, 4, 200)
    ours = nms(boxes, scores, iou)
    theirs = tv_nms(torch.from_numpy(boxes), torch.from_numpy(scores), iou).numpy()
    assert ours.tolist() == theirs.tolist()
    ours = batched_nms(boxes, scores, labels, iou)
    theirs = tv_batched_nms(
        torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(labels), iou
    ).numpy()
    assert ours.tolist() == theirs.tolist()


def test_nms_resolves_long_suppression_chains_like_the_sequential_greedy():
    # Boxes in a row, each overlapping the next: kept, dropped, kept, ... (a chain as long as
    # the row), and a dense cluster where rounds of the matrix pass interact.
    row = np.array([[i * 4.0, 0, i * 4.0 + 10, 10] for i in range(60)], np.float32)
    scores = np.linspace(1.0, 0.1, 60).astype(np.float32)
    rng = np.random.default_rng(7)
    xy = rng.uniform(0, 30, (300, 2))
    dense = np.concatenate([xy, xy + rng.uniform(8, 20, (300, 2))], 1).astype(np.float32)
    for boxes, s in ((row, scores), (dense, rng.uniform(0, 1, 300).astype(np.float32))):
        for iou in (0.2, 0.4, 0.6):
            theirs = tv_nms(torch.from_numpy(boxes), torch.from_numpy(s), iou).numpy()
            assert nms(boxes, s, iou).tolist() == theirs.tolist()
            assert nms(boxes, s, iou, limit=3).tolist() == theirs[:3].tolist()
    assert nms(row, scores, 0.4).tolist() == list(range(0, 60, 2))  # IoU 0.43, then 0.11


def test_other_classes_do_not_suppress_each_other():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [1, 1, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    assert batched_nms(boxes, scores, np.array([0, 1, 0]), 0.5).tolist() == [0, 1]
    assert batched_nms(np.zeros((0, 4)), np.zeros(0), np.zeros(0), 0.5).tolist() == []


def test_postprocess_thresholds_limits_and_maps_to_the_frame():
    spec = ModelSpec(labels=("a", "b"), task="detection", input_size=(100, 200), resize="letterbox")
    boxes = np.array([[50, 20, 90, 60], [52, 21, 91, 61], [120, 30, 160, 70]], np.float32)
    scores = np.array([[0.9, 0.1], [0.8, 0.05], [0.2, 0.6]], np.float32)
    det = postprocess(boxes, scores, spec, frame_size=(400, 400))  # letterbox: 100x100 + bars
    assert det.labels.tolist() == [0, 1] and det.scores.tolist() == pytest.approx([0.9, 0.6])
    # the frame is 400x400 → 100x100 in the middle of the 200-wide input (left bar 50 px)
    assert det.boxes[0].tolist() == pytest.approx([0.0, 80.0, 160.0, 240.0])
    low = postprocess(boxes, scores, spec, frame_size=(400, 400), score_threshold=0.15)
    assert len(low.scores) == 3  # box 1 repeats box 0 in class a and goes; box 2: a and b


def test_class_agnostic_postprocess_keeps_one_label_per_box():
    spec = ModelSpec(labels=("a", "b"), task="detection", input_size=(100, 100))
    boxes = np.array([[10, 10, 50, 50], [12, 11, 51, 50], [60, 60, 90, 90]], np.float32)
    scores = np.array([[0.4, 0.7], [0.6, 0.1], [0.5, 0.45]], np.float32)
    aware = postprocess(boxes, scores, spec, frame_size=(100, 100))
    # class-aware: box 0 as b, box 1 as a (box 0's own a is suppressed by box 1), box 2 twice
    order = np.argsort(-aware.scores)
    assert aware.labels[order].tolist() == [1, 0, 0, 1]
    assert aware.scores[order].tolist() == pytest.approx([0.7, 0.6, 0.5, 0.45])
    agnostic = postprocess(boxes, scores, spec, frame_size=(100, 100), class_agnostic=True)
    assert agnostic.labels.tolist() == [1, 0] and agnostic.scores.tolist() == pytest.approx(
        [0.7, 0.5]
    )
    np.testing.assert_allclose(agnostic.boxes, [[10, 10, 50, 50], [60, 60, 90, 90]], atol=1e-4)
