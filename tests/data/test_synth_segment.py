"""The synthetic segmentation dataset and clip: road scenes with exact per-pixel masks."""

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edgevision.cli.app import main
from edgevision.data import read_image
from edgevision.data import synth_segment as ss
from edgevision.data.render import WHITE, SceneStyle, _sky_and_ground, draw_road, sign_quad
from edgevision.data.segmentation import read_mask, scan_segmentation
from edgevision.data.synth import read_meta
from edgevision.data.synth_detect import _Sign, generate_detection_dataset
from edgevision.data.synth_segment import (
    SEGMENTATION_CLASSES,
    clip_frames,
    generate_segmentation_dataset,
    read_segmentation_truth,
    render_segmentation_scene,
    resolve_segmentation_classes,
    segmentation_contact_sheet,
    write_segmentation_clip,
)
from edgevision.data.video import DashCam, count_frames
from edgevision.errors import DataError

SMALL = (96, 72)
BG, ROAD, MARK, SIGN = range(4)


def _files(root):
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _edge(region: np.ndarray) -> np.ndarray:
    """Pixels within one pixel of ``region``'s border (inside or outside it)."""
    k = np.ones((3, 3), np.uint8)
    r = region.astype(np.uint8)
    return (cv2.dilate(r, k) - cv2.erode(r, k)).astype(bool)


def _max_run(row: np.ndarray) -> int:
    best = run = 0
    for v in row:
        run = run + 1 if v else 0
        best = max(best, run)
    return best


STYLE = SceneStyle(
    sky_top=(200.0, 150.0, 90.0),
    sky_bottom=(230.0, 190.0, 140.0),
    ground=(40.0, 130.0, 70.0),
    road=(100.0, 100.0, 100.0),
    hills=(0.2, 0.1),
    hill_color=(90.0, 110.0, 80.0),
    lane_offset=1.6,
    roadside=((5.6, 0.1, 0), (-5.8, 0.5, 2), (6.5, 0.7, 0)),  # trees and lamp posts
    centre_dashes=True,
)


def test_class_selection():
    assert resolve_segmentation_classes(None) == SEGMENTATION_CLASSES
    assert SEGMENTATION_CLASSES == ["background", "road", "lane_marking", "sign"]
    assert resolve_segmentation_classes(["sign,road", "road"]) == ["background", "road", "sign"]
    assert resolve_segmentation_classes("lane_marking") == ["background", "lane_marking"]
    for bad, needle in ((["car"], "'car'"), (["background"], "besides background"), ([], "no")):
        with pytest.raises(DataError, match=needle) as info:
            resolve_segmentation_classes(bad)
        assert info.value.fix


def test_road_is_draw_road_and_its_mask_is_exact():
    w, h, vp = 320, 240, (150.0, 105.0)
    for distance in (0.0, 7.3, 500.0):
        p = ss._Painter(_sky_and_ground(STYLE, w, h, vp[1]), ss._ids(SEGMENTATION_CLASSES))
        ss._paint_road(p, STYLE, w, h, distance, vp)
        assert np.array_equal(p.img, draw_road(STYLE, w, h, distance, vp))  # the same picture
        img, mask = p.img, p.mask
        assert set(np.unique(mask)) == {BG, ROAD, MARK}
        road_px = (img == 100).all(axis=2)
        white_px = (img == WHITE[0]).all(axis=2)
        # Pixels drawn fully in a class's colour are that class; the class's other pixels are
        # its anti-aliased border (or an occluder in front: a tree, a lamp post).
        assert (mask[road_px] == ROAD).all() and (mask[white_px] == MARK).all()
        for cls, colour in ((ROAD, 100), (MARK, WHITE[0])):
            region = mask == cls
            full = (np.abs(img.astype(int) - colour) <= 8).all(axis=2)  # a few % of another
            odd = region & ~full & ~_edge(region)
            assert not odd[round(vp[1]) + 6 :].any(), (distance, cls)  # lines merge at the horizon
        assert ((mask == BG) & road_px).sum() == 0
        # Roadside objects in front of the road are background.
        hidden = (mask == BG) & _edge(mask == ROAD)
        assert hidden.any()


def _run_at(row: np.ndarray, x: float) -> int:
    """The length of the run of True in ``row`` that holds column ``x`` (0 when none)."""
    lo = hi = int(x)
    if not row[lo]:
        return 0
    while lo > 0 and row[lo - 1]:
        lo -= 1
    while hi < len(row) - 1 and row[hi + 1]:
        hi += 1
    return hi - lo + 1


def test_lane_markings_are_wide_near_and_thin_far():
    w, h, vp = 320, 240, (150.0, 105.0)
    p = ss._Painter(_sky_and_ground(STYLE, w, h, vp[1]), ss._ids(SEGMENTATION_CLASSES))
    ss._paint_road(p, STYLE, w, h, 0.0, vp)
    right = 3.6 - STYLE.lane_offset - 0.3  # the right edge line, metres from the camera
    widths = {}
    for y in (120, 150, 180, 210):  # its run along rows, from far to near
        x = vp[0] + right / 1.3 * (y + 0.5 - vp[1])  # the same pinhole as draw_road
        widths[y] = _run_at(p.mask[y] == MARK, x)
    assert widths[120] < widths[150] < widths[180] < widths[210], widths
    assert widths[210] >= 3 * widths[120] and widths[180] >= 4, widths
    for i in range(6):  # a stride-8 decoder sees the near markings of every scene
        _, mask = render_segmentation_scene(i, size=(320, 240))
        assert max(_max_run(row) for row in mask == MARK) >= 4, i


def test_sign_mask_is_where_the_sign_was_drawn(monkeypatch):
    w, h = 160, 120
    signs = [
        _Sign("yield", sign_quad((40, 50), 22, 6.0, 0.4), [0, 0, 1, 1], 0.2, False, 1.1, False),
        _Sign("stop", sign_quad((110, 45), 44, -4.0, -0.3), [0, 0, 1, 1], 0.4, False, 0.9, False),
    ]
    monkeypatch.setattr(ss, "camera_effects", lambda img, rng: img)
    monkeypatch.setattr(ss, "_plan_signs", lambda *args: signs)
    with_signs, mask = render_segmentation_scene(5, size=(w, h))
    monkeypatch.setattr(ss, "_plan_signs", lambda *args: [])
    without, bare = render_segmentation_scene(5, size=(w, h))
    sign = mask == SIGN
    assert sign.sum() > 0.6 * (22 * 22 * 0.4 + 44 * 44 * 0.75)
    assert np.array_equal(mask[~sign], bare[~sign])  # the rest of the mask is unchanged
    # Beyond the anti-aliased edge the warped sign's alpha is a few percent at most.
    changed = np.abs(with_signs.astype(int) - without).max(axis=2) > 12
    assert not (changed & ~sign & ~_edge(sign)).any()  # nothing drawn outside the mask's sign
    assert (sign & ~changed).sum() <= 0.01 * sign.sum()  # and the sign's pixels all changed
    # Occluders and poles over a sign are background.
    occluded = [_Sign(s.name, s.quad, s.box, s.scale, True, s.gain, True) for s in signs]
    monkeypatch.setattr(ss, "_plan_signs", lambda *args: occluded)
    _, covered = render_segmentation_scene(5, size=(w, h))
    assert (covered == SIGN).sum() < sign.sum()
    assert ((covered == BG) & sign).any()


def test_scenes_hold_every_class():
    seen = np.zeros(4, int)
    for i in range(8):
        img, mask = render_segmentation_scene(i, size=SMALL)
        assert img.shape == (72, 96, 3) and mask.shape == (72, 96) and mask.dtype == np.uint8
        assert mask.max() <= SIGN
        seen += np.bincount(mask.ravel(), minlength=4) > 0
    assert seen[BG] == seen[ROAD] == seen[MARK] == 8 and seen[SIGN] >= 4


def test_layout_meta_and_scan(tmp_path):
    out, summary = generate_segmentation_dataset(
        tmp_path / "ds", count=6, seed=2, size=SMALL, progress=False
    )
    assert sorted(p.name for p in out.iterdir()) == ["classes.txt", "images", "masks", "synth.json"]
    stems = [f"{i:06d}" for i in range(6)]
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{s}.jpg" for s in stems]
    assert sorted(p.name for p in (out / "masks").iterdir()) == [f"{s}.png" for s in stems]
    assert (out / "classes.txt").read_text() == "background\nroad\nlane_marking\nsign\n"
    assert read_meta(out) == {
        "generator": "edgevision.data.synth_segment",
        "task": "segmentation",
        "seed": 2,
        "images": 6,
        "size": [96, 72],
        "classes": SEGMENTATION_CLASSES,
    }
    for i, stem in enumerate(stems):
        _, mask = render_segmentation_scene(i, seed=2, size=SMALL)
        assert np.array_equal(read_mask(out / "masks" / f"{stem}.png"), mask)
        assert read_image(out / "images" / f"{stem}.jpg").shape == (72, 96, 3)
    split = scan_segmentation(out)
    assert split.labels == SEGMENTATION_CLASSES and split.skipped == [] and split.issues == []
    counts = split.counts()
    for key in ("pixels_per_class", "images_per_class"):
        total = {n: sum(c[key][n] for c in counts.values()) for n in SEGMENTATION_CLASSES}
        assert total == summary[key]
    assert summary["images"] == 6 and sum(summary["pixels_per_class"].values()) == 6 * 96 * 72
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left behind


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    kw = dict(count=3, size=SMALL, progress=False)
    a = _files(generate_segmentation_dataset(tmp_path / "a", seed=3, **kw)[0])
    b = _files(generate_segmentation_dataset(tmp_path / "b", seed=3, **kw)[0])
    c = _files(generate_segmentation_dataset(tmp_path / "c", seed=4, **kw)[0])
    assert a == b
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in a if k.startswith(("images/", "masks/")))
    fewer = _files(generate_segmentation_dataset(tmp_path / "d", seed=3, **{**kw, "count": 2})[0])
    assert fewer["images/000001.jpg"] == a["images/000001.jpg"]
    assert fewer["masks/000001.png"] == a["masks/000001.png"]


def test_fewer_classes_same_pictures(tmp_path):
    full = render_segmentation_scene(1, size=SMALL)
    road_only = render_segmentation_scene(1, size=SMALL, classes=["road"])
    no_marks = render_segmentation_scene(1, size=SMALL, classes=["road", "sign"])
    assert np.array_equal(full[0], road_only[0]) and np.array_equal(full[0], no_marks[0])
    # A lane marking is road, a sign is background, when their classes are left out.
    np.testing.assert_array_equal(road_only[1], np.array([0, 1, 1, 0], np.uint8)[full[1]])
    np.testing.assert_array_equal(no_marks[1], np.array([0, 1, 1, 2], np.uint8)[full[1]])
    out, summary = generate_segmentation_dataset(
        tmp_path / "ds", count=1, size=SMALL, classes=["road"], progress=False
    )
    assert (out / "classes.txt").read_text() == "background\nroad\n"
    assert summary["classes"] == ["background", "road"]


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(count=0), "image count"),
        (dict(count=-3), "image count"),
        (dict(count=1.5), "image count"),
        (dict(count=True), "image count"),
        (dict(classes=["road", "car"]), "'car'"),
        (dict(classes=["background"]), "besides background"),
        (dict(size="320"), "WIDTHxHEIGHT"),
        (dict(size="8x8"), "out of range"),
    ],
)
def test_bad_input(tmp_path, kwargs, needle):
    with pytest.raises(DataError, match=needle) as info:
        generate_segmentation_dataset(tmp_path / "ds", **{"progress": False, **kwargs})
    assert info.value.fix
    assert not (tmp_path / "ds").exists()


def test_refuses_to_replace_other_folders(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("precious")
    with pytest.raises(DataError, match="not empty"):
        generate_segmentation_dataset(tmp_path / "mine", count=1, size=SMALL, progress=False)
    assert (tmp_path / "mine" / "thesis.txt").read_text() == "precious"
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        generate_segmentation_dataset(tmp_path / "file", count=1, size=SMALL, progress=False)
    # A previous synthetic dataset (of any task) is replaced whole.
    out = generate_detection_dataset(tmp_path / "ds", images=1, size=SMALL, progress=False)
    generate_segmentation_dataset(out, count=1, size=SMALL, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["classes.txt", "images", "masks", "synth.json"]


def test_contact_sheet(tmp_path):
    out, _ = generate_segmentation_dataset(tmp_path / "ds", count=3, size=SMALL, progress=False)
    png = segmentation_contact_sheet(out, tmp_path / "sheet.png", count=3, cell_width=96)
    assert read_image(png).shape == (2 * (72 + 2) + 2, 2 * (2 * 96 + 2) + 2, 3)
    with pytest.raises(DataError, match="does not exist"):
        segmentation_contact_sheet(tmp_path / "missing", tmp_path / "x.png")


def test_clip_has_a_mask_per_frame(tmp_path):
    out = write_segmentation_clip(tmp_path / "clip.mp4", 1.0, size=SMALL, seed=4, progress=False)
    masks = sorted((tmp_path / "clip.masks").iterdir())
    assert count_frames(out) == len(masks) == 30
    assert [p.name for p in masks] == [f"{i:06d}.png" for i in range(30)]
    truth = json.loads((tmp_path / "clip.json").read_text())
    assert truth == {
        "task": "segmentation",
        "generator": "edgevision.data.synth_segment",
        "labels": SEGMENTATION_CLASSES,
        "fps": 30.0,
        "size": [96, 72],
        "seed": 4,
        "fourcc": "mp4v",
        "frame_count": 30,
        "masks": "clip.masks",
        "ignore_index": 255,
    }
    assert read_segmentation_truth(out)["masks"] == str(tmp_path / "clip.masks")
    stream = clip_frames(seed=4, size=SMALL, fps=30)
    cam = DashCam(seed=4, size=SMALL, fps=30)
    got = [read_mask(p) for p in masks]
    for i in range(30):
        frame, mask = next(stream)
        assert np.array_equal(got[i], mask)
        if i % 10 == 0:  # the very frames of the sign clip (`write_video`)
            assert np.array_equal(frame, cam.frame(i)[0])
    assert not np.array_equal(got[0], got[15])  # the markings move as the car drives
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_clip_bad_paths(tmp_path):
    with pytest.raises(DataError, match="must end in .mp4"):
        write_segmentation_clip(tmp_path / "clip.avi", 1.0, progress=False)
    with pytest.raises(DataError, match="out of range"):
        write_segmentation_clip(tmp_path / "clip.mp4", 0, progress=False)
    (tmp_path / "mine.masks").mkdir()
    (tmp_path / "mine.masks" / "notes.txt").write_text("precious")
    with pytest.raises(DataError, match="not a clip's masks"):
        write_segmentation_clip(tmp_path / "mine.mp4", 0.1, size=SMALL, progress=False)
    assert (tmp_path / "mine.masks" / "notes.txt").is_file()
    (tmp_path / "x.json").write_text(json.dumps({"fps": 15, "frames": []}))
    with pytest.raises(DataError, match="not a segmentation clip"):
        read_segmentation_truth(tmp_path / "x.mp4")


def test_cli_synth_and_video_segmentation(tmp_path, capsys):
    out, preview = tmp_path / "seg", tmp_path / "p.png"
    args = ["data", "synth", str(out), "--task", "segmentation", "--images", "3"]
    with pytest.raises(SystemExit) as info:
        main([*args, "--size", "96x72", "--classes", "road,sign", "--preview", str(preview)])
    assert info.value.code == 0
    printed = capsys.readouterr().out
    assert "3 images, 3 classes (road" in printed and "sign" in printed
    assert read_meta(out)["classes"] == ["background", "road", "sign"]
    assert preview.stat().st_size > 0
    with pytest.raises(SystemExit) as info:
        main([*args, "--per-class", "2"])
    assert info.value.code == 2 and "--per-class" in capsys.readouterr().err
    clip = tmp_path / "c.mp4"
    with pytest.raises(SystemExit) as info:
        main(["data", "video", str(clip), "--task", "segmentation", "--seconds", "0.5"])
    assert info.value.code == 0
    assert "8 frames" in capsys.readouterr().out  # 15 fps, the video command's default
    assert read_segmentation_truth(clip)["frame_count"] == 8


def test_module_imports_no_torch():
    code = (
        "import sys, edgevision.data.synth_segment; "
        "print(sorted(m for m in ('torch', 'sklearn', 'PIL') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
