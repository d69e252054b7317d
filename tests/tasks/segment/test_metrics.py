"""Segmentation metrics from their definitions: confusion with ignore, IoU, Dice, pixel accuracy."""

import numpy as np
import pytest

from edgevision.errors import DataError
from edgevision.tasks.segment.metrics import confusion, scores


def test_confusion_counts_truth_rows_and_skips_ignored_pixels():
    truth = np.array([[0, 0, 1], [1, 255, 2]])
    pred = np.array([[0, 1, 1], [1, 0, 0]])
    conf = confusion(pred, truth, 3)
    assert conf.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]  # the 255 pixel is not counted
    s = scores(conf)
    # class 0: TP 1, FP 1, FN 1 -> IoU 1/3, Dice 2/4; class 1: TP 2, FP 1 -> 2/3, 4/5; class 2: 0
    assert s.iou.tolist() == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert s.dice.tolist() == pytest.approx([0.5, 0.8, 0.0])
    assert s.miou == pytest.approx(1 / 3) and s.pixel_accuracy == pytest.approx(3 / 5)
    assert s.support.tolist() == [2, 2, 1]


def test_a_class_absent_from_truth_and_prediction_is_left_out_of_the_mean():
    truth = np.array([[0, 1], [1, 1]])
    s = scores(confusion(truth, truth, 3))
    assert np.isnan(s.iou[2]) and s.miou == 1.0 and s.mean_dice == 1.0
    d = s.to_dict(("bg", "road", "lane"))
    assert d["miou"] == 100.0 and d["per_class"]["lane"] == {"iou": None, "dice": None, "pixels": 0}


def test_summed_confusions_are_dataset_scores_not_a_mean_of_images():
    a = confusion(np.array([[1, 1]]), np.array([[1, 1]]), 2)  # perfect, 2 pixels of class 1
    b = confusion(np.zeros((1, 8), int), np.ones((1, 8), int), 2)  # 8 pixels of 1 called 0
    s = scores(a + b)
    assert s.iou[1] == pytest.approx(2 / 10)  # not the mean of 1.0 and 0.0


def test_bad_ids_and_shapes_name_the_fix():
    with pytest.raises(DataError, match="outside 0..1"):
        confusion(np.array([[0, 2]]), np.array([[0, 1]]), 2)
    with pytest.raises(DataError, match="the mask holds class id 7"):
        confusion(np.array([[0, 1]]), np.array([[0, 7]]), 2)
    with pytest.raises(DataError, match="differs from the mask"):
        confusion(np.zeros((2, 2)), np.zeros((2, 3)), 2)
