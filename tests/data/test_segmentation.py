"""Segmentation datasets: images + class-id masks, bad rows listed, seeded stratified splits."""

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from rich.console import Console

from edgevision.data.dataset import ImageStore, scan_dataset
from edgevision.data.segmentation import (
    IGNORE_INDEX,
    SegmentationSample,
    SegmentationSplit,
    detect_segmentation_layout,
    is_segmentation_dataset,
    read_mask,
    scan_segmentation,
    segmentation_table,
)
from edgevision.errors import DataError

W, H = 32, 24
LABELS = ["background", "road", "sign"]


def write_image(path: Path, size: tuple[int, int] = (W, H)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((size[1], size[0], 3), 90, np.uint8))


def write_mask(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), mask)


def scene_mask(sign: bool = False, size: tuple[int, int] = (W, H)) -> np.ndarray:
    """Background on top, road in the bottom half, optionally a sign square, an ignored row."""
    mask = np.zeros((size[1], size[0]), np.uint8)
    mask[size[1] // 2 :] = 1
    if sign:
        mask[2:8, 3:9] = 2
    mask[size[1] // 2 - 1] = IGNORE_INDEX
    return mask


def palette_png(ids: np.ndarray, bits: int = 8) -> bytes:
    """A palette ('P' mode) PNG whose colours are not its indices, with a tRNS chunk."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    per_byte = 8 // bits
    rows = []
    for row in ids:
        packed = bytearray()
        for i in range(0, len(row), per_byte):
            byte = 0
            for j, v in enumerate(row[i : i + per_byte]):
                byte |= int(v) << (8 - bits * (j + 1))
            packed.append(byte)
        rows.append(b"\x00" + bytes(packed))
    colours = bytes((200 - 7 * i) % 256 for i in range(3 * min(256, 1 << bits)))
    h, w = ids.shape
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bits, 3, 0, 0, 0))
        + chunk(b"PLTE", colours)
        + chunk(b"tRNS", b"\x00")
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )


def make_dataset(root: Path, n: int = 8, labels=LABELS, sign_every: int = 2) -> Path:
    for i in range(n):
        write_image(root / "images" / f"{i:03d}.png")
        write_mask(root / "masks" / f"{i:03d}.png", scene_mask(sign=i % sign_every == 0))
    (root / "classes.txt").write_text("\n".join(labels) + "\n\n")
    return root


def all_samples(split: SegmentationSplit) -> dict[str, SegmentationSample]:
    return {Path(s.path).name: s for rows in split.items.values() for s in rows}


def test_reads_images_masks_and_counts(tmp_path):
    root = make_dataset(tmp_path / "d")
    split = scan_segmentation(root)
    assert split.labels == LABELS and split.format == "masks"
    assert split.skipped == [] and split.issues == []
    samples = all_samples(split)
    assert sorted(samples) == [f"{i:03d}.png" for i in range(8)]
    road = W * H // 2
    for name, s in samples.items():
        sign = int(name[:3]) % 2 == 0
        assert (s.width, s.height) == (W, H) and s.mask == f"masks/{name}"
        assert s.classes == ([0, 1, 2] if sign else [0, 1])
        assert s.pixels == ([W * (H // 2 - 1) - 36, road, 36] if sign else [W * (H // 2 - 1), road])
    for image, mask, s in split.paths("train"):
        assert image == root / s.path and mask == root / s.mask and mask.is_file()
    counts = split.counts()
    assert sum(c["images"] for c in counts.values()) == 8
    assert sum(c["images_per_class"]["sign"] for c in counts.values()) == 4
    assert sum(c["pixels_per_class"]["road"] for c in counts.values()) == 8 * road
    with pytest.raises(DataError, match="does not exist"):
        split.paths("holdout")


def test_bad_rows_are_skipped_with_reasons(tmp_path):
    root = make_dataset(tmp_path / "d", n=4)
    images, masks = root / "images", root / "masks"

    def pair(name: str, mask: np.ndarray | None = None, size=(W, H)) -> None:
        write_image(images / f"{name}.png", size)
        if mask is not None:
            write_mask(masks / f"{name}.png", mask)

    pair("nomask")
    pair("jpegmask")
    write_mask(masks / "jpegmask.jpg", scene_mask())
    pair("rgb", np.dstack([scene_mask()] * 3))
    pair("garbage")
    (masks / "garbage.png").write_text("not a png")
    pair("bigger", scene_mask(size=(W * 2, H)))
    bad = scene_mask()
    bad[0, :3] = [3, 7, 254]
    pair("badid", bad)
    pair("ignored", np.full((H, W), IGNORE_INDEX, np.uint8))
    (images / "corrupt.png").write_text("not an image")
    write_mask(masks / "corrupt.png", scene_mask())
    write_mask(masks / "orphan.png", scene_mask())
    (masks / "orphan.jpg").write_text("x")
    (images / "notes.txt").write_text("x")
    pair("dup", scene_mask())
    write_image(images / "dup.jpg")
    pair("palette")
    (masks / "palette.png").write_bytes(palette_png(scene_mask(sign=True)))
    pair("sub/deep", scene_mask())
    split = scan_segmentation(root)
    skipped = {s["path"]: s["reason"] for s in split.skipped}
    expect = {
        "images/nomask.png": "no mask: masks/nomask.png does not exist",
        "images/jpegmask.png": "masks/jpegmask.jpg is not a PNG",
        "images/rgb.png": "is an RGB PNG, not single-channel",
        "images/garbage.png": "its mask masks/garbage.png is not usable",
        "images/bigger.png": "its mask masks/bigger.png is 64x24, the image is 32x24",
        "images/badid.png": "class id(s) 3, 7, 254 outside the class list (ids 0..2",
        "images/ignored.png": "all 255 (ignore)",
        "images/corrupt.png": "not a decodable image",
        "masks/orphan.png": "mask without an image",
        "masks/orphan.jpg": "mask without an image",
        "images/notes.txt": "not an image file (.txt)",
        "images/dup.png": "same name",
    }
    assert set(skipped) == set(expect), skipped
    for path, needle in expect.items():
        assert needle in skipped[path], (path, skipped[path])
    samples = all_samples(split)
    assert sorted(samples) == [
        *(f"00{i}.png" for i in range(4)),
        "deep.png",
        "dup.jpg",
        "palette.png",
    ]
    assert samples["deep.png"].mask == "masks/sub/deep.png"
    assert samples["dup.jpg"].mask == "masks/dup.png"
    assert samples["palette.png"].classes == [0, 1, 2]


def test_palette_mask_is_read_by_its_indices(tmp_path):
    root = make_dataset(tmp_path / "d", n=3)
    write_image(root / "images" / "palette.png")
    (root / "masks" / "palette.png").write_bytes(palette_png(scene_mask(sign=True)))
    split = scan_segmentation(root)
    assert split.skipped == []
    sample = all_samples(split)["palette.png"]
    assert sample.classes == [0, 1, 2] and sample.pixels[2] == 36


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_read_mask_palette_bit_depths(tmp_path, bits):
    ids = (np.arange(H * W).reshape(H, W) % min(1 << bits, 5)).astype(np.uint8)
    path = tmp_path / "p.png"
    path.write_bytes(palette_png(ids, bits))
    got = read_mask(path)
    assert got.dtype == np.uint8 and got.shape == (H, W)
    np.testing.assert_array_equal(got, ids)


def test_read_mask_refuses_what_is_not_ids(tmp_path):
    ids = scene_mask(sign=True)
    cv2.imwrite(str(tmp_path / "g16.png"), ids.astype(np.uint16))
    np.testing.assert_array_equal(read_mask(tmp_path / "g16.png"), ids)
    cv2.imwrite(str(tmp_path / "big16.png"), (ids.astype(np.uint16) * 300))
    cv2.imwrite(str(tmp_path / "rgb.png"), np.dstack([ids] * 3))
    cv2.imwrite(str(tmp_path / "rgba.png"), np.dstack([ids] * 4))
    cv2.imwrite(str(tmp_path / "m.jpg"), ids)
    (tmp_path / "empty.png").write_bytes(b"")
    data = (tmp_path / "g16.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    cases = {
        "big16.png": "ids are 0..254",
        "rgb.png": "an RGB PNG",
        "rgba.png": "an RGBA PNG",
        "m.jpg": "JPEG",
        "empty.png": "empty",
        "cut.png": "truncated",
        "missing.png": "does not exist",
    }
    for name, needle in cases.items():
        with pytest.raises(DataError, match=needle) as info:
            read_mask(tmp_path / name)
        assert info.value.fix, name


def test_no_usable_image_says_why(tmp_path):
    root = tmp_path / "d"
    for i in range(3):
        write_image(root / "images" / f"{i}.png")
    write_mask(root / "masks" / "2.png", scene_mask(size=(8, 8)))
    (root / "classes.txt").write_text("background\nroad\n")
    with pytest.raises(DataError) as info:
        scan_segmentation(root)
    assert "0 usable images of 3: 2 had no mask, 1 had a mask of another size" in (
        info.value.message
    )
    assert "first: images/0.png: no mask" in info.value.message
    assert "masks/NAME.png" in info.value.fix


def test_classes_txt_missing_or_bad(tmp_path):
    root = make_dataset(tmp_path / "d", n=3)
    (root / "classes.txt").unlink()
    with pytest.raises(DataError, match="no classes.txt") as info:
        scan_segmentation(root)
    assert "one class name per line" in info.value.fix and "classes.txt" in info.value.fix
    for text, needle in (
        ("background\n", "at least 2"),
        ("background\nroad\nroad\n", "both named 'road'"),
        ("background\n \nroad\n", "empty name"),
    ):
        (root / "classes.txt").write_text(text)
        with pytest.raises(DataError, match=needle):
            scan_segmentation(root)


def _balanced(root: Path) -> Path:
    """40 images: road in all, sign in 12, cone in 3 (rare), background in all."""
    for i in range(40):
        mask = scene_mask(sign=20 <= i < 32)
        if i in (3, 9, 15):
            mask[20:22, 20:22] = 3
        write_image(root / "images" / f"{i:03d}.png")
        write_mask(root / "masks" / f"{i:03d}.png", mask)
    (root / "classes.txt").write_text("background\nroad\nsign\ncone\n")
    return root


def test_split_is_seeded_stratified_and_respects_ratios(tmp_path):
    root = _balanced(tmp_path / "bal")
    a, b, c = (
        scan_segmentation(root),
        scan_segmentation(root, seed=0),
        scan_segmentation(root, seed=1),
    )
    assert a.items == b.items and a.items["val"] != c.items["val"]
    for split in (a, c):
        paths = [s.path for rows in split.items.values() for s in rows]
        assert len(paths) == len(set(paths)) == 40
        sizes = {n: len(v) for n, v in split.items.items()}
        assert abs(sizes["val"] - 6) <= 1 and abs(sizes["test"] - 6) <= 1, sizes
        counts = split.counts()
        assert all(counts["train"]["images_per_class"][label] >= 1 for label in split.labels)
        for name in ("val", "test"):
            assert counts[name]["images_per_class"]["sign"] >= 1
    rarest = dict(a.labelled_paths("train"))
    for path, s in ((root / s.path, s) for s in a.items["train"]):
        want = "cone" if 3 in s.classes else "sign" if 2 in s.classes else "background"
        assert rarest[path] == want, (path, rarest[path])
    with pytest.raises(DataError, match="split ratios"):
        scan_segmentation(root, ratios=(0.5, 0.5, 0.5))
    with pytest.raises(DataError, match="2 usable image"):
        scan_segmentation(make_dataset(tmp_path / "two", n=2))


def test_split_folders_and_carving(tmp_path):
    root = tmp_path / "sp"
    for name, n in (("train", 10), ("val", 2), ("test", 2)):
        make_dataset(root / name, n=n)
        (root / name / "classes.txt").unlink()
    (root / "classes.txt").write_text("background\nroad\nsign\n")
    assert detect_segmentation_layout(root) == "masks-splits" and is_segmentation_dataset(root)
    split = scan_segmentation(root)
    assert {n: len(v) for n, v in split.items.items()} == {"train": 10, "val": 2, "test": 2}
    assert split.items["val"][0].path == "val/images/000.png"
    assert split.items["val"][0].mask == "val/masks/000.png"
    # Each split's own identical classes.txt is fine; a different one is not.
    for name in ("train", "val", "test"):
        (root / name / "classes.txt").write_text("background\nroad\nsign\n")
    (root / "classes.txt").unlink()
    assert scan_segmentation(root).labels == LABELS
    (root / "test" / "classes.txt").write_text("background\nroad\ncar\n")
    with pytest.raises(DataError, match="differs"):
        scan_segmentation(root)
    # val and test carved from train when only train is given.
    import shutil

    shutil.rmtree(root / "val")
    shutil.rmtree(root / "test")
    carved = scan_segmentation(root)
    assert sum(len(v) for v in carved.items.values()) == 10
    assert all(carved.items[n] for n in ("train", "val", "test"))
    (root / "val" / "images").mkdir(parents=True)
    with pytest.raises(DataError, match="masks"):
        scan_segmentation(root)


def test_save_load_round_trip_and_other_tasks_refused(tmp_path):
    root = make_dataset(tmp_path / "d")
    split = scan_segmentation(root)
    path = split.save(tmp_path / "run" / "split.json")
    data = json.loads(path.read_text())
    assert data["task"] == "segmentation" and data["format"] == "masks"
    again = SegmentationSplit.load(path)
    assert again == split
    assert again.paths("train")[0][1] == root / again.items["train"][0].mask
    folder = tmp_path / "cls"
    for name in ("cat", "dog"):
        for i in range(3):
            write_image(folder / name / f"{i}.png")
    classification = scan_dataset(folder).save(tmp_path / "cls-split.json")
    with pytest.raises(DataError, match="not a segmentation split.*classification"):
        SegmentationSplit.load(classification)
    for task in ("detection", None):
        other = dict(data, task=task)
        (tmp_path / "other.json").write_text(json.dumps(other))
        with pytest.raises(DataError, match=f"task {task!r}"):
            SegmentationSplit.load(tmp_path / "other.json")
    (tmp_path / "v.json").write_text(json.dumps(dict(data, schema_version=99)))
    with pytest.raises(DataError, match="schema_version 99"):
        SegmentationSplit.load(tmp_path / "v.json")
    data["items"]["train"][0]["classes"] = [5]
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match="malformed"):
        SegmentationSplit.load(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(DataError, match="not a JSON object"):
        SegmentationSplit.load(tmp_path / "list.json")


def test_layout_detection_leaves_other_tasks_alone(tmp_path):
    from tests.data.test_detection import GT, write_coco, write_yolo

    assert is_segmentation_dataset(make_dataset(tmp_path / "flat", n=1))
    coco = write_coco(tmp_path / "coco", GT)
    yolo = tmp_path / "yolo"
    write_yolo(yolo / "images", yolo / "labels", GT)
    (yolo / "classes.txt").write_text("car\nperson\nsign\n")
    folder = tmp_path / "imagefolder"
    for name in ("cat", "dog"):
        write_image(folder / name / "0.png")
    (tmp_path / "m.csv").write_text("a.png,cat\n")
    for other in (coco, yolo, folder, tmp_path / "missing", tmp_path / "m.csv"):
        assert not is_segmentation_dataset(other) and detect_segmentation_layout(other) is None
    with pytest.raises(DataError, match="not a segmentation dataset") as info:
        scan_segmentation(folder)
    assert "masks/" in info.value.fix


def test_unused_class_is_an_issue_store_and_table(tmp_path):
    root = make_dataset(tmp_path / "d", labels=[*LABELS, "cone"])
    store = ImageStore()
    split = scan_segmentation(root, store=store)
    assert len(store) == 8
    assert split.issues == [
        {"path": "classes.txt", "reason": "class 3 ('cone') appears in no usable mask"}
    ]
    console = Console(width=100, record=True)
    console.print(segmentation_table(split))
    text = console.export_text()
    assert all(label in text for label in split.labels)
    assert "images" in text and "pixels" in text and "%" in text


def test_ignore_index_is_the_spec_one():
    from edgevision.tasks.segment.spec import IGNORE_INDEX as SPEC_IGNORE

    assert IGNORE_INDEX == SPEC_IGNORE == 255


def test_module_imports_no_torch():
    code = (
        "import sys, edgevision.data.segmentation; "
        "print(sorted(m for m in ('torch', 'yaml', 'PIL') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_segmentation_folder_is_inferred_as_segmentation_not_yolo(tmp_path):
    from edgevision.data.detection import detect_detection_layout
    from edgevision.data.synth_segment import generate_segmentation_dataset
    from edgevision.tasks.base import infer_task

    data, _ = generate_segmentation_dataset(
        tmp_path / "seg", count=4, size=(64, 48), progress=False
    )
    assert detect_detection_layout(data) is None  # images/ + classes.txt, but masks/, no labels/
    assert infer_task(data) == "segmentation"
