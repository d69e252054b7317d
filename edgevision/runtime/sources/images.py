"""A folder of images or a glob, read in sorted order as a finite stream."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgevision.data.images import list_images, read_image
from edgevision.errors import CorruptImageError, SourceError
from edgevision.runtime.sources.base import CorruptFrame, EndOfSource, Source, positive


class ImageFolderSource(Source):
    """``images/`` (its image files, sorted) or ``'images/*.jpg'`` (what the glob matches).

    A file that cannot be decoded is a corrupt frame (skipped and counted), not the end.
    Option: fps (the rate used with ``realtime`` and for a video sink; default 15).
    """

    scheme = "images"
    live = False
    OPTIONS: ClassVar = {"fps": positive(float)}

    def __init__(self, uri: str, **options: Any) -> None:
        super().__init__(uri, **options)
        self.pattern = uri[len("images://") :] if uri.startswith("images://") else uri
        self._files: list[Path] = []
        self._next = 0
        self._current: Path | None = None

    def _list(self) -> list[Path]:
        root = Path(self.pattern)
        if root.is_dir():
            return list_images(root, recursive=False)
        return [
            Path(p) for p in sorted(glob.glob(self.pattern, recursive=True)) if Path(p).is_file()
        ]

    def open_impl(self) -> None:
        files = self._list()
        if not files:
            raise SourceError(
                f"no image files at {self.pattern}",
                "point at a folder of .jpg/.png files or a glob such as 'frames/*.jpg'",
            )
        self._files, self._next = files, 0

    def read_impl(self) -> np.ndarray | None:
        if self._next >= len(self._files):
            raise EndOfSource(self.pattern)
        self._current = self._files[self._next]
        self._next += 1
        try:
            return read_image(self._current)
        except CorruptImageError as exc:
            raise CorruptFrame(exc.message) from None

    def close_impl(self) -> None:
        self._files = []

    @property
    def fps(self) -> float | None:
        return self.options.get("fps", 15.0)

    def frame_meta(self) -> dict[str, Any]:
        return {"file": self._current.name} if self._current is not None else {}
