"""The capture loop: reconnect with backoff, stalls, corrupt frames, limits, pacing."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edgevision.errors import ConfigError
from edgevision.runtime.capture import Capture, Reconnect, valid_frame
from edgevision.runtime.channels import Channel, Closed
from edgevision.runtime.sources import SourceLostError, open_source

FAST = Reconnect(attempts=4, initial_s=0.01, factor=2.0, max_delay_s=0.05, stall_s=0.1)


def drain(capture: Capture, channel: Channel) -> list:
    thread = threading.Thread(target=capture.run)
    thread.start()
    frames = []
    while True:
        try:
            item = channel.get(timeout=5)
        except Closed:
            break
        assert item is not None, "capture stalled"
        frames.append(item)
    thread.join(5)
    return frames


def run_capture(uri: str, policy: Reconnect = FAST, **kwargs) -> tuple[Capture, list]:
    channel = Channel(capacity=100)
    capture = Capture(open_source(uri), channel, threading.Event(), policy, **kwargs)
    return capture, drain(capture, channel)


def test_backoff_delays_grow_and_are_capped():
    policy = Reconnect(attempts=6, initial_s=0.5, factor=2, max_delay_s=3)
    assert list(policy.delays()) == [0.5, 1, 2, 3, 3, 3]
    assert list(Reconnect(attempts=0).delays()) == []
    with pytest.raises(ConfigError):
        Reconnect(factor=0.5)


def test_a_lost_source_is_reopened_and_the_gap_counted(fake_world, caplog):
    world = fake_world("cam", ["frame"] * 3 + ["lost"] + ["frame"] * 2, open_failures=2)
    capture, frames = run_capture("fake://cam")
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert [f.segment for f in frames] == [0, 0, 0, 1, 1]
    s = capture.stats
    assert s.reconnects == 1 and len(s.gaps_s) == 1
    # Two failed opens then one that worked: waits of 0.01 + 0.02 + 0.04 s at least.
    assert s.gaps_s[0] >= 0.07
    assert world.opens == 4 and world.closes >= 1
    assert capture.end_reason == "end of source" and capture.error is None
    assert "reopened" in caplog.text and "reopen 1/4 failed" in caplog.text


def test_a_source_that_never_comes_back_ends_with_an_error(fake_world):
    fake_world("cam", ["frame", "lost"], open_failures=99)
    capture, frames = run_capture("fake://cam")
    assert len(frames) == 1
    assert isinstance(capture.error, SourceLostError)
    assert "4 attempts to reopen it failed" in capture.error.message
    assert capture.end_reason == "source lost"


def test_a_stalled_stream_is_reopened(fake_world):
    fake_world("cam", ["frame"] + ["none"] * 3 + ["frame"], delay=0.05)
    capture, frames = run_capture("fake://cam")
    assert len(frames) == 2
    assert capture.stats.timeouts == 3
    assert capture.stats.reconnects == 1  # 3 × 50 ms without a frame > stall_s 0.1


def test_corrupt_frames_are_skipped_and_counted(fake_world, caplog):
    fake_world("cam", ["frame", "corrupt", "garbage", "frame"])
    capture, frames = run_capture("fake://cam")
    assert [f.index for f in frames] == [0, 3]
    assert capture.stats.read == 4 and capture.stats.corrupt == 2
    assert "skipped: bad bytes" in caplog.text


def test_limit_and_pacing(fake_world):
    fake_world("cam", [], then_end=False)
    start = time.perf_counter()
    capture, frames = run_capture("fake://cam", limit=6, pace_fps=50)
    elapsed = time.perf_counter() - start
    assert len(frames) == 6 and capture.end_reason == "max frames"
    assert elapsed >= 5 / 50 * 0.9  # six frames at 50 fps span 100 ms


def test_valid_frame():
    assert valid_frame(np.zeros((2, 2, 3), np.uint8))
    assert valid_frame(np.zeros((2, 2), np.uint8))
    assert not valid_frame(np.zeros((2, 2, 3), np.float32))
    assert not valid_frame(np.zeros((0, 2, 3), np.uint8))
    assert not valid_frame(np.zeros((2, 2, 2), np.uint8))
    assert not valid_frame(None)
