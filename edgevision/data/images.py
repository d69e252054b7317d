"""Reading images strictly: a corrupt file is a `CorruptImageError`, never garbage pixels."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgevision.errors import CorruptImageError, DataError
from edgevision.opencv import cv2

_MAGIC = (b"\xff\xd8", b"\x89PNG")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def _looks_truncated(path: Path, data: bytes) -> bool:
    # OpenCV decodes a cut-off JPEG/PNG into a half-grey image with only a warning.
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        return not data.rstrip(b"\x00").endswith(b"\xff\xd9")
    if suffix == ".png":
        return b"IEND" not in data[-16:]
    return False


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file into HxWx3 uint8 BGR, or raise `CorruptImageError` saying why."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CorruptImageError(f"image {path} does not exist") from None
    except OSError as exc:
        raise CorruptImageError(f"image {path} cannot be read: {exc.strerror}") from None
    if not data:
        raise CorruptImageError(f"image {path} is empty (0 bytes)", "delete or replace the file")
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if data.startswith(_MAGIC) and _looks_truncated(path, data):
        raise CorruptImageError(f"image {path} is truncated", "re-export or delete the file")
    if img is None:
        raise CorruptImageError(
            f"image {path} is not a decodable image", "delete or replace the file"
        )
    return img


def list_images(root: str | os.PathLike[str], recursive: bool = True) -> list[Path]:
    """Image files under ``root`` (by extension), sorted for determinism."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a folder")
    pattern = "**/*" if recursive else "*"
    return sorted(
        p for p in root.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
