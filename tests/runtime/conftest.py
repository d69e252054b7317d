"""Fixtures for the runtime: a tiny bundle, a short clip, a scripted fake source."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import pytest

from edgevision.errors import SourceError
from edgevision.runtime.sources import SOURCES, CorruptFrame, EndOfSource, Source, SourceLostError
from tests.helpers import tiny_bundle


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return tiny_bundle(tmp_path)


def make_clip(path: Path, n: int = 12, size: tuple[int, int] = (64, 48), fps: float = 15.0) -> Path:
    """An mp4 whose frame i is a flat grey of value 10 * i (so frames are tellable apart)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened()
    for i in range(n):
        writer.write(np.full((size[1], size[0], 3), 10 * i, np.uint8))
    writer.release()
    return path


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return make_clip(tmp_path / "clip.mp4")


class World:
    """What a `FakeSource` plays, shared by every (re)open of it.

    ``script`` is consumed one entry per read: "frame", "corrupt", "garbage" (a float array),
    "onechannel" (an HxWx1 frame: capture takes it, preprocess refuses it),
    "lost" (the device breaks), "none" (a read timeout), "hang" (a read that
    blocks for 3 s), "end". ``open_failures`` makes that
    many opens fail (after the first) before one succeeds. Once the script runs out, reads
    return frames forever (or end, with ``then_end``).
    """

    def __init__(
        self, script: list[str], open_failures: int = 0, then_end: bool = True, delay: float = 0.0
    ) -> None:
        self.script = list(script)
        self.open_failures = open_failures
        self.then_end = then_end
        self.delay = delay
        self.opens = 0
        self.closes = 0
        self.frames = 0
        self.lock = threading.Lock()

    def next(self) -> str:
        with self.lock:
            if self.script:
                return self.script.pop(0)
            return "end" if self.then_end else "frame"


class FakeSource(Source):
    """A scripted source, ``fake://NAME`` (NAME keys `FakeSource.worlds`); not live."""

    scheme = "fake"
    live = False
    worlds: ClassVar[dict[str, World]] = {}

    @property
    def world(self) -> World:
        return self.worlds[self.uri.split("://", 1)[1]]

    def open_impl(self) -> None:
        w = self.world
        w.opens += 1
        if w.opens > 1 and w.open_failures > 0:
            w.open_failures -= 1
            raise SourceError(f"{self.uri}: not there yet")

    def read_impl(self) -> np.ndarray | None:
        w = self.world
        if w.delay:
            threading.Event().wait(w.delay)
        action = w.next()
        if action == "frame":
            w.frames += 1
            return np.full((24, 32, 3), (w.frames * 7) % 256, np.uint8)
        if action == "corrupt":
            raise CorruptFrame("bad bytes")
        if action == "garbage":
            return np.zeros((24, 32, 3), np.float32)
        if action == "onechannel":  # passes capture, fails preprocess
            return np.zeros((24, 32, 1), np.uint8)
        if action == "lost":
            raise SourceLostError(f"{self.uri}: unplugged")
        if action == "none":
            return None
        if action == "hang":  # a driver stuck inside a read, deaf to close()
            threading.Event().wait(3.0)
            return None
        raise EndOfSource(self.uri)

    def close_impl(self) -> None:
        self.world.closes += 1

    @property
    def fps(self) -> float | None:
        return 30.0


class LiveFakeSource(FakeSource):
    live = True


@pytest.fixture
def fake_world(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Register fake:// and live-fake:// in the source registry; returns World factory."""
    monkeypatch.setitem(SOURCES._items, "fake", FakeSource)
    monkeypatch.setitem(SOURCES._items, "live-fake", LiveFakeSource)
    FakeSource.worlds.clear()

    def make(name: str = "cam", *args: Any, **kwargs: Any) -> World:
        world = World(*args, **kwargs)
        FakeSource.worlds[name] = world
        return world

    yield make
    FakeSource.worlds.clear()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def http_server(tmp_path):
    """A loopback HTTP server for tmp_path (FFmpeg reads an mp4 over it as a network stream)."""
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
