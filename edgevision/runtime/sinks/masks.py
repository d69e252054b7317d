"""A segmenter's class maps as PNG files, every N-th result (``--masks DIR --mask-every N``).

Each file is ``DIR/<frame index:06d>.png``: a single-channel index PNG at the original frame's
size, one class id per pixel (the labels' order), 255 where the model saw nothing (outside a
centre crop) — the dataset mask format, so a recorded drive can be re-labelled or compared.
Written atomically (temp + rename): a killed run leaves only whole files. Files the folder
already held are never replaced: a name that exists is an error before the first frame.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgevision.errors import SinkError
from edgevision.runtime.frame import Result
from edgevision.runtime.sinks.base import Sink, StreamInfo


class MaskSink(Sink):
    """Write ``result.mask`` of every ``every``-th result as ``folder/<frame>.png``."""

    name = "masks"

    def __init__(self, folder: str | os.PathLike[str], every: int = 30) -> None:
        if every < 1:
            raise SinkError(f"--mask-every {every} must be >= 1", "e.g. --mask-every 30")
        self.folder = Path(folder)
        self.every = every
        self.written = 0
        self._seen = 0

    def open(self, info: StreamInfo) -> None:
        super().open(info)
        if info.task != "segmentation":
            raise SinkError(
                f"--masks needs a segmentation bundle; this one is {info.task}",
                "drop --masks, or run a segmentation bundle",
            )
        if self.folder.exists() and not self.folder.is_dir():
            raise SinkError(f"--masks {self.folder} is a file", "give a folder for the masks")
        if self.folder.is_dir() and any(self.folder.glob("*.png")):
            raise SinkError(
                f"--masks {self.folder} already holds PNG files",
                "choose an empty or new folder (files there are never replaced)",
            )
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"cannot create {self.folder}: {exc.strerror}") from None

    def write(self, result: Result) -> None:
        self._seen += 1
        if result.mask is None or (self._seen - 1) % self.every:
            return
        from edgevision.opencv import cv2

        path = self.folder / f"{result.frame_index:06d}.png"
        tmp = path.with_name(f".{path.name}.tmp")
        ok, data = cv2.imencode(".png", result.mask)
        if not ok:
            raise SinkError(f"could not encode the mask of frame {result.frame_index}")
        tmp.write_bytes(data.tobytes())
        os.replace(tmp, path)
        self.written += 1

    def __repr__(self) -> str:
        return f"MaskSink({str(self.folder)!r}, every={self.every})"
