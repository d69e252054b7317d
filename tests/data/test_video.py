import itertools
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edgevision.cli.app import main
from edgevision.data.render import MIN_SIGN_SCALE
from edgevision.data.video import LABELS, DashCam, count_frames, read_truth, write_video
from edgevision.errors import DataError

SIZE = (96, 72)


def _clip(path, seed=0, seconds=2.0, fps=10):
    return write_video(path, seconds=seconds, fps=fps, size=SIZE, seed=seed, progress=False)


def test_clip_frames_and_ground_truth(tmp_path):
    out = _clip(tmp_path / "clip.mp4")
    assert count_frames(out) == 20
    cap = cv2.VideoCapture(str(out))
    ok, first = cap.read()
    cap.release()
    assert ok and first.shape == (72, 96, 3)
    truth = json.loads(out.with_suffix(".json").read_text())
    assert truth["fps"] == 10 and truth["size"] == [96, 72]
    assert [f["index"] for f in truth["frames"]] == list(range(20))
    assert {f["label"] for f in truth["frames"]} <= set(LABELS)
    for f in truth["frames"]:
        assert (f["box"] is None) == (f["sign"] is None)
    assert read_truth(out) == truth
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp left behind


def test_same_seed_same_bytes(tmp_path):
    a = _clip(tmp_path / "a.mp4", seed=1).read_bytes()
    b = _clip(tmp_path / "b.mp4", seed=1).read_bytes()
    c = _clip(tmp_path / "c.mp4", seed=2).read_bytes()
    assert a == b and a != c
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_random_access_matches_the_stream():
    cam = DashCam(seed=5, size=SIZE, fps=10)
    stream = list(cam.frames(12))
    assert len(stream) == 12
    fresh = DashCam(seed=5, size=SIZE, fps=10)
    for i in (11, 3, 7):  # out of order, on a camera that has not streamed
        frame, truth = fresh.frame(i)
        assert np.array_equal(frame, stream[i][0]) and truth == stream[i][1]
    endless = DashCam(seed=5, size=SIZE, fps=10).frames()
    assert len(list(itertools.islice(endless, 3))) == 3


def test_signs_approach_and_are_labelled():
    cam = DashCam(seed=0, size=(320, 240), fps=15)
    truths = [cam.truth(i) for i in range(600)]
    labelled = [t for t in truths if t["label"] != "background"]
    assert len({t["label"] for t in labelled}) >= 8  # the classes cycle
    assert 0.15 < len(labelled) / len(truths) < 0.5
    for t in labelled:
        assert t["sign"] == t["label"]
        assert t["box"][3] >= 0.6 * MIN_SIGN_SCALE * 240  # large enough (and mostly in view)
    # Each sign appears small first: its first box is far smaller than its last labelled one.
    first = next(t for t in truths if t["sign"])
    last = [t for t in labelled if t["sign"] == first["sign"]][-1]
    assert first["box"][3] * 3 < last["box"][3]


def test_the_labelled_sign_is_drawn_in_its_box():
    cam = DashCam(seed=0, size=(320, 240), fps=15)
    i = next(i for i in range(400) if cam.truth(i)["label"] in ("stop", "no_entry"))
    frame, truth = cam.frame(i)
    x, y, w, h = truth["box"]
    hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)
    red = ((hsv[..., 0] < 8) | (hsv[..., 0] > 170)) & (hsv[..., 1] > 90)
    inside = red[y : y + h, x : x + w]
    outside = (red.sum() - inside.sum()) / (red.size - inside.size)
    assert inside.mean() > 0.3 and outside < 0.02


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(out="clip.avi"), r"\.mp4"),
        (dict(seconds=0), "out of range"),
        (dict(seconds=-2), "out of range"),
        (dict(fps=0), "fps"),
        (dict(size="320"), "WIDTHxHEIGHT"),
    ],
)
def test_bad_input(tmp_path, kwargs, needle):
    kwargs = {"progress": False, **kwargs, "out": tmp_path / kwargs.get("out", "clip.mp4")}
    with pytest.raises(DataError, match=needle):
        write_video(**kwargs)
    assert not list(tmp_path.iterdir())


def test_bad_frame_index_and_truth(tmp_path):
    with pytest.raises(DataError, match="frame index"):
        DashCam(size=SIZE).frame(-1)
    with pytest.raises(DataError, match="does not exist"):
        read_truth(tmp_path / "none.mp4")


def test_cli_video(tmp_path, capsys):
    out = tmp_path / "clip.mp4"
    with pytest.raises(SystemExit) as info:
        main(["data", "video", str(out), "--seconds", "1", "--fps", "8", "--size", "64x48"])
    assert info.value.code == 0
    assert count_frames(out) == 8 and len(read_truth(out)["frames"]) == 8
    with pytest.raises(SystemExit) as info:
        main(["data", "video", str(tmp_path / "clip.gif")])
    assert info.value.code == 2
    assert ".mp4" in capsys.readouterr().err


def test_video_module_needs_only_numpy_and_opencv():
    code = (
        "import sys, edgevision.data.video; "
        "print(sorted(m for m in ('torch', 'sklearn', 'timm', 'onnx') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_video_to_an_unwritable_place_is_one_clear_error(tmp_path):
    import pytest

    from edgevision.data.video import write_video
    from edgevision.errors import OutputError

    (tmp_path / "clip.mp4").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        write_video(tmp_path / "clip.mp4", seconds=0.2)
    with pytest.raises(OutputError, match="cannot be written"):
        write_video("/proc/x/clip.mp4", seconds=0.2)


def test_truth_objects_carry_every_visible_sign(tmp_path):
    cam = DashCam(seed=0, size=(320, 240), fps=15)
    truths = [cam.truth(i) for i in range(200)]
    frames_of: dict[int, list[int]] = {}
    for t in truths:
        assert isinstance(t["objects"], list)
        if t["objects"]:
            assert t["box"] is not None
        if t["label"] != "background":
            assert len(t["objects"]) == 1
        for obj in t["objects"]:
            x0, y0, x1, y1 = obj["box"]
            assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 240
            assert obj["label"] == t["sign"]
            # The exact box lies in the whole-pixel one of the sign's corners and fills most of it.
            bx, by, bw, bh = t["box"]
            assert bx <= x0 and by <= y0 and x1 <= bx + bw and y1 <= by + bh
            if t["label"] != "background":
                assert (x1 - x0) * (y1 - y0) > 0.6 * bw * bh
            frames_of.setdefault(obj["id"], []).append(t["index"])
    assert len(frames_of) >= 4
    labels = {
        k: {t["sign"] for t in truths if t["index"] in frames} for k, frames in frames_of.items()
    }
    assert all(len(names) == 1 for names in labels.values())  # one identity, one sign
    ids = sorted(frames_of)
    assert ids == list(range(len(ids)))
    for k in ids:  # an identity holds over a sign's whole approach, and signs come one by one
        frames = frames_of[k]
        assert frames == list(range(frames[0], frames[-1] + 1)) and len(frames) > 10
        if k + 1 in frames_of:
            assert frames[-1] < frames_of[k + 1][0]
    # The clip's JSON carries the same objects.
    out = write_video(tmp_path / "clip.mp4", seconds=2.0, fps=10, size=SIZE, progress=False)
    written = read_truth(out)["frames"]
    small = DashCam(seed=0, size=SIZE, fps=10)
    assert [f["objects"] for f in written] == [small.truth(i)["objects"] for i in range(20)]
    assert any(f["objects"] for f in written)
