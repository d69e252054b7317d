"""Build's detection verify step: mAP drop, agreement, confidence figures, ONNX end to end."""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper, save

from edgevision.data.detection import DetectionSample, DetectionSplit, scan_detection
from edgevision.data.synth_detect import generate_detection_dataset
from edgevision.errors import BuildError, DataError
from edgevision.spec import ModelSpec
from edgevision.tasks.detect import evaluate as evaluate_module
from edgevision.tasks.detect.evaluate import (
    EVAL_THRESHOLD,
    PLOT,
    DetectionEvalSet,
    DetectionEvaluation,
    eval_set_from_folder,
    eval_set_from_split,
    evaluate_detection,
    plot_ap_per_class,
)
from edgevision.tasks.detect.metrics import Detections, Truth
from tests.helpers import tiny_classifier_onnx

LABELS = ("a", "b")


def _det(boxes, scores, labels) -> Detections:
    return Detections(np.asarray(boxes, float), np.asarray(scores, float), np.asarray(labels))


def _truth(boxes, labels) -> Truth:
    return Truth(np.asarray(boxes, float), np.asarray(labels))


# -- the metrics on hand-built detections --------------------------------------------------
GT = [
    _truth([[0, 0, 10, 10], [20, 20, 40, 40]], [0, 1]),
    _truth([[5, 5, 25, 25], [30, 0, 50, 20]], [0, 0]),
]
FAR = [[200, 200, 210, 210]]  # overlaps nothing


def _evaluation() -> DetectionEvaluation:
    fp32 = [
        _det(GT[0].boxes, [0.9, 0.8], [0, 1]),
        _det(GT[1].boxes, [0.7, 0.6], [0, 0]),
    ]
    half = [  # the first box of each image, plus a far false positive below the threshold
        _det([GT[0].boxes[0], *FAR], [0.9, 0.1], [0, 0]),
        _det(GT[1].boxes[:1], [0.7], [0]),
    ]
    relabelled = [_det(GT[0].boxes, [0.9, 0.8], [0, 0]), fp32[1]]  # the b box called a
    preds = {"fp32": fp32, "copy": list(fp32), "half": half, "relabelled": relabelled}
    return DetectionEvaluation(LABELS, "hand-made", GT, preds, score_threshold=0.5)


def test_identical_predictions_lose_nothing_and_agree_fully():
    ev = _evaluation()
    assert ev.n == 2 and ev.boxes == 4 and ev.metric == "mAP@[.5:.95]"
    assert ev.score("fp32") == pytest.approx(100.0)
    assert ev.drop("copy") == pytest.approx(0.0) and ev.agreement("copy") == 100.0
    assert ev.per_class_drop("copy") == pytest.approx({"a": 0.0, "b": 0.0})


def test_missing_half_the_detections_drops_and_disagrees():
    ev = _evaluation()
    # class a: 2 of 3 boxes found with precision 1 → 67 of COCO's 101 recall points; b: none
    assert ev.score("half") == pytest.approx(100 * (67 / 101) / 2)
    assert ev.drop("half") == pytest.approx(100 - 100 * (67 / 101) / 2)
    assert ev.per_class("half") == pytest.approx({"a": 100 * 67 / 101, "b": 0.0})
    assert ev.per_class_drop("half")["b"] == pytest.approx(100.0)
    # at score >= 0.5: 2 detections against the reference's 4, both matched → F1 = 4 / 6
    # (the 0.1 false positive is below the operating point; counted it would give 4 / 7)
    assert ev.agreement("half") == pytest.approx(100 * 2 * 2 / (2 + 4))
    # same boxes, one with the wrong class: 3 of 4 match
    assert ev.agreement("relabelled") == pytest.approx(75.0)


def test_agreement_is_full_when_nobody_reports_anything():
    empty = [_det(np.zeros((0, 4)), [], []) for _ in GT]
    ev = DetectionEvaluation(LABELS, "x", GT, {"fp32": empty, "int8": list(empty)}, 0.5)
    assert ev.agreement("int8") == 100.0 and ev.score("int8") == 0.0
    low = [_det(GT[0].boxes, [0.2, 0.2], [0, 1]), empty[1]]  # all below the threshold
    ev = DetectionEvaluation(LABELS, "x", GT, {"fp32": empty, "int8": low}, 0.5)
    assert ev.agreement("int8") == 100.0 and ev.score("int8") > 0


def _compressed() -> DetectionEvaluation:
    gt = [_truth([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]], [0] * 4)]
    fps = [[0, 50, 10, 60], [20, 50, 30, 60], [40, 50, 50, 60]]
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.55, 0.3, 0.2])  # 4 hits, then 3 false positives
    boxes = np.concatenate([gt[0].boxes, np.asarray(fps, float)])
    labels = np.zeros(7, int)
    preds = {
        "fp32": [_det(boxes, scores, labels)],
        "int8": [_det(boxes, scores * 0.8, labels)],
        "junk": [_det(fps, [0.9, 0.8, 0.7], [0, 0, 0])],
    }
    return DetectionEvaluation(LABELS, "x", gt, preds, score_threshold=0.5)


def test_operating_point_figures_read_the_runtime_nms_where_given():
    """mAP reads the class-aware ``predictions``; agreement, precision and recall read what the
    runtime's class-agnostic NMS keeps, where ``runtime_predictions`` has the model."""
    box = GT[0].boxes[0]
    # class-aware NMS keeps a second label on the a object (0.6 as b); the runtime would not
    aware = [
        _det([box, box, GT[0].boxes[1]], [0.9, 0.6, 0.8], [0, 1, 1]),
        _det(GT[1].boxes, [0.7, 0.6], [0, 0]),
    ]
    agnostic = [_det([box, GT[0].boxes[1]], [0.9, 0.8], [0, 1]), aware[1]]
    plain = DetectionEvaluation(LABELS, "x", GT, {"fp32": aware, "int8": aware}, 0.5)
    assert plain.confidence("int8")["precision"] == pytest.approx(100 * 4 / 5)
    ev = DetectionEvaluation(
        LABELS,
        "x",
        GT,
        {"fp32": aware, "int8": aware},
        0.5,
        runtime_predictions={"fp32": agnostic, "int8": agnostic},
    )
    assert ev.score("int8") == plain.score("int8")  # COCO mAP: class-aware as before
    assert [len(d) for d in ev.at_threshold("int8")] == [2, 2]
    assert ev.confidence("int8")["precision"] == pytest.approx(100.0)
    assert ev.confidence("int8")["recall"] == pytest.approx(100.0)
    assert ev.agreement("int8") == 100.0
    # a model without runtime detections falls back to its class-aware ones
    mixed = DetectionEvaluation(
        LABELS, "x", GT, {"fp32": aware, "int8": aware}, 0.5, runtime_predictions={"fp32": agnostic}
    )
    assert mixed.agreement("int8") == pytest.approx(100 * 2 * 4 / (5 + 4))


def test_threshold_for_reference_precision_follows_compressed_scores():
    ev = _compressed()
    fp32, int8 = ev.confidence("fp32"), ev.confidence("int8")
    # FP32 at 0.5 keeps 4 hits and the 0.55 false positive: precision 80 %, recall 100 %
    assert fp32["precision"] == pytest.approx(80.0) and fp32["recall"] == pytest.approx(100.0)
    # 80 % holds down to 0.55 (at 0.3 it is 4/6): the smallest such threshold
    assert fp32["threshold_for_reference_precision"] == pytest.approx(0.55)
    assert int8["threshold_for_reference_precision"] == pytest.approx(0.8 * 0.55)
    # INT8 at 0.5 keeps 0.72, 0.64, 0.56: all hits, one object lost
    assert int8["precision"] == pytest.approx(100.0) and int8["recall"] == pytest.approx(75.0)
    assert fp32["mean_matched_score"] == pytest.approx(0.75)
    assert int8["mean_matched_score"] == pytest.approx(0.8 * 0.75)
    junk = ev.confidence("junk")
    assert junk["threshold_for_reference_precision"] is None and junk["precision"] == 0.0
    assert junk["mean_matched_score"] is None


def test_coco_map_runs_once_per_model(monkeypatch):
    calls = []
    real = evaluate_module.coco_map
    monkeypatch.setattr(
        evaluate_module, "coco_map", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    ev = _evaluation()
    for _ in range(3):
        ev.score("half"), ev.drop("half"), ev.per_class("half"), ev.map50("half")
    assert len(calls) == 2  # half and fp32


def test_summary_is_json_ready_and_markdown_has_the_tables():
    ev = _compressed()
    summary = json.loads(json.dumps(ev.summary()))
    assert summary["metric"] == "mAP@[.5:.95]" and summary["images"] == 1
    assert summary["boxes"] == 4 and summary["score_threshold"] == 0.5
    assert summary["class_counts"] == {"a": 4, "b": 0} and summary["reference"] == "fp32"
    fp32, int8 = summary["models"]["fp32"], summary["models"]["int8"]
    for key in ("map", "map50", "map75", "per_class", "per_class_ap50", "mean_matched_score"):
        assert key in fp32 and key in int8
    assert "drop_points" not in fp32 and "agreement" not in fp32
    for key in ("drop_points", "drop_map50", "agreement", "per_class_drop", "precision"):
        assert key in int8
    assert int8["threshold_for_reference_precision"] == pytest.approx(0.44)
    assert fp32["per_class"]["b"] is None  # no ground truth
    md = ev.markdown()
    assert "| artifact | mAP@[.5:.95] (%) | mAP@.5 (%) | drop (points) |" in md
    assert "| fp32 |" in md and "| int8 |" in md and "0.440 |" in md
    assert "| class | boxes | fp32 | int8 | junk |" in md and "| b | 0 | — | — | — |" in md
    assert f"![AP per class]({PLOT})" in md


def test_plot_writes_a_png(tmp_path):
    out = plot_ap_per_class(_evaluation(), tmp_path / PLOT)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert cv2.imread(str(out)).shape[2] == 3


# -- end to end with ONNX Runtime ----------------------------------------------------------
SIZE = 32  # model input, square, stretch resize
BOXES = np.array([[4, 4, 12, 12], [16, 8, 28, 24], [0, 0, 2, 2]], np.float32)  # input pixels
SCORES = np.array([[0.9, 0.05], [0.02, 0.8], [0.01, 0.01]], np.float32)


def _detector_onnx(path, scores: np.ndarray):
    """boxes [N, 3, 4] and scores [N, 3, 2]: constants broadcast over the batch of ``input``."""
    inits = [
        numpy_helper.from_array(BOXES[None], "box_c"),
        numpy_helper.from_array(scores[None].astype(np.float32), "score_c"),
        numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["m"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["m", "shape"], ["m3"]),
        helper.make_node("Mul", ["m3", "zero"], ["z"]),  # [N, 1, 1] of zeros
        helper.make_node("Add", ["z", "box_c"], ["boxes"]),
        helper.make_node("Add", ["z", "score_c"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_detector",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["N", 3, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 3, 2]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(path))
    return path


def _frames(tmp_path) -> DetectionEvalSet:
    """Frames of different sizes whose truth is the model's two confident boxes, scaled."""
    items = []
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate([(64, 64), (128, 64), (32, 96), (64, 64)]):
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        scale = np.array([w, h, w, h], np.float32) / SIZE
        items.append((path, _truth(BOXES[:2] * scale, [0, 1])))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"")
    items.insert(2, (broken, _truth(np.zeros((0, 4)), [])))
    return DetectionEvalSet(items, "frames")


def test_evaluate_detection_end_to_end(tmp_path):
    spec = ModelSpec(
        labels=LABELS,
        task="detection",
        input_size=(SIZE, SIZE),
        detection={"candidates": 3, "score_threshold": 0.3},
    )
    eval_set = _frames(tmp_path)
    fp32 = _detector_onnx(tmp_path / "fp32.onnx", SCORES)
    int8 = _detector_onnx(tmp_path / "int8.onnx", SCORES * 0.8)
    ev = evaluate_detection(
        {"int8-cpu": int8, "fp32": fp32}, eval_set, spec, threads=1, batch_size=2
    )
    assert ev.reference == "fp32" and ev.n == 4 and ev.score_threshold == 0.3
    assert len(ev.skipped) == 1 and ev.skipped[0]["path"].endswith("broken.png")
    assert [len(p) for p in ev.predictions["fp32"]] == [6] * 4  # every (box, class) > 0.001
    # the runtime's class-agnostic NMS keeps one label per box for the operating-point figures
    assert [len(p) for p in ev.runtime_predictions["fp32"]] == [3] * 4
    assert [p.labels.tolist() for p in ev.at_threshold("fp32")] == [[0, 1]] * 4
    assert "class-agnostic NMS" in ev.markdown()
    assert all(p.scores.min() >= EVAL_THRESHOLD for p in ev.predictions["fp32"])
    # each image's boxes land on its own frame (128 x 64 here: x scaled 4, y scaled 2)
    top = ev.predictions["fp32"][1]
    assert top.boxes[0].tolist() == pytest.approx([16, 8, 48, 24])
    assert ev.score("fp32") == pytest.approx(100.0)  # would fail with another frame's size
    assert ev.drop("int8-cpu") == pytest.approx(0.0) and ev.agreement("int8-cpu") == 100.0
    fp, q = ev.confidence("fp32"), ev.confidence("int8-cpu")
    assert fp["mean_matched_score"] == pytest.approx(0.85)
    assert q["mean_matched_score"] == pytest.approx(0.8 * 0.85)
    # FP32 is fully precise at 0.3; the lowest threshold keeping that is its lower hit score
    assert fp["threshold_for_reference_precision"] == pytest.approx(0.8)
    assert q["threshold_for_reference_precision"] == pytest.approx(0.64)
    assert ev.summary()["skipped"] == 1


def test_evaluate_detection_refuses_a_classifier(tmp_path):
    spec = ModelSpec(labels=("a", "b", "c"), task="detection", input_size=(32, 48))
    eval_set = DetectionEvalSet(_frames(tmp_path).items[:1], "frames")
    model = tiny_classifier_onnx(tmp_path / "cls.onnx")
    with pytest.raises(BuildError, match="needs 'boxes'"):
        evaluate_detection({"fp32": model}, eval_set, spec, threads=1)


# -- evaluation sets -----------------------------------------------------------------------
def test_eval_set_from_folder_reads_every_image_and_maps_labels(tmp_path):
    data = generate_detection_dataset(
        tmp_path / "coco", images=6, size=(64, 48), classes=["stop", "yield"], progress=False
    )
    broken = sorted((data / "images").iterdir())[0]
    broken.write_bytes(b"")
    spec = ModelSpec(labels=("yield", "no_entry", "stop"), task="detection", input_size=(32, 32))
    eval_set = eval_set_from_folder(data, spec)
    split = scan_detection(data)
    samples = {s.path: s for part in split.items.values() for s in part}
    assert len(eval_set.items) == len(samples) == 5  # all splits together
    assert [s["path"] for s in eval_set.skipped] == [str(broken)]
    assert sum(len(t) for _, t in eval_set.items) > 0
    for path, truth in eval_set.items:
        sample = samples[path.relative_to(split.root).as_posix()]
        assert [spec.labels[y] for y in truth.labels] == [split.labels[y] for y in sample.labels]
        assert np.array_equal(truth.boxes, sample.boxes_array())
    with pytest.raises(DataError, match=r"'yield'.*model's labels \(stop, no_entry\)"):
        eval_set_from_folder(data, ModelSpec(labels=("stop", "no_entry"), task="detection"))
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError, match="not a detection dataset"):
        eval_set_from_folder(tmp_path / "plain", spec)


def test_eval_set_from_split_prefers_test_then_val(tmp_path, caplog):
    def sample(name, labels):
        return DetectionSample(name, 50, 50, [[0, 0, 10, 10]] * len(labels), labels)

    spec = ModelSpec(labels=("a", "b"), task="detection")
    items = {"train": [sample("t.png", [0])], "val": [sample("v.png", [0, 1])]}
    split = DetectionSplit(tmp_path, ["b", "a"], "coco", dict(items, test=[sample("x.png", [0])]))
    eval_set = eval_set_from_split(split, spec)
    assert eval_set.source.startswith("test split") and eval_set.items[0][0] == tmp_path / "x.png"
    assert eval_set.items[0][1].labels.tolist() == [1]  # "b" is the spec's label 1
    with caplog.at_level(logging.WARNING):
        eval_set = eval_set_from_split(DetectionSplit(tmp_path, ["b", "a"], "coco", items), spec)
    assert eval_set.source.startswith("val split") and "no test images" in caplog.text
    assert eval_set.items[0][1].labels.tolist() == [1, 0]
    assert eval_set_from_split(DetectionSplit(tmp_path, ["a"], "coco", {"train": []}), spec) is None
    with pytest.raises(DataError, match="'c'"):
        eval_set_from_split(DetectionSplit(tmp_path, ["a", "c"], "coco", items), spec)
