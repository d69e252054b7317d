"""COCO mAP through pycocotools, checked against hand-computed APs; matching and IoU."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgevision.errors import ConfigError, DataError, DependencyError, EdgeVisionError
from edgevision.tasks.detect.metrics import Detections, Truth, box_iou, coco_map, match_scores

LABELS = ["car", "sign"]


def truth(boxes, labels) -> Truth:
    return Truth(np.asarray(boxes, dtype=float), np.asarray(labels))


def dets(boxes, scores, labels) -> Detections:
    return Detections(np.asarray(boxes, dtype=float), np.asarray(scores), np.asarray(labels))


def empty() -> Detections:
    return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=int))


def coco_ap_101(tp: list[bool], n_gt: int) -> float:
    """COCO's 101-point interpolated AP from detections ranked by score (True = match)."""
    hits = np.cumsum(tp)
    recall = hits / n_gt
    precision = hits / np.arange(1, len(tp) + 1)
    points = []
    for r in np.linspace(0, 1, 101):
        reached = precision[recall >= r]
        points.append(reached.max() if reached.size else 0.0)
    return float(np.mean(points))


@pytest.fixture
def scene() -> tuple[list[Truth], list[Detections]]:
    truths = [
        truth([[10, 10, 60, 60], [100, 20, 180, 90]], [0, 1]),
        truth([[0, 0, 40, 30]], [0]),
    ]
    preds = [
        dets([[10, 10, 60, 60], [100, 20, 180, 90]], [0.9, 0.8], [0, 1]),
        dets([[0, 0, 40, 30]], [0.7], [0]),
    ]
    return truths, preds


def test_perfect_predictions_score_one(scene):
    m = coco_map(*scene, LABELS)
    for key in ("map", "map50", "map75", "ar100"):
        assert m[key] == pytest.approx(1.0)
    assert m["per_class"] == pytest.approx({"car": 1.0, "sign": 1.0})
    assert (m["images"], m["boxes"], m["detections"]) == (2, 3, 3)


def test_no_predictions_score_zero(scene):
    truths, _ = scene
    m = coco_map(truths, [empty(), empty()], LABELS)
    assert m["map"] == m["map50"] == m["ar100"] == 0.0
    assert m["per_class"] == {"car": 0.0, "sign": 0.0}
    assert m["detections"] == 0


def test_hand_computed_ap_with_a_false_positive_ranked_between():
    truths = [truth([[0, 0, 50, 50], [100, 100, 150, 150]], [0, 0])]
    # TP (0.9), FP far away (0.8), TP (0.7): precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
    preds = [
        dets([[0, 0, 50, 50], [200, 0, 250, 50], [100, 100, 150, 150]], [0.9, 0.8, 0.7], [0] * 3)
    ]
    expected = coco_ap_101([True, False, True], n_gt=2)
    assert expected == pytest.approx((51 * 1 + 50 * 2 / 3) / 101)
    m = coco_map(truths, preds, ["car"])
    assert m["map"] == pytest.approx(expected)
    assert m["map50"] == pytest.approx(expected)
    assert m["per_class_ap50"]["car"] == pytest.approx(expected)


@pytest.mark.parametrize(("shift", "matched"), [(33, True), (34, False)])
def test_iou_just_over_or_under_half_decides_map50(shift, matched):
    # IoU of a 100x100 box and its copy shifted by d: (100 - d) / (100 + d); 0.5 at d = 33.3.
    gt = np.array([[0, 0, 100, 100]], dtype=float)
    assert bool(box_iou(gt, gt + [shift, 0, shift, 0])[0, 0] >= 0.5) is matched
    m = coco_map([truth(gt, [0])], [dets(gt + [shift, 0, shift, 0], [0.9], [0])], ["car"])
    assert m["map50"] == pytest.approx(1.0 if matched else 0.0)
    assert m["map75"] == 0.0


def test_class_without_ground_truth_is_none(scene):
    truths, preds = scene
    m = coco_map(truths, preds, [*LABELS, "person"])
    assert m["per_class"]["person"] is None and m["per_class_ap50"]["person"] is None
    assert m["pr50"]["person"] is None
    assert m["map"] == pytest.approx(1.0)  # the mean is over classes that have ground truth


def test_area_buckets_follow_coco_32_and_96():
    boxes = [[0, 0, 20, 20], [100, 100, 150, 150], [200, 0, 400, 200]]  # 400, 2500, 40000 px²
    truths = [truth(boxes, [0, 0, 0])]
    m = coco_map(truths, [dets(boxes, [0.9, 0.8, 0.7], [0, 0, 0])], ["car"])
    assert m["map_small"] == m["map_medium"] == m["map_large"] == pytest.approx(1.0)
    missed_small = coco_map(truths, [dets(boxes[1:], [0.9, 0.8], [0, 0])], ["car"])
    assert missed_small["map_small"] == 0.0
    assert missed_small["map_large"] == pytest.approx(1.0)
    only_small = coco_map([truth(boxes[:1], [0])], [dets(boxes[:1], [0.9], [0])], ["car"])
    assert only_small["map_medium"] is None and only_small["map_large"] is None


def test_result_is_json_ready_with_101_point_pr_curves(scene):
    m = coco_map(*scene, LABELS)
    assert json.loads(json.dumps(m)) == m
    curve = m["pr50"]["car"]
    assert len(curve["recall"]) == len(curve["precision"]) == 101
    assert curve["recall"][0] == 0.0 and curve["recall"][-1] == 1.0
    floats = [v for k, v in m.items() if isinstance(v, float)]
    floats += [v for v in curve["precision"]]
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in floats)


def test_max_dets_limits_detections_per_image():
    boxes = [[i * 20, 0, i * 20 + 10, 10] for i in range(5)]
    truths, preds = [truth(boxes, [0] * 5)], [dets(boxes, [0.9] * 5, [0] * 5)]
    assert coco_map(truths, preds, ["car"], max_dets=2)["ar100"] == pytest.approx(0.4)
    with pytest.raises(ConfigError, match="max_dets 0"):
        coco_map(truths, preds, ["car"], max_dets=0)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ([truth([[0, 0, 1, 1]], [0])], []), "1 ground-truth images but 0"),
        (lambda: ([truth([[0, 0, 1]], [0])], [empty()]), r"truths\[0\].boxes has shape \(1, 3\)"),
        (lambda: ([truth([[0, 0, np.nan, 1]], [0])], [empty()]), "not finite"),
        (lambda: ([truth([[5, 0, 1, 1]], [0])], [empty()]), "x1 < x0"),
        (lambda: ([truth([[0, 0, 1, 1]], [2])], [empty()]), r"holds 2, outside 0\.\.1"),
        (lambda: ([truth([[0, 0, 1, 1]], [-1])], [empty()]), "holds -1"),
        (lambda: ([truth([[0, 0, 1, 1]], [0, 1])], [empty()]), r"labels has shape \(2,\)"),
        (lambda: ([truth([], [])], [dets([[0, 0, 1, 1]], [0.5, 0.4], [0])]), "scores has shape"),
        (lambda: ([truth([], [])], [dets([[0, 0, 1, 1]], [np.nan], [0])]), "scores"),
        (lambda: ([truth([], [])], [dets([[0, 0, 1, 1]], [0.5], [0.5])]), "integer label"),
    ],
)
def test_bad_inputs_are_clear_errors(make, message):
    truths, preds = make()
    with pytest.raises(DataError, match=message) as info:
        coco_map(truths, preds, LABELS)
    assert isinstance(info.value, EdgeVisionError)


def test_missing_pycocotools_names_the_train_extra(monkeypatch, scene):
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    monkeypatch.setitem(sys.modules, "pycocotools.coco", None)
    monkeypatch.setitem(sys.modules, "pycocotools.cocoeval", None)
    with pytest.raises(DependencyError, match=r"edgevision\[train\]"):
        coco_map(*scene, LABELS)


def test_match_scores_greedy_by_score():
    truths = [truth([[0, 0, 10, 10], [50, 50, 60, 60]], [0, 1])]
    preds = [
        dets(
            [[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60], [80, 80, 90, 90]],
            [0.6, 0.9, 0.4, 0.8],
            [0, 0, 0, 1],
        )
    ]
    # Class 0: 0.9 (IoU 0.81) takes the box first, 0.6 finds it taken; the class-0 box over the
    # class-1 truth matches nothing; the class-1 detection is elsewhere.
    out = match_scores(truths, preds)
    assert out == {
        "mean_score": pytest.approx(0.9),
        "matched": 1,
        "unmatched": 3,
        "missed": 1,
        "iou": 0.5,
    }
    assert match_scores([truth([], [])], [empty()])["mean_score"] is None
    with pytest.raises(ConfigError, match="iou 0"):
        match_scores(truths, preds, iou=0.0)


def test_box_iou_pairs():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]], dtype=float)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]], dtype=float)
    iou = box_iou(a, b)
    assert iou.shape == (2, 3)
    assert iou[0] == pytest.approx([50 / 150, 0.0, 1.0])
    assert (iou[1] == 0).all()
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 3)


def test_importing_metrics_and_draw_pulls_in_no_torch_or_matplotlib():
    code = (
        "import sys, edgevision.tasks.detect.metrics, edgevision.tasks.detect.draw; "
        "print(sorted(m for m in ('torch', 'matplotlib', 'pycocotools') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
