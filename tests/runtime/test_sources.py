"""Sources by URI: dispatch, options, and clear errors for what this machine cannot open."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgevision.errors import RegistryError, SourceError
from edgevision.opencv import describe_opencv
from edgevision.runtime.sources import (
    CorruptFrame,
    EndOfSource,
    make_source,
    open_source,
    scheme_of,
    split_query,
)
from edgevision.runtime.sources.images import ImageFolderSource
from edgevision.runtime.sources.opencv import (
    CsiSource,
    GstSource,
    StreamSource,
    V4l2Source,
    VideoFileSource,
    csi_pipeline,
    opencv_video_io,
    v4l2_index,
)
from edgevision.runtime.sources.synthetic import SyntheticSource


@pytest.mark.parametrize(
    ("uri", "scheme"),
    [
        ("clip.mp4", "file"),
        ("file://clip.mp4", "file"),
        ("v4l2:///dev/video0", "v4l2"),
        ("/dev/video3", "v4l2"),
        ("0", "v4l2"),
        ("csi://0", "csi"),
        ("rtsp://cam.local/stream?channel=1", "rtsp"),
        ("gst:videotestsrc ! appsink", "gst"),
        ("gst:rtspsrc location=rtsp://x ! appsink", "gst"),
        ("frames/*.jpg", "images"),
        ("frame.png", "images"),
        ("synthetic://?fps=15", "synthetic"),
    ],
)
def test_scheme_of(uri, scheme):
    assert scheme_of(uri) == scheme


def test_scheme_of_folder_is_images(tmp_path):
    assert scheme_of(str(tmp_path)) == "images"


def test_make_source_picks_the_class():
    assert type(make_source("clip.mp4")) is VideoFileSource
    assert type(make_source("/dev/video0")) is V4l2Source
    assert type(make_source("csi://0")) is CsiSource
    assert type(make_source("rtsp://host/s")) is StreamSource
    assert type(make_source("gst:videotestsrc ! appsink")) is GstSource
    assert type(make_source("synthetic://")) is SyntheticSource


def test_unknown_scheme_lists_the_valid_ones():
    with pytest.raises(RegistryError, match="unknown source scheme 'ftp'") as info:
        make_source("ftp://x/y")
    assert "synthetic" in info.value.fix and "v4l2" in info.value.fix


def test_split_query_and_options_override():
    assert split_query("synthetic://?fps=15&seed=2") == ("synthetic://", {"fps": "15", "seed": "2"})
    src = make_source("synthetic://?fps=15&seed=2&size=64x48", seed=5)
    assert src.options == {"fps": 15.0, "seed": 5, "size": (64, 48)}


@pytest.mark.parametrize(
    ("uri", "match"),
    [
        ("synthetic://?fps=0", "fps=.*invalid"),
        ("synthetic://?size=big", "size=.*invalid"),
        ("synthetic://?colour=red", "unknown option 'colour'"),
        ("synthetic://elsewhere", "unknown synthetic source"),
    ],
)
def test_bad_synthetic_options(uri, match):
    with pytest.raises(SourceError, match=match):
        make_source(uri)


def test_synthetic_frames_truth_and_rate():
    with open_source("synthetic://?fps=50&size=64x48&seed=1&frames=3") as src:
        assert src.live and src.fps == 50
        frames = [src.read() for _ in range(3)]
        assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in frames)
        assert src.frame_meta()["truth"]["index"] == 2
        with pytest.raises(EndOfSource):
            src.read()


def test_missing_v4l2_device_is_a_clear_error():
    with pytest.raises(SourceError, match="no such video device /dev/video99") as info:
        open_source("v4l2:///dev/video99")
    assert "ls /dev/video*" in info.value.fix
    with pytest.raises(SourceError, match="/dev/video99"):
        open_source("99")


def test_v4l2_index():
    assert v4l2_index("2") == 2
    with pytest.raises(SourceError, match="no such video device"):
        v4l2_index("/dev/video98")


def test_v4l2_options_from_query():
    src = make_source("v4l2:///dev/video0?width=640&height=480&fps=30")
    assert src.options == {"width": 640, "height": 480, "fps": 30.0}
    assert src.target == "/dev/video0"


def test_opencv_video_io_reads_the_build_information():
    io = opencv_video_io()
    assert "ffmpeg" in io and "gstreamer" in io
    lines = {
        line.split(":")[0].strip().lower(): line.split(":", 1)[1].strip()
        for line in cv2.getBuildInformation().splitlines()
        if line.startswith("    ") and not line.startswith("      ") and ":" in line
    }
    for name in ("ffmpeg", "gstreamer"):
        assert io[name] is lines[name].startswith("YES")


@pytest.mark.skipif(opencv_video_io().get("gstreamer", False), reason="OpenCV has GStreamer")
@pytest.mark.parametrize("uri", ["csi://0", "gst:videotestsrc ! videoconvert ! appsink"])
def test_gstreamer_sources_say_gstreamer_is_missing(uri):
    with pytest.raises(SourceError, match="built without GStreamer") as info:
        open_source(uri)
    assert "GStreamer" in info.value.fix
    wheel = describe_opencv().wheel
    if wheel is not None:  # PyPI's wheel (as here): named as what shadows the system OpenCV
        assert f"PyPI's {wheel} wheel" in info.value.message and "shadows" in info.value.message
        assert f"`pip uninstall {wheel}" in info.value.fix
        assert "--system-site-packages" in info.value.fix


def test_gst_pipeline_must_end_in_appsink():
    with pytest.raises(SourceError, match="does not end in appsink"):
        open_source("gst:videotestsrc ! fakesink")


def test_csi_pipeline_options():
    src = make_source("csi://1?width=640&height=360&fps=60&flip=2")
    text = src.pipeline()
    assert text == csi_pipeline(1, 640, 360, 60, 2)
    assert "sensor-id=1" in text and "flip-method=2" in text and "framerate=(fraction)60/1" in text
    assert text.rstrip().split("!")[-1].strip().startswith("appsink")
    with pytest.raises(SourceError, match="flip=9"):
        make_source("csi://0?flip=9").pipeline()


def test_video_file_reads_every_frame_then_ends(clip):
    with open_source(clip) as src:
        assert not src.live and src.fps == pytest.approx(15.0)
        values = []
        with pytest.raises(EndOfSource):
            while True:
                values.append(int(src.read().mean()))
    assert len(values) == 12
    assert values == sorted(values)  # frame i is grey 10 * i (lossy codec: roughly)


def test_a_looped_video_file_starts_again(clip):
    with open_source(f"{clip}?loop=1") as src:
        values = [int(src.read().mean()) for _ in range(30)]
        assert src.loops == 2 and "looped" in src.describe()
    assert values[12:24] == values[:12] and values[24:] == values[:6]
    with pytest.raises(SourceError, match="unknown option 'lop'"):
        make_source(f"{clip}?lop=1")


def test_missing_and_undecodable_video_files(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        open_source(tmp_path / "nope.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    with pytest.raises(SourceError, match="cannot decode"):
        open_source(bad)


def test_image_folder_skips_a_corrupt_file(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((20, 30, 3), 40 * i, np.uint8))
    (tmp_path / "1.png").write_bytes(b"\x89PNG broken")
    src = open_source(tmp_path)
    assert type(src) is ImageFolderSource
    assert src.read().shape == (20, 30, 3)
    with pytest.raises(CorruptFrame, match="1.png"):
        src.read()
    assert src.read() is not None and src.frame_meta() == {"file": "2.png"}
    with pytest.raises(EndOfSource):
        src.read()


def test_image_glob_and_empty_glob(tmp_path):
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), np.zeros((8, 8, 3), np.uint8))
    src = open_source(str(tmp_path / "*.jpg"))
    assert src.read() is not None
    with pytest.raises(EndOfSource):
        src.read()
    with pytest.raises(SourceError, match="no image files"):
        open_source(str(tmp_path / "*.bmp"))


def test_read_before_open_is_an_error():
    with pytest.raises(SourceError, match="not open"):
        make_source("synthetic://").read()


def test_a_network_stream_that_ends_is_lost_not_finished(clip, http_server):
    from edgevision.runtime.sources import SourceLostError

    with open_source(f"{http_server}/{clip.name}", timeout=5) as src:
        assert type(src) is StreamSource and src.live
        frames = 0
        with pytest.raises(SourceLostError, match="returned no frame"):
            while True:
                assert src.read() is not None
                frames += 1
    assert frames == 12


def test_an_unreachable_stream_is_a_clear_error(http_server):
    with pytest.raises(SourceError, match="cannot be opened") as info:
        open_source(f"{http_server}/missing.mp4", timeout=2)
    assert "ffprobe" in info.value.fix
