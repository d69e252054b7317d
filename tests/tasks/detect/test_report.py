"""The detection run report: files written, PNGs decode, tables, JSON round trip."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edgevision.errors import ConfigError
from edgevision.tasks.detect.metrics import Detections, Truth, coco_map
from edgevision.tasks.detect.report import (
    CURVES_PNG,
    METRICS_JSON,
    REPORT_TXT,
    detection_text_report,
    plot_detection_curves,
    plot_pr_curves,
    prediction_grid,
    write_detection_report,
)

LABELS = ["car", "sign", "person"]  # "person" has no ground truth


@pytest.fixture(scope="module")
def data() -> tuple[list[Truth], list[Detections]]:
    truths = [
        Truth(np.array([[10, 10, 60, 60], [70, 20, 110, 90]], float), np.array([0, 1])),
        Truth(np.array([[5, 5, 45, 35]], float), np.array([0])),
    ]
    preds = [
        Detections(
            np.array([[12, 10, 60, 62], [0, 80, 20, 100], [70, 20, 110, 90]], float),
            np.array([0.9, 0.6, 0.2]),
            np.array([0, 0, 1]),
        ),
        Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int)),
    ]
    return truths, preds


@pytest.fixture(scope="module")
def metrics(data) -> dict:
    m = coco_map(*data, LABELS)
    run = {"backbone": "mobilenetv3_small_100", "freeze": "backbone", "epochs": 2}
    return {"val": m, "test": m, "run": run}


HISTORY = [
    {
        "epoch": 1,
        "train_loss": 2.0,
        "train_loss_cls": 1.2,
        "train_loss_box": 0.8,
        "val_map": 0.1,
        "val_map50": 0.3,
    },
    {
        "epoch": 2,
        "train_loss": 1.5,
        "train_loss_cls": 0.9,
        "train_loss_box": 0.6,
        "val_loss": 1.7,
        "val_map": 0.2,
        "val_map50": 0.45,
    },
]


def decodes(path) -> bool:
    img = cv2.imread(str(path))
    return img is not None and img.shape[0] > 10 and img.shape[1] > 10


def test_write_detection_report_files(tmp_path, metrics):
    skipped = [{"path": "bad.jpg", "reason": "truncated"}]
    issues = [{"path": "labels/x.txt", "reason": "box outside the image, clipped"}, "2 empty"]
    write_detection_report(tmp_path, metrics, LABELS, HISTORY, skipped, issues)
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {METRICS_JSON, REPORT_TXT, CURVES_PNG, "pr_curve_val.png", "pr_curve_test.png"}
    for name in (CURVES_PNG, "pr_curve_val.png", "pr_curve_test.png"):
        assert decodes(tmp_path / name)
    doc = json.loads((tmp_path / METRICS_JSON).read_text())
    assert doc == {**metrics, "history": HISTORY, "skipped": skipped, "issues": issues}


def test_text_report_has_splits_and_per_class_table(metrics):
    text = detection_text_report(metrics, LABELS, [{"path": "bad.jpg", "reason": "empty"}], ["x"])
    m = metrics["val"]
    assert "mobilenetv3_small_100" in text and "freeze backbone" in text
    assert f"== val: mAP {100 * m['map']:.2f}" in text and "== test:" in text
    assert "AP small" in text and "large -" in text  # no large objects: COCO's -1
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines() if line}
    assert rows["class"] == ["AP", "AP50"]
    assert rows["car"] == [
        f"{100 * m['per_class']['car']:.2f}",
        f"{100 * m['per_class_ap50']['car']:.2f}",
    ]
    assert rows["person"] == ["-", "-"]
    assert "bad.jpg: empty" in text and "== dataset issues: 1" in text


def test_report_without_test_split_or_history(tmp_path, metrics):
    write_detection_report(tmp_path, {"val": metrics["val"], "run": {}}, LABELS, [], [], [])
    assert {p.name for p in tmp_path.iterdir()} == {METRICS_JSON, REPORT_TXT, "pr_curve_val.png"}


def test_plots_decode(tmp_path, metrics):
    assert decodes(plot_pr_curves(metrics["val"], tmp_path / "pr.png", title="val"))
    no_truth = {**metrics["val"], "pr50": {name: None for name in LABELS}}
    assert decodes(plot_pr_curves(no_truth, tmp_path / "none.png"))
    only_train = [{"epoch": 1, "train_loss": 1.0}, {"epoch": 2, "train_loss": 0.5}]
    assert decodes(plot_detection_curves(only_train, tmp_path / "curves.png"))


def test_prediction_grid(tmp_path, data):
    truths, preds = data
    images = [np.full((100, 120, 3), 90, np.uint8), np.full((600, 900, 3), 90, np.uint8)]
    truths = [truths[0], Truth(truths[1].boxes * 10, truths[1].labels)]
    path = prediction_grid(images, truths, preds, LABELS, tmp_path / "grid.png", cols=4)
    grid = cv2.imread(str(path))
    assert grid is not None and grid.shape[0] <= 360 and grid.shape[1] <= 2 * 480 + 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left
    with pytest.raises(ConfigError, match="2 images, 1 truths"):
        prediction_grid(images, truths[:1], preds, LABELS, tmp_path / "x.png")
    with pytest.raises(ConfigError, match="cols 0"):
        prediction_grid(images, truths, preds, LABELS, tmp_path / "x.png", cols=0)
