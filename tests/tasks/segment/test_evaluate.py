"""The segmentation build's verification: mIoU through the runtime's mapping, and its figures."""

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgevision.data.segmentation import SegmentationSplit, scan_segmentation
from edgevision.errors import DataError
from edgevision.tasks.segment.evaluate import (
    SegmentationEvaluation,
    eval_set_from_folder,
    eval_set_from_split,
    evaluate_segmentation,
)
from edgevision.tasks.segment.report import FIGURES, write_figures
from tests.segment_helpers import (
    segmentation_spec,
    square_segmenter_onnx,
    write_square_dataset,
)

LABELS = ("background", "square")


def _evaluation(**confusions) -> SegmentationEvaluation:
    conf = {k: np.asarray(v, np.int64) for k, v in confusions.items()}
    agreement = {k: (90 if k != "fp32" else 100, 100) for k in conf}
    return SegmentationEvaluation(LABELS, "hand-made", conf, agreement, images=3)


def test_the_figures_from_the_confusion_matrices():
    ev = _evaluation(fp32=[[80, 0], [0, 20]], int8=[[70, 10], [10, 10]])
    assert ev.metric == "mIoU" and ev.n == 3 and ev.pixels == 100
    assert ev.score("fp32") == pytest.approx(100.0)
    # int8: background 70 / 90, square 10 / 30
    assert ev.per_class("int8") == pytest.approx({"background": 700 / 9, "square": 100 / 3})
    assert ev.score("int8") == pytest.approx((700 / 9 + 100 / 3) / 2)
    assert ev.drop("int8") == pytest.approx(100 - ev.score("int8"))
    assert ev.per_class_dice("int8")["square"] == pytest.approx(50.0)  # 2*10 / (20 + 20)
    assert ev.per_class_drop("int8")["square"] == pytest.approx(100 - 100 / 3)
    assert ev.agreement("int8") == 90.0 and ev.agreement("fp32") == 100.0
    assert ev.pixel_accuracy("int8") == pytest.approx(80.0)
    assert list(ev.predictions) == ["fp32", "int8"]  # what the generic build iterates
    summary = json.loads(json.dumps(ev.summary()))
    assert summary["metric"] == "mIoU" and summary["class_counts"] == {
        "background": 80,
        "square": 20,
    }
    assert summary["confusion"]["matrix"] == [[80, 0], [0, 20]]
    int8 = summary["models"]["int8"]
    assert {"miou", "mean_dice", "per_class", "per_class_dice", "drop_points", "agreement"} <= set(
        int8
    )
    assert "drop_points" not in summary["models"]["fp32"]
    md = ev.markdown(["iou_per_class.png"])
    assert "| int8 |" in md and "IoU per class" in md and "(iou_per_class.png)" in md


def test_an_absent_class_is_none_and_nothing_scored_is_zero():
    ev = _evaluation(fp32=[[50, 0], [0, 0]], int8=[[40, 10], [0, 0]])
    assert ev.per_class("fp32") == {"background": 100.0, "square": None}
    assert ev.per_class("int8")["square"] == 0.0  # predicted, never true: IoU 0
    assert ev.per_class_drop("int8")["square"] is None
    empty = _evaluation(fp32=np.zeros((2, 2)))
    assert empty.score("fp32") == 0.0


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_square_dataset(tmp_path_factory.mktemp("seg-eval") / "data", images=8, seed=3)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("seg-models")
    return {
        "logits": square_segmenter_onnx(root / "logits.onnx"),
        "classmap": square_segmenter_onnx(root / "classmap.onnx", output="classmap"),
        "stride2": square_segmenter_onnx(root / "stride2.onnx", stride=2),
    }


def test_the_square_segmenter_is_scored_at_the_masks_resolution(data, models):
    spec = segmentation_spec()
    eval_set = eval_set_from_folder(data, spec)
    assert len(eval_set.items) == 8 and eval_set.source.startswith("masks dataset")
    ev = evaluate_segmentation(
        {"fp32": models["logits"], "same": models["logits"], "finer": models["stride2"]},
        eval_set,
        spec,
        batch_size=3,
    )
    assert ev.n == 8 and ev.pixels > 0.9 * 8 * 120 * 80 * 0.8
    assert 60 < ev.score("fp32") < 100  # it really segments, with stride-8 edges
    assert ev.drop("same") == 0.0 and ev.agreement("same") == 100.0
    assert ev.score("finer") > ev.score("fp32")  # stride 2 draws the edges closer
    assert 80 < ev.agreement("finer") < 100
    assert len(ev.examples) == 4 and ev.examples[0].maps["fp32"].shape == (80, 120)
    summary = ev.summary()
    assert summary["class_counts"]["square"] > 0 and summary["unseen_pixels"] == 0


def test_a_class_map_model_scores_like_its_logits(data, models):
    logits = evaluate_segmentation(
        {"fp32": models["logits"]},
        eval_set_from_folder(data, segmentation_spec()),
        segmentation_spec(),
    )
    spec = segmentation_spec(output="classmap")
    ev = evaluate_segmentation({"fp32": models["classmap"]}, eval_set_from_folder(data, spec), spec)
    assert ev.score("fp32") > logits.score("fp32") - 5  # bilinear upsampling in the graph


def test_dataset_classes_are_mapped_onto_the_specs_by_name(data, models, tmp_path):
    swapped = tmp_path / "swapped"
    shutil.copytree(data, swapped)
    (swapped / "classes.txt").write_text("square\nbackground\n")
    for mask in (swapped / "masks").glob("*.png"):
        m = cv2.imread(str(mask), cv2.IMREAD_UNCHANGED)
        cv2.imwrite(str(mask), np.where(m == 255, 255, 1 - m).astype(np.uint8))
    spec = segmentation_spec()
    a = evaluate_segmentation({"fp32": models["logits"]}, eval_set_from_folder(data, spec), spec)
    b = evaluate_segmentation({"fp32": models["logits"]}, eval_set_from_folder(swapped, spec), spec)
    assert b.score("fp32") == pytest.approx(a.score("fp32"))
    (swapped / "classes.txt").write_text("square\ndisc\n")
    with pytest.raises(DataError, match="'disc'"):
        eval_set_from_folder(swapped, spec)
    with pytest.raises(DataError, match="not a segmentation dataset"):
        eval_set_from_folder(tmp_path / "missing", spec)


def test_the_test_split_is_the_eval_set(tmp_path):
    root = write_square_dataset(
        tmp_path / "splits", splits={"train": 4, "val": 2, "test": 3}, seed=1
    )
    split = scan_segmentation(root)
    eval_set = eval_set_from_split(split, segmentation_spec())
    assert len(eval_set.items) == 3 and eval_set.source.startswith("test split")
    assert all(mask.parent.name == "masks" for _, mask in eval_set.items)
    loaded = SegmentationSplit.load(split.save(tmp_path / "split.json"))
    assert len(eval_set_from_split(loaded, segmentation_spec()).items) == 3
    none = SegmentationSplit(split.root, split.labels, items={"train": split.items["train"]})
    assert eval_set_from_split(none, segmentation_spec()) is None


def test_pixels_outside_a_center_crop_are_left_out(data, models):
    spec = segmentation_spec(resize="center_crop")
    ev = evaluate_segmentation({"fp32": models["logits"]}, eval_set_from_folder(data, spec), spec)
    assert ev.unseen_pixels > 0 and ev.pixels + ev.unseen_pixels > 0.9 * 8 * 120 * 80 * 0.8
    assert ev.score("fp32") > 50


def test_a_mask_that_no_longer_fits_is_skipped(data, models, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    spec = segmentation_spec()
    eval_set = eval_set_from_folder(copy, spec)
    bad = eval_set.items[2][1]
    cv2.imwrite(str(bad), np.zeros((10, 10), np.uint8))  # after the scan
    ev = evaluate_segmentation({"fp32": models["logits"]}, eval_set, spec)
    assert ev.n == 7 and len(ev.skipped) == 1 and "10x10" in ev.skipped[0]["reason"]


def test_the_report_figures(data, models, tmp_path):
    spec = segmentation_spec()
    ev = evaluate_segmentation(
        {"fp32": models["logits"], "int8-cpu": models["stride2"]},
        eval_set_from_folder(data, spec),
        spec,
    )
    files = write_figures(ev, tmp_path)
    assert set(files) == set(FIGURES)
    for path in files.values():
        img = cv2.imread(str(path))
        assert img is not None and img.shape[0] > 100 and img.shape[1] > 100
