"""Detection datasets: COCO and YOLO into one form, bad rows listed, seeded stratified splits."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from rich.console import Console

from edgevision.data.dataset import ImageStore, scan_dataset
from edgevision.data.detection import (
    DetectionSample,
    DetectionSplit,
    detect_detection_layout,
    detection_table,
    is_detection_dataset,
    scan_detection,
)
from edgevision.errors import DataError

W, H = 64, 48
LABELS = ["car", "person", "sign"]
CAT_IDS = [3, 7, 12]  # COCO ids need not be contiguous

# Ground truth: image name → [(label index, [x0, y0, x1, y1] pixels)], negatives have none.
GT: dict[str, list[tuple[int, list[float]]]] = {
    f"{i:03d}.png": [(i % 3, [2.0 + i, 3.5, 20.25 + i, 30.0])]
    + ([(1, [30.0, 10.0, 60.0, 44.5])] if i % 4 == 0 else [])
    for i in range(10)
}
GT["010.png"] = []
GT["011.png"] = []


def write_image(path: Path, size: tuple[int, int] = (W, H)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((size[1], size[0], 3), 90, np.uint8))


def coco_doc(gt: dict, labels=LABELS, cat_ids=CAT_IDS) -> dict:
    images, annotations = [], []
    for image_id, (name, boxes) in enumerate(gt.items(), start=1):
        images.append({"id": image_id, "file_name": name, "width": W, "height": H})
        for y, (x0, y0, x1, y1) in boxes:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cat_ids[y],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "iscrowd": 0,
                }
            )
    categories = [{"id": c, "name": n} for c, n in zip(cat_ids, labels, strict=True)]
    return {"images": images, "annotations": annotations, "categories": categories}


def write_coco(folder: Path, gt: dict, doc: dict | None = None) -> Path:
    for name in gt:
        write_image(folder / "images" / name)
    (folder / "annotations.json").write_text(json.dumps(doc or coco_doc(gt)))
    return folder


def yolo_rows(boxes) -> str:
    rows = []
    for y, (x0, y0, x1, y1) in boxes:
        cx, cy, w, h = (x0 + x1) / 2 / W, (y0 + y1) / 2 / H, (x1 - x0) / W, (y1 - y0) / H
        rows.append(f"{y} {cx:.10f} {cy:.10f} {w:.10f} {h:.10f}")
    return "\n".join(rows) + ("\n" if rows else "")


def write_yolo(images: Path, labels: Path, gt: dict) -> None:
    labels.mkdir(parents=True, exist_ok=True)
    for name, boxes in gt.items():
        write_image(images / name)
        if boxes:
            (labels / name).with_suffix(".txt").write_text(yolo_rows(boxes))


def subset(names) -> dict:
    return {n: GT[n] for n in names}


TRAIN, VAL, TEST = sorted(GT)[:8], sorted(GT)[8:10], sorted(GT)[10:]


@pytest.fixture
def coco(tmp_path) -> Path:
    return write_coco(tmp_path / "coco", GT)


@pytest.fixture
def yolo(tmp_path) -> Path:
    root = tmp_path / "yolo"
    write_yolo(root / "images", root / "labels", GT)
    (root / "data.yaml").write_text("names: [car, person, sign]\n")
    return root


def make_layouts(tmp_path) -> dict[str, Path]:
    roots = {"coco": write_coco(tmp_path / "c", GT)}
    for name, names in (("train", TRAIN), ("val", VAL), ("test", TEST)):
        write_coco(tmp_path / "cs" / name, subset(names))
    roots["coco-splits"] = tmp_path / "cs"
    write_yolo(tmp_path / "y" / "images", tmp_path / "y" / "labels", GT)
    (tmp_path / "y" / "classes.txt").write_text("car\nperson\nsign\n")
    roots["yolo"] = tmp_path / "y"
    ys = tmp_path / "ys"
    for name, names in (("train", TRAIN), ("val", VAL), ("test", TEST)):
        write_yolo(ys / "images" / name, ys / "labels" / name, subset(names))
    (ys / "data.yaml").write_text(
        "train: images/train\nval: images/val\ntest: images/test\n"
        "names:\n  0: car\n  1: person\n  2: sign\n"
    )
    roots["yolo-splits"] = ys
    return roots


def all_samples(split: DetectionSplit) -> dict[str, DetectionSample]:
    return {Path(s.path).name: s for rows in split.items.values() for s in rows}


def test_four_layouts_read_to_the_same_form(tmp_path):
    roots = make_layouts(tmp_path)
    for layout, root in roots.items():
        assert detect_detection_layout(root) == layout and is_detection_dataset(root)
        split = scan_detection(root)
        assert split.labels == LABELS and split.skipped == [] and split.issues == [], layout
        assert split.format == layout.split("-")[0]
        samples = all_samples(split)
        assert sorted(samples) == sorted(GT), layout
        for name, boxes in GT.items():
            s = samples[name]
            assert (s.width, s.height) == (W, H)
            assert s.labels == [y for y, _ in boxes], (layout, name)
            want = np.array([b for _, b in boxes], np.float32).reshape(-1, 4)
            np.testing.assert_allclose(s.boxes_array(), want, atol=1e-4)
            assert s.labels_array().dtype == np.int64 and s.boxes_array().dtype == np.float32
        assert all((root / s.path).is_file() for s in samples.values())
        assert all(isinstance(v, float) for s in samples.values() for b in s.boxes for v in b)
    user = scan_detection(roots["coco-splits"])
    assert {n: len(v) for n, v in user.items.items()} == {"train": 8, "val": 2, "test": 2}
    assert user.items["val"][0].path == "val/images/008.png"
    ys = scan_detection(roots["yolo-splits"])
    assert [s.path for s in ys.items["test"]] == ["images/test/010.png", "images/test/011.png"]


def test_negatives_and_empty_arrays(yolo):
    (yolo / "labels" / "010.txt").write_text("\n\n")  # empty label file: a negative too
    split = scan_detection(yolo)
    negatives = [s for s in all_samples(split).values() if not s.boxes]
    assert sorted(Path(s.path).name for s in negatives) == ["010.png", "011.png"]
    assert negatives[0].boxes_array().shape == (0, 4) and negatives[0].labels_array().shape == (0,)
    assert sum(c["negatives"] for c in split.counts().values()) == 2


def test_coco_bad_rows_are_listed_and_good_rows_survive(tmp_path):
    gt = {"a.png": [(0, [4.0, 4.0, 20.0, 20.0])], "b.png": [], "c.png": []}
    root = write_coco(tmp_path / "d", gt)
    doc = coco_doc(gt)
    doc["images"] += [
        {"id": 4, "file_name": "missing.png"},
        {"id": 5, "file_name": "corrupt.png"},
        {"id": 6, "file_name": "a.png"},  # the same file again
        {"id": 7, "file_name": "images/sized.png", "width": 640, "height": 480},  # DATA-relative
    ]
    (root / "images" / "corrupt.png").write_text("not an image")
    write_image(root / "images" / "sized.png")
    write_image(root / "images" / "unlisted.png")

    def ann(i, image_id, bbox, cat=CAT_IDS[1], **extra):
        return {"id": i, "image_id": image_id, "category_id": cat, "bbox": bbox, **extra}

    doc["annotations"] += [
        ann(10, 99, [1, 1, 5, 5]),  # unknown image
        ann(11, 2, [1, 1, 5, 5], cat=5),  # unknown category
        ann(12, 2, [1, 1, 5, 5], iscrowd=1),
        ann(13, 2, [1, 1, "x", 5]),
        ann(14, 2, [1, 1, 5]),
        ann(15, 2, [1, 1, 0, 5]),  # zero width
        ann(16, 2, [50.0, 40.0, 30.0, 20.0]),  # partly outside: clipped
        ann(17, 2, [70.0, 1.0, 5.0, 5.0]),  # entirely outside
        ann(18, 2, [63.5, 1.0, 5.0, 5.0]),  # 0.5 px wide after clipping
        ann(19, 4, [1, 1, 5, 5]),  # on the missing image
        ann(20, 6, [1, 1, 5, 5]),  # on the duplicate
        ann(21, 7, [1.0, 2.0, 10.0, 10.0]),
        ann(22, 3, [1, 1, float("nan"), 5]),
    ]
    (root / "annotations.json").write_text(json.dumps(doc))
    split = scan_detection(root)
    skipped = {s["path"]: s["reason"] for s in split.skipped}
    assert set(skipped) == {
        "images/missing.png",
        "images/corrupt.png",
        "images/a.png",
        "images/unlisted.png",
    }
    assert (
        "does not exist" in skipped["images/missing.png"]
        and "1 box" in skipped["images/missing.png"]
    )
    assert "not a decodable" in skipped["images/corrupt.png"]
    assert "same file" in skipped["images/a.png"] and "later" in skipped["images/a.png"]
    assert "not listed in annotations.json" in skipped["images/unlisted.png"]
    issues = [(i["path"], i["reason"]) for i in split.issues]
    expect = [
        ("annotations.json", "annotation 10: unknown image_id 99"),
        ("images/b.png", "annotation 11: unknown category_id 5"),
        ("images/b.png", "annotation 12: crowd box ignored"),
        ("images/b.png", "annotation 13: bbox"),
        ("images/b.png", "annotation 14: bbox"),
        ("images/c.png", "annotation 22: bbox"),
        ("images/sized.png", "says the image is 640x480, the file decodes to 64x48"),
        ("images/b.png", "annotation 15: zero or negative size"),
        ("images/b.png", "annotation 16: box [50, 40, 80, 60] clipped to the 64x48 image"),
        ("images/b.png", "annotation 17: box [70, 1, 75, 6] is entirely outside"),
        ("images/b.png", "annotation 18: box [63.5, 1, 68.5, 6] is under 1 px"),
    ]
    for path, needle in expect:
        assert any(p == path and needle in r for p, r in issues), (path, needle, issues)
    assert len(issues) == len(expect)
    samples = all_samples(split)
    assert sorted(samples) == ["a.png", "b.png", "c.png", "sized.png"]
    assert samples["a.png"].boxes == [[4.0, 4.0, 20.0, 20.0]] and samples["a.png"].labels == [0]
    assert samples["b.png"].boxes == [[50.0, 40.0, 64.0, 48.0]] and samples["b.png"].labels == [1]
    assert samples["sized.png"].boxes == [[1.0, 2.0, 11.0, 12.0]]
    assert samples["c.png"].boxes == []  # its only box had a NaN: kept as a negative


def test_yolo_bad_rows_name_file_and_line(yolo):
    rows = [
        "0 0.5 0.5 0.25 0.25",  # good
        "1 0.5 0.5 0.25",  # 4 fields
        "1 0.5 abc 0.25 0.25",
        "1.5 0.5 0.5 0.25 0.25",  # class not an integer
        "9 0.5 0.5 0.25 0.25",  # class out of range
        "",
        "2 1.1 0.5 0.5 0.5",  # outside [0, 1] but overlaps: clipped
        "2 1.6 0.5 0.2 0.2",  # outside, no overlap: dropped
        "1 0.5 0.5 0 0.2",  # zero width
        "1 0.9 0.5 0.4 0.5",  # inside [0, 1] values, box crosses the edge: clipped
    ]
    (yolo / "labels" / "000.txt").write_text("\n".join(rows) + "\n")
    (yolo / "labels" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (yolo / "labels" / "001.txt").unlink()  # an image without a label file: a negative
    (yolo / "images" / "notes.txt").write_text("x")
    split = scan_detection(yolo)
    assert {s["path"]: s["reason"] for s in split.skipped} == {
        "labels/orphan.txt": "label file without an image",
        "images/notes.txt": "not an image file (.txt)",
    }
    issues = {i["reason"].split(":")[0]: i for i in split.issues}
    assert all(i["path"] == "labels/000.txt" for i in issues.values())
    assert sorted(issues) == [f"line {n}" for n in (10, 2, 3, 4, 5, 7, 8, 9)]
    assert "4 fields" in issues["line 2"]["reason"]
    assert "non-numeric" in issues["line 3"]["reason"]
    assert "class id 1.5" in issues["line 4"]["reason"] and "0..2" in issues["line 4"]["reason"]
    assert "class id 9" in issues["line 5"]["reason"]
    assert (
        "outside [0, 1]" in issues["line 7"]["reason"] and "clipped" in issues["line 7"]["reason"]
    )
    assert "entirely outside" in issues["line 8"]["reason"]
    assert "zero" in issues["line 9"]["reason"]
    assert "clipped" in issues["line 10"]["reason"]
    sample = all_samples(split)["000.png"]
    assert sample.labels == [0, 2, 1]
    np.testing.assert_allclose(
        sample.boxes, [[24, 18, 40, 30], [54.4, 12, 64, 36], [44.8, 12, 64, 36]], atol=1e-4
    )
    assert all_samples(split)["001.png"].boxes == []


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "holds a list"),
        ('{"images": [], "categories": []}', "has no 'annotations' list"),
        ('{"images": [], "annotations": [], "categories": {}}', "dict as its 'categories'"),
        ('{"images": [], "annotations": [], "categories": [{"id": "1"}]}', r"categories\[0\]"),
        (
            '{"images": [], "annotations": [], "categories": '
            '[{"id": 1, "name": "a"}, {"id": 2, "name": "a"}]}',
            "both named 'a'",
        ),
        ('{"images": [], "annotations": [], "categories": [{"id": 1, "name": " "}]}', "empty"),
    ],
)
def test_malformed_annotations_file_is_a_clear_error(tmp_path, text, needle):
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations.json").write_text(text)
    with pytest.raises(DataError, match=needle) as info:
        scan_detection(tmp_path)
    assert "annotations.json" in info.value.message


def test_no_usable_box_says_why(tmp_path):
    gt = {f"{i}.png": [] for i in range(4)}
    root = write_coco(tmp_path / "d", gt)
    doc = coco_doc(gt)
    doc["annotations"] = [
        {"id": 1, "image_id": 1, "category_id": 99, "bbox": [1, 1, 5, 5]},
        {"id": 2, "image_id": 2, "category_id": 98, "bbox": [1, 1, 5, 5]},
        {"id": 3, "image_id": 3, "category_id": CAT_IDS[0], "bbox": [1, 1, 0, 5]},
    ]
    (root / "annotations.json").write_text(json.dumps(doc))
    with pytest.raises(DataError) as info:
        scan_detection(root)
    message = info.value.message
    assert "4 images, 0 usable boxes of 3: 2 had an unknown category_id, 1 were zero-size" in (
        message
    )
    assert info.value.fix and "category_id" in info.value.fix
    (root / "annotations.json").write_text(json.dumps(coco_doc(gt)))
    with pytest.raises(DataError, match="none is annotated"):
        scan_detection(root)


def test_yolo_names_from_list_dict_and_classes_txt(tmp_path):
    gt = {"a.png": [(0, [1.0, 1.0, 9.0, 9.0])], "b.png": [], "c.png": []}
    root = tmp_path / "y"
    write_yolo(root / "images", root / "labels", gt)
    (root / "labels" / "b.txt").write_text("5 0.5 0.5 0.5 0.5\n")
    with pytest.raises(DataError, match="classes.txt") as info:
        scan_detection(root)
    assert "data.yaml" in info.value.fix
    (root / "classes.txt").write_text("car\nperson\n\n")
    split = scan_detection(root)
    assert split.labels == ["car", "person"]
    assert "class id 5 is not one of 0..1" in split.issues[0]["reason"]
    (root / "data.yaml").write_text("names:\n  - truck\n  - bus\n")  # data.yaml wins
    assert scan_detection(root).labels == ["truck", "bus"]
    (root / "data.yaml").write_text("names: {0: truck, 5: bus}\n")  # ids need not be contiguous
    split = scan_detection(root)
    assert split.labels == ["truck", "bus"] and split.issues == []
    assert all_samples(split)["b.png"].labels == [1]
    (root / "data.yaml").write_text("names: {a: truck}\n")
    with pytest.raises(DataError, match="not integer class ids"):
        scan_detection(root)
    (root / "data.yaml").write_text("nc: 2\n")
    (root / "classes.txt").unlink()
    with pytest.raises(DataError, match="no 'names' key"):
        scan_detection(root)


def _balanced(tmp_path) -> Path:
    """40 images: class a in 20, b in 12, c in 3 (always with a), 5 negatives."""
    gt = {}
    for i in range(40):
        boxes = []
        if i < 20:
            boxes.append((0, [1.0, 1.0, 10.0, 10.0]))
        if 20 <= i < 32:
            boxes.append((1, [2.0, 2.0, 12.0, 12.0]))
        if i in (3, 9, 15):
            boxes.append((2, [20.0, 20.0, 30.0, 30.0]))
        gt[f"{i:03d}.png"] = boxes
    root = tmp_path / "bal"
    write_yolo(root / "images", root / "labels", gt)
    (root / "classes.txt").write_text("a\nb\nc\n")
    return root


def test_split_is_seeded_stratified_and_respects_ratios(tmp_path):
    root = _balanced(tmp_path)
    a, b, c = scan_detection(root), scan_detection(root, seed=0), scan_detection(root, seed=1)
    assert a.items == b.items
    assert a.items["val"] != c.items["val"]
    for split in (a, c):
        paths = [s.path for rows in split.items.values() for s in rows]
        assert len(paths) == len(set(paths)) == 40
        sizes = {n: len(v) for n, v in split.items.items()}
        assert abs(sizes["val"] - 6) <= 1 and abs(sizes["test"] - 6) <= 1, sizes
        counts = split.counts()
        assert all(counts["train"]["per_class"][label] >= 1 for label in split.labels)
        for name in ("val", "test"):
            assert counts[name]["per_class"]["a"] >= 1 and counts[name]["per_class"]["b"] >= 1
        assert counts["train"]["negatives"] >= 1
    with pytest.raises(DataError, match="split ratios"):
        scan_detection(root, ratios=(0.5, 0.5, 0.5))


def test_small_dataset_fills_every_split_and_too_small_is_an_error(tmp_path):
    gt = {"a.png": [(0, [1.0, 1.0, 9.0, 9.0])], "b.png": [(1, [1.0, 1.0, 9.0, 9.0])]}
    root = write_coco(tmp_path / "two", gt, coco_doc(gt))
    with pytest.raises(DataError, match="2 usable image"):
        scan_detection(root)
    gt["c.png"] = [(2, [1.0, 1.0, 9.0, 9.0])]
    root = write_coco(tmp_path / "three", gt, coco_doc(gt))
    split = scan_detection(root)
    assert {n: len(v) for n, v in split.items.items()} == {"train": 1, "val": 1, "test": 1}


def test_coco_splits_carve_missing_val_and_test_from_train(tmp_path):
    root = _balanced(tmp_path)  # reuse the images, as a COCO train split
    doc = coco_doc(
        {p.name: [] for p in sorted((root / "images").iterdir())}, ["a", "b", "c"], [1, 2, 3]
    )
    for line_file in sorted((root / "labels").glob("*.txt")):
        image_id = int(line_file.stem) + 1
        for row in line_file.read_text().splitlines():
            y, cx, cy, w, h = (float(v) for v in row.split())
            box = [(cx - w / 2) * W, (cy - h / 2) * H, w * W, h * H]
            ann = {"id": len(doc["annotations"]), "image_id": image_id, "bbox": box}
            doc["annotations"].append({**ann, "category_id": int(y) + 1})
    train = tmp_path / "cs" / "train"
    (train / "images").mkdir(parents=True)
    for p in (root / "images").iterdir():
        (train / "images" / p.name).write_bytes(p.read_bytes())
    (train / "annotations.json").write_text(json.dumps(doc))
    assert detect_detection_layout(tmp_path / "cs") == "coco-splits"
    carved = scan_detection(tmp_path / "cs")
    assert {n: len(v) for n, v in carved.items.items()} == {
        n: len(v) for n, v in scan_detection(root).items.items()
    }
    assert carved.counts()["train"]["per_class"]["c"] >= 1
    # a user-given val with other categories
    write_coco(tmp_path / "cs" / "val", subset(VAL))
    with pytest.raises(DataError, match="differ") as info:
        scan_detection(tmp_path / "cs")
    assert "only here" in info.value.message and "'car'" in info.value.message


def test_save_load_round_trip_and_classification_split_refused(tmp_path, coco):
    split = scan_detection(coco)
    path = split.save(tmp_path / "run" / "split.json")
    data = json.loads(path.read_text())
    assert data["task"] == "detection" and data["format"] == "coco"
    again = DetectionSplit.load(path)
    assert again == split
    assert again.paths("train")[0][0] == coco / again.items["train"][0].path
    with pytest.raises(DataError, match="does not exist"):
        split.paths("holdout")
    folder = tmp_path / "cls"
    for name in ("cat", "dog"):
        for i in range(3):
            write_image(folder / name / f"{i}.png")
    classification = scan_dataset(folder).save(tmp_path / "cls-split.json")
    with pytest.raises(DataError, match="not a detection split.*classification"):
        DetectionSplit.load(classification)
    data["task"] = "segmentation"
    (tmp_path / "seg.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match="'segmentation'"):
        DetectionSplit.load(tmp_path / "seg.json")
    data["task"] = "detection"
    data["items"]["train"][0]["labels"].append(0)
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match="malformed"):
        DetectionSplit.load(tmp_path / "bad.json")


def test_layout_detection(tmp_path, coco, yolo):
    assert detect_detection_layout(coco) == "coco"
    assert detect_detection_layout(yolo) == "yolo"
    folder = tmp_path / "imagefolder"
    for name in ("cat", "dog"):
        write_image(folder / name / "0.png")
    assert detect_detection_layout(folder) is None and not is_detection_dataset(folder)
    assert detect_detection_layout(tmp_path / "missing") is None
    (tmp_path / "m.csv").write_text("a.png,cat\n")
    assert detect_detection_layout(tmp_path / "m.csv") is None
    with pytest.raises(DataError, match="not a detection dataset"):
        scan_detection(folder)
    (yolo / "data.yaml").write_text("train: images\nnames: [car, person, sign]\n")
    assert detect_detection_layout(yolo) == "yolo-splits"


def test_yolo_splits_carve_and_folder_errors(tmp_path, yolo):
    (yolo / "data.yaml").write_text("train: images\nnames: [car, person, sign]\n")
    split = scan_detection(yolo)  # val and test carved from train
    assert sum(len(v) for v in split.items.values()) == len(GT)
    assert all(split.items[n] for n in ("train", "val", "test"))
    (yolo / "data.yaml").write_text("train: images\nval: images/sub\nnames: [a, b, c]\n")
    (yolo / "images" / "sub").mkdir()
    with pytest.raises(DataError, match="inside"):
        scan_detection(yolo)
    (yolo / "data.yaml").write_text("train: images\nval: nowhere\nnames: [a, b, c]\n")
    with pytest.raises(DataError, match="not a folder"):
        scan_detection(yolo)


def test_store_is_filled_and_table(coco):
    store = ImageStore()
    split = scan_detection(coco, store=store)
    assert len(store) == len(GT)
    console = Console(width=100, record=True)
    console.print(detection_table(split))
    text = console.export_text()
    assert all(label in text for label in LABELS)
    assert "negatives" in text and "images" in text and "boxes" in text
    counts = split.counts()
    assert sum(c["boxes"] for c in counts.values()) == sum(len(b) for b in GT.values())
    assert sum(c["images"] for c in counts.values()) == len(GT)


def test_module_imports_neither_torch_nor_yaml():
    code = (
        "import sys, edgevision.data.detection; "
        "print(sorted(m for m in ('torch', 'yaml') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
