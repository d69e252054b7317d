import json

import numpy as np
import pytest

from edgevision.cli.app import main
from edgevision.data import read_image
from edgevision.data.render import SIGN_CLASSES, draw_sign, sign_quad
from edgevision.data.synth import _rng, generate_dataset, read_meta
from edgevision.data.synth_detect import (
    ANNOTATIONS_FILE,
    DETECTION_CLASSES,
    MAX_SIGNS,
    _plan_signs,
    detection_contact_sheet,
    generate_detection_dataset,
    read_annotations,
    render_scene,
    resolve_detection_classes,
    sign_box,
)
from edgevision.errors import DataError

SMALL = (96, 72)


def _files(root):
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _coverage(name, quad, w, h):
    """The sign's alpha in each pixel: drawn on black and on white, alpha = 1 - difference."""
    dark, light = np.zeros((h, w, 3), np.uint8), np.full((h, w, 3), 255, np.uint8)
    draw_sign(dark, name, quad)
    draw_sign(light, name, quad)
    return 1.0 - (light.astype(np.float32) - dark).mean(axis=2) / 255.0


def _pixel_box(mask):
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)


def _check_exact(name, quad, w, h):
    visible, box = sign_box(name, quad, w, h)
    alpha = _coverage(name, quad, w, h)
    assert box is not None and visible > 0
    # The pixels at least half covered by the sign span the box to within ~1.5 px (a sharp
    # corner of a triangle or diamond covers less than half of its pixel), and every pixel the
    # sign touches at all lies within 2.5 px of it.
    half = _pixel_box(alpha >= 0.5)
    assert np.abs(half - box).max() <= 1.6, (name, box, half)
    touched = _pixel_box(alpha > 0.02)
    assert (touched[:2] <= np.array(box[:2]) + 0.25).all(), (name, box, touched)
    assert (touched[2:] >= np.array(box[2:]) - 0.25).all(), (name, box, touched)
    assert np.abs(touched - box).max() <= 2.5, (name, box, touched)


def test_class_list():
    assert list(SIGN_CLASSES) == DETECTION_CLASSES and "background" not in DETECTION_CLASSES
    assert resolve_detection_classes(["stop,yield", "stop"]) == ["stop", "yield"]
    assert resolve_detection_classes(None) == DETECTION_CLASSES


@pytest.mark.parametrize("name", SIGN_CLASSES)
def test_boxes_are_the_drawn_extent(name):
    w, h = 160, 120
    quads = [
        sign_quad((80, 60), 50),  # upright, inside
        sign_quad((70, 55), 37.3, 7.0, 0.6),  # tilted and turned
        sign_quad((45, 70), 13.7, -6.0, -0.3),  # far away
        sign_quad((150, 60), 40, 3.0, 0.4),  # cut by the right border
        sign_quad((30, 8), 44, -5.0, -0.2),  # cut by the top border
        sign_quad((5, 90), 26, 0.0, 0.5),  # cut by the left border
    ]
    for quad in quads:
        _check_exact(name, quad, w, h)


def test_generated_boxes_are_the_drawn_extent():
    # The placements the generator makes, each sign drawn alone on a plain background.
    w, h = 320, 240
    checked = 0
    for index in range(6):
        rng = _rng(0, "test", index)
        for sign in _plan_signs(rng, w, h, (160.0, 110.0), DETECTION_CLASSES):
            _check_exact(sign.name, sign.quad, w, h)
            assert sign_box(sign.name, sign.quad, w, h)[1] == sign.box
            checked += 1
    assert checked >= 10


def test_scene_statistics():
    w, h = 320, 240
    counts, sizes, touching, boxes = [], [], 0, 0
    for i in range(80):
        img, objects = render_scene(i, size=(w, h))
        assert img.shape == (h, w, 3) and img.dtype == np.uint8
        counts.append(len(objects))
        for obj in objects:
            x0, y0, x1, y1 = obj["box"]
            assert obj["label"] in DETECTION_CLASSES
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            assert x1 - x0 >= 4 and y1 - y0 >= 4
            sizes.append(max(x1 - x0, y1 - y0))
            touching += x0 <= 1e-3 or y0 <= 1e-3 or x1 >= w - 1e-3 or y1 >= h - 1e-3
            boxes += 1
    assert 0 in counts and MAX_SIGNS in counts and max(counts) == MAX_SIGNS
    assert 0.03 < counts.count(0) / len(counts) < 0.25
    assert min(sizes) < 16 and max(sizes) > 100
    assert 0.05 < touching / boxes < 0.35


def test_layout_meta_and_coco(tmp_path):
    from pycocotools.coco import COCO

    names = ["stop", "yield", "speed_limit_50"]
    out = generate_detection_dataset(
        tmp_path / "ds", images=8, size=SMALL, classes=names, seed=2, progress=False
    )
    files = sorted(p.name for p in (out / "images").iterdir())
    assert files == [f"{i:06d}.jpg" for i in range(8)]
    assert read_image(out / "images" / files[0]).shape == (72, 96, 3)
    meta = read_meta(out)
    assert meta == {
        "generator": "edgevision.data.synth_detect",
        "task": "detection",
        "seed": 2,
        "images": 8,
        "size": [96, 72],
        "classes": names,
    }
    coco = COCO(str(out / ANNOTATIONS_FILE))
    cats = coco.loadCats(coco.getCatIds())
    assert [(c["id"], c["name"], c["supercategory"]) for c in cats] == [
        (1, "stop", "sign"),
        (2, "yield", "sign"),
        (3, "speed_limit_50", "sign"),
    ]
    assert sorted(coco.getImgIds()) == list(range(1, 9))
    assert coco.loadImgs(1)[0] == {"id": 1, "file_name": files[0], "width": 96, "height": 72}
    anns = coco.loadAnns(coco.getAnnIds())
    assert anns and all(a["iscrowd"] == 0 and a["area"] > 0 for a in anns)
    # The annotations are render_scene's objects, boxes converted to [x, y, w, h].
    for image_id in range(1, 9):
        _, objects = render_scene(image_id - 1, seed=2, size=SMALL, classes=names)
        got = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
        assert [names[a["category_id"] - 1] for a in got] == [o["label"] for o in objects]
        for a, o in zip(got, objects, strict=True):
            x, y, bw, bh = a["bbox"]
            assert [x, y, x + bw, y + bh] == pytest.approx(o["box"], abs=2e-3)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left behind


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    kw = dict(images=4, size=SMALL, progress=False)
    a = _files(generate_detection_dataset(tmp_path / "a", seed=3, **kw))
    b = _files(generate_detection_dataset(tmp_path / "b", seed=3, **kw))
    c = _files(generate_detection_dataset(tmp_path / "c", seed=4, **kw))
    assert a == b
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a if k.endswith(".jpg"))
    assert a[ANNOTATIONS_FILE] != c[ANNOTATIONS_FILE]
    # An image does not depend on how many were generated alongside it.
    fewer = _files(generate_detection_dataset(tmp_path / "d", seed=3, **{**kw, "images": 2}))
    assert fewer["images/000001.jpg"] == a["images/000001.jpg"]


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(images=0), "image count"),
        (dict(images=-3), "image count"),
        (dict(images=1.5), "image count"),
        (dict(images=True), "image count"),
        (dict(classes=["stop", "speed_limit_70"]), "speed_limit_70"),
        (dict(classes=["background"]), "no background class"),
        (dict(classes=[]), "no classes"),
        (dict(size="320"), "WIDTHxHEIGHT"),
        (dict(size="8x8"), "out of range"),
    ],
)
def test_bad_input(tmp_path, kwargs, needle):
    with pytest.raises(DataError, match=needle) as info:
        generate_detection_dataset(tmp_path / "ds", **{"progress": False, **kwargs})
    assert info.value.fix
    assert not (tmp_path / "ds").exists()


def test_refuses_to_replace_other_folders(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("precious")
    with pytest.raises(DataError, match="not empty"):
        generate_detection_dataset(tmp_path / "mine", images=1, size=SMALL, progress=False)
    assert (tmp_path / "mine" / "thesis.txt").read_text() == "precious"
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        generate_detection_dataset(tmp_path / "file", images=1, size=SMALL, progress=False)
    # A previous synthetic dataset (of either task) is replaced whole.
    out = generate_dataset(
        tmp_path / "ds", per_class=1, size=SMALL, classes=["stop"], progress=False
    )
    generate_detection_dataset(out, images=2, size=SMALL, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [ANNOTATIONS_FILE, "images", "synth.json"]


def test_contact_sheet(tmp_path):
    out = generate_detection_dataset(tmp_path / "ds", images=5, size=SMALL, progress=False)
    png = detection_contact_sheet(out, tmp_path / "sheet.png", count=5, cell_width=96)
    sheet = read_image(png)
    assert sheet.shape == (2 * (72 + 2) + 2, 4 * (96 + 2) + 2, 3)
    with pytest.raises(DataError, match="does not exist"):
        detection_contact_sheet(tmp_path / "missing", tmp_path / "x.png")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / ANNOTATIONS_FILE).write_text(json.dumps({"images": []}))
    with pytest.raises(DataError, match="not COCO"):
        read_annotations(tmp_path / "bad")


def test_cli_synth_detection(tmp_path, capsys):
    out = tmp_path / "det"
    args = ["data", "synth", str(out), "--task", "detection", "--images", "3", "--size", "96x72"]
    preview = tmp_path / "p.png"
    with pytest.raises(SystemExit) as info:
        main([*args, "--classes", "stop,yield", "--preview", str(preview)])
    assert info.value.code == 0
    printed = capsys.readouterr().out
    boxes = len(read_annotations(out)["annotations"])
    assert f"3 images, {boxes} boxes, 2 classes" in printed
    assert read_meta(out)["classes"] == ["stop", "yield"] and preview.stat().st_size > 0
    # Each task has its own count option and its own default size.
    for bad, needle in (
        ([*args, "--per-class", "2"], "--per-class"),
        (["data", "synth", str(tmp_path / "c"), "--images", "2"], "--images"),
        ([*args, "--classes", "background"], "background"),
    ):
        with pytest.raises(SystemExit) as info:
            main(bad)
        assert info.value.code == 2
        assert needle in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["data", "synth", str(tmp_path / "d"), "--task", "detection", "--images", "1"])
    assert info.value.code == 0 and read_meta(tmp_path / "d")["size"] == [320, 240]
    with pytest.raises(SystemExit) as info:
        main(["data", "synth", str(tmp_path / "e"), "--per-class", "1", "--classes", "stop"])
    assert info.value.code == 0 and read_meta(tmp_path / "e")["size"] == [160, 120]
