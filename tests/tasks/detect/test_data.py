"""Detection's training data: copy-paste of objects between training images."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgevision.data.dataset import ImageStore
from edgevision.data.detection import DetectionSample
from edgevision.errors import EdgeVisionError
from edgevision.spec import ModelSpec
from edgevision.tasks.detect import data as det_data
from edgevision.tasks.detect.data import DetectionDataset, paste_objects
from edgevision.tasks.detect.spec import DetectionOptions
from edgevision.train import TrainConfig


def _donor(value: int, box: list[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    img = np.zeros((60, 80, 3), np.uint8)
    x0, y0, x1, y1 = map(int, box)
    img[y0:y1, x0:x1] = value
    return img, np.array([box], np.float32), np.array([value % 3], np.int64)


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_paste_copies_the_box_pixels_where_they_hide_no_object():
    donors = [_donor(50 + 40 * j, [10 + j, 12, 26 + j, 30]) for j in range(4)]
    img = np.full((60, 80, 3), 7, np.uint8)
    boxes = np.array([[30, 20, 50, 40]], np.float32)
    labels = np.array([2], np.int64)
    before = img.copy()
    out, new_boxes, new_labels = paste_objects(
        img, boxes, labels, (4, donors.__getitem__), 3, np.random.default_rng(0)
    )
    assert np.array_equal(img, before)  # the input (a cached image) is never edited
    assert len(new_boxes) == len(new_labels) > 1  # something was pasted
    assert np.array_equal(new_boxes[0], boxes[0]) and new_labels[0] == 2  # originals first
    x0, y0, x1, y1 = map(int, boxes[0])
    assert np.array_equal(out[y0:y1, x0:x1], before[y0:y1, x0:x1])  # the object stays visible
    for i, b in enumerate(new_boxes[1:], start=1):
        px0, py0, px1, py1 = map(int, b)
        assert 0 <= px0 < px1 <= 80 and 0 <= py0 < py1 <= 60
        assert (px1 - px0, py1 - py0) == (16, 18)  # pasted at its own size
        patch = out[py0:py1, px0:px1]
        value = int(patch[0, 0, 0])
        assert (patch == value).all() and value in {50, 90, 130, 170}  # a donor's pixels
        assert new_labels[i] == value % 3  # with that donor's label
        assert not any(_overlap(b, o) for j, o in enumerate(new_boxes) if j != i)


def test_paste_skips_donors_without_boxes_and_is_seeded():
    empty = (np.zeros((60, 80, 3), np.uint8), np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    donors = [empty, _donor(99, [5, 5, 20, 20])]
    img = np.zeros((60, 80, 3), np.uint8)
    none = np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    runs = [
        paste_objects(img, *none, (2, donors.__getitem__), 4, np.random.default_rng(5))
        for _ in range(2)
    ]
    for a, b in zip(runs[0], runs[1], strict=True):
        assert np.array_equal(a, b)
    assert set(runs[0][2].tolist()) <= {0}  # only the one real donor's label
    only_empty = paste_objects(img, *none, (1, [empty].__getitem__), 4, np.random.default_rng(5))
    assert len(only_empty[1]) == 0 and np.array_equal(only_empty[0], img)


@pytest.fixture()
def scenes(tmp_path: Path) -> list[tuple[Path, DetectionSample]]:
    items = []
    for i in range(4):
        img = np.full((48, 64, 3), 20 * i, np.uint8)
        img[8:24, 8:24] = 200
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), img)
        items.append((path, DetectionSample(path.name, 64, 48, [[8, 8, 24, 24]], [i % 2])))
    return items


def _spec() -> ModelSpec:
    return ModelSpec(
        labels=("a", "b"),
        input_size=(48, 64),
        resize="letterbox",
        task="detection",
        detection=DetectionOptions(),
    )


def test_the_training_set_pastes_and_the_others_do_not(scenes, monkeypatch):
    monkeypatch.setattr(det_data, "COPY_PASTE_P", 1.0)
    store = ImageStore()
    plain = DetectionDataset(scenes, _spec(), store, None, seed=0)
    pasting = DetectionDataset(scenes, _spec(), store, None, seed=0)
    pasting.copy_paste = 3
    counts = [len(pasting[i][1]["boxes"]) for i in range(4)]
    assert [len(plain[i][1]["boxes"]) for i in range(4)] == [1, 1, 1, 1]
    assert all(c >= 1 for c in counts) and sum(counts) > 4
    again = DetectionDataset(scenes, _spec(), store, None, seed=0)
    again.copy_paste = 3
    x, t = pasting[2]
    x2, t2 = again[2]
    assert np.array_equal(x.numpy(), x2.numpy()) and np.array_equal(t["boxes"], t2["boxes"])
    pasting.set_epoch(1)  # another epoch, other draws
    assert any(
        not np.array_equal(pasting[i][1]["boxes"].numpy(), again[i][1]["boxes"].numpy())
        for i in range(4)
    )


def test_copy_paste_defaults_per_task_and_is_checked(tmp_path):
    det = TrainConfig(str(tmp_path), task="detection").resolved()
    cls = TrainConfig(str(tmp_path), task="classification").resolved()
    seg = TrainConfig(str(tmp_path), task="segmentation").resolved()
    assert (det.copy_paste, cls.copy_paste, seg.copy_paste) == (32, 0, 0)
    det.validate()
    cls.validate()
    with pytest.raises(EdgeVisionError, match="--copy-paste 2: .*applies to detection"):
        TrainConfig(str(tmp_path), task="classification", copy_paste=2).resolved().validate()
    with pytest.raises(EdgeVisionError, match="--copy-paste -1 is out of range"):
        TrainConfig(str(tmp_path), task="detection", copy_paste=-1).resolved().validate()
