"""Segmentation datasets (torch-free): images with per-pixel class-id masks, verified and split.

Two layouts are understood, picked by `detect_segmentation_layout`:

* ``masks``: ``DATA/images/<stem>.<ext>`` + ``DATA/masks/<stem>.png`` + ``DATA/classes.txt``;
* ``masks-splits``: ``DATA/train`` (and optionally ``DATA/val``, ``DATA/test``), each with its
  own ``images/`` + ``masks/``; class names in ``DATA/classes.txt`` or in each split folder's
  own ``classes.txt`` (all of them identical); a missing val or test split is carved from train.

A mask is a single-channel PNG holding one class id per pixel: line ``i`` of ``classes.txt``
names id ``i`` and `IGNORE_INDEX` (255) marks pixels without a label. A palette ('P' mode) PNG
is read by its palette indices, never by its colours; an RGB mask is refused (its colours are
not ids). Sub-folders of ``images/`` are mirrored in ``masks/``.

Every image and mask is decoded once; bad input is never a crash and never silent: an image
whose mask is missing, unreadable, not single-channel, of another size or holding ids outside
the class list, an unreadable image and a mask without an image land in
``SegmentationSplit.skipped`` with the reason. Dataset-wide remarks (a class no mask uses) are
in ``SegmentationSplit.issues``.
"""

from __future__ import annotations

import os
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np

from edgevision.data.dataset import DEFAULT_RATIOS, ImageStore, Reader, check_ratios
from edgevision.data.detection import _check_names, _files, _rel
from edgevision.data.images import IMAGE_EXTENSIONS, read_image
from edgevision.data.multisplit import Stratifier, TaskSplit
from edgevision.data.split import SPLITS
from edgevision.errors import CorruptImageError, DataError
from edgevision.opencv import cv2
from edgevision.registry import Registry

SCHEMA_VERSION = 1
IGNORE_INDEX = 255  # the same value as edgevision.tasks.segment.spec.IGNORE_INDEX
MAX_CLASSES = 255  # ids 0..254
CLASSES_FILE = "classes.txt"
IMAGES_DIR = "images"
MASKS_DIR = "masks"
MASK_FIX = (
    "give every image in images/ a mask masks/NAME.png (same name, same size): a single-channel "
    "(grayscale or palette) PNG of class ids, line i of classes.txt naming id i, 255 = ignore"
)
_PNG = b"\x89PNG\r\n\x1a\n"
_PNG_COLOR = {2: "an RGB", 4: "a grayscale+alpha", 6: "an RGBA"}
# Why images were skipped, as the "no usable image" error words it ("3 had no mask").
_SKIPPED = {
    "not-image": "were not image files",
    "duplicate": "shared a name with another image",
    "no-mask": "had no mask",
    "bad-mask": "had a mask that is unreadable or not single-channel",
    "size": "had a mask of another size",
    "bad-id": "had mask ids outside the class list",
    "all-ignore": "had a mask that is all 255 (ignore)",
    "bad-image": "were unreadable images",
    "orphan-mask": "were masks without an image",
}


@dataclass
class SegmentationSample:
    """One image and its mask: the class ids present (sorted) and their pixel counts, paired."""

    path: str  # the image, POSIX, relative to the dataset root
    mask: str  # the mask, POSIX, relative to the dataset root
    width: int
    height: int
    classes: list[int] = field(default_factory=list)  # ids present in the mask, sorted
    pixels: list[int] = field(default_factory=list)  # pixels of each of ``classes``

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "mask": self.mask,
            "width": self.width,
            "height": self.height,
            "classes": [int(c) for c in self.classes],
            "pixels": [int(n) for n in self.pixels],
        }

    @classmethod
    def from_dict(cls, row: dict[str, Any], n_labels: int) -> SegmentationSample:
        """A sample from `to_dict`'s form; ValueError/TypeError/KeyError when it is not that."""
        classes = [int(c) for c in row["classes"]]
        pixels = [int(n) for n in row.get("pixels", [])]
        if classes != sorted(set(classes)):
            raise ValueError(f"{row['path']!r} has classes {classes} that are not sorted ids")
        if any(not 0 <= c < n_labels for c in classes):
            raise ValueError(f"{row['path']!r} has a class id outside 0..{n_labels - 1}")
        if pixels and len(pixels) != len(classes):
            raise ValueError(f"{row['path']!r} has {len(classes)} classes, {len(pixels)} counts")
        return cls(
            str(row["path"]),
            str(row["mask"]),
            int(row["width"]),
            int(row["height"]),
            classes,
            pixels,
        )


# A mask's classes are distinct: an image's rarest class is its class the fewest images hold.
_STRATIFIER: Stratifier[SegmentationSample] = Stratifier(
    attrgetter("classes"),
    few_fix="add images with masks, or give the splits as folders",
    empty_fix="add images with masks to it",
)


@dataclass
class SegmentationSplit(TaskSplit):
    """Segmentation samples per split (``items["train"|"val"|"test"]``), plus what was not usable.

    ``skipped`` lists images (or masks) left out, ``issues`` dataset-wide remarks; both as
    ``{"path", "reason"}`` with paths relative to ``root``.
    """

    root: Path
    labels: list[str]
    format: str = "masks"
    items: dict[str, list[SegmentationSample]] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    issues: list[dict[str, str]] = field(default_factory=list)
    # For TaskSplit (split.json, load, labelled_paths); class attributes, not fields.
    TASK = "segmentation"
    SCHEMA = SCHEMA_VERSION
    SAMPLE = SegmentationSample
    STRATIFIER = _STRATIFIER

    def paths(self, split: str) -> list[tuple[Path, Path, SegmentationSample]]:
        """Absolute image and mask paths and the samples of one split."""
        return [(self.root / s.path, self.root / s.mask, s) for s in self._samples(split)]

    def image_classes(self, split: str) -> dict[Path, tuple[str, ...]]:
        """Absolute image path → the names of every class its mask holds (calibration checks
        that its images cover every class with these, not with the one rarest class)."""
        return {
            self.root / s.path: tuple(self.labels[c] for c in s.classes)
            for s in self._samples(split)
        }

    def counts(self) -> dict[str, dict[str, Any]]:
        """Per split: ``images``, ``pixels_per_class`` (labelled pixels per label name) and
        ``images_per_class`` (images whose mask holds the label)."""
        out: dict[str, dict[str, Any]] = {}
        for name, samples in self.items.items():
            pixels = dict.fromkeys(self.labels, 0)
            images = dict.fromkeys(self.labels, 0)
            for sample in samples:
                for i, c in enumerate(sample.classes):
                    images[self.labels[c]] += 1
                    if i < len(sample.pixels):
                        pixels[self.labels[c]] += sample.pixels[i]
            out[name] = {
                "images": len(samples),
                "pixels_per_class": pixels,
                "images_per_class": images,
            }
        return out


# -- reading a mask ------------------------------------------------------------------------
def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], len(_PNG)
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        chunks.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body).to_bytes(4, "big")
    return len(body).to_bytes(4, "big") + kind + body + crc


def _palette_as_gray(chunks: list[tuple[bytes, bytes]]) -> bytes:
    """A palette PNG rewritten as a grayscale one of the same bit depth: its pixels are then the
    palette indices (OpenCV would otherwise expand them to the palette's colours)."""
    ihdr = bytearray(chunks[0][1])
    ihdr[9] = 0  # colour type 3 (palette) -> 0 (grayscale); the bit depths allowed are the same
    kept = [_chunk(b"IHDR", bytes(ihdr))]
    kept += [_chunk(kind, body) for kind, body in chunks if kind == b"IDAT"]
    return _PNG + b"".join(kept) + _chunk(b"IEND", b"")


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode a class-id mask into an ``(H, W)`` uint8 array, or raise `DataError` saying why.

    Single-channel PNGs (8-bit, or 16-bit with ids up to 255) and palette PNGs (their indices
    are the ids) are read; colour masks, masks with alpha and lossy JPEGs are refused.
    """
    path = Path(path)
    fix = "save the mask as a single-channel PNG of class ids (cv2.imwrite of a 2-D uint8 array)"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"mask {path} does not exist", fix) from None
    except OSError as exc:
        raise DataError(f"mask {path} cannot be read: {exc.strerror}") from None
    if not data:
        raise DataError(f"mask {path} is empty (0 bytes)", fix)
    depth = 8
    if data.startswith(_PNG):
        chunks = _png_chunks(data)
        if b"IEND" not in data[-16:] or not chunks or chunks[0][0] != b"IHDR":
            raise DataError(f"mask {path} is a truncated or malformed PNG", fix)
        depth, color = chunks[0][1][8], chunks[0][1][9]
        if color == 3:
            data = _palette_as_gray(chunks)
        elif color != 0:
            what = _PNG_COLOR.get(color, f"a colour type {color}")
            raise DataError(
                f"mask {path} is {what} PNG, not single-channel: a mask holds one class id "
                "per pixel, not colours",
                fix + "; a colour-coded mask must first be mapped to ids",
            )
    elif data.startswith(b"\xff\xd8"):
        raise DataError(
            f"mask {path} is a JPEG: its lossy compression changes the class ids at every edge",
            fix,
        )
    mask = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise DataError(f"mask {path} is not a decodable image", fix)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise DataError(f"mask {path} has {mask.shape[2]} channels, not 1", fix)
    if mask.dtype == np.uint16:
        if mask.size and int(mask.max()) > IGNORE_INDEX:
            raise DataError(
                f"mask {path} holds id {int(mask.max())}; ids are 0..254 (255 = ignore)", fix
            )
        mask = mask.astype(np.uint8)
    elif mask.dtype != np.uint8:
        raise DataError(f"mask {path} holds {mask.dtype} values, not 8-bit class ids", fix)
    if depth < 8 and mask.size and int(mask.max()) >= 1 << depth:
        mask = mask // (255 // ((1 << depth) - 1))  # libpng scaled 1/2/4-bit values to 0..255
    return np.ascontiguousarray(mask)


# -- what one folder gave ------------------------------------------------------------------
@dataclass
class _Found:
    """Samples read from one images/ + masks/ pair and the files skipped, by kind."""

    samples: list[SegmentationSample] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    kinds: Counter[str] = field(default_factory=Counter)
    files: int = 0  # image files looked at

    def skip(self, path: str, reason: str, kind: str) -> None:
        self.skipped.append({"path": path, "reason": reason})
        self.kinds[kind] += 1

    def merge(self, other: _Found) -> None:
        self.samples += other.samples
        self.skipped += other.skipped
        self.kinds.update(other.kinds)
        self.files += other.files


def _ids_text(ids: Sequence[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:8])
    return shown + (f" and {len(ids) - 8} more" if len(ids) > 8 else "")


def _sample(
    data: Path, image: Path, mask: Path, n_labels: int, reader: Reader, found: _Found
) -> None:
    rel, mask_rel = _rel(image, data), _rel(mask, data)
    try:
        img = reader(image)
    except CorruptImageError as exc:
        found.skip(rel, exc.message, "bad-image")
        return
    try:
        ids = read_mask(mask)
    except DataError as exc:
        found.skip(rel, f"its mask {mask_rel} is not usable: {exc.message}", "bad-mask")
        return
    height, width = img.shape[:2]
    if ids.shape != (height, width):
        found.skip(
            rel,
            f"its mask {mask_rel} is {ids.shape[1]}x{ids.shape[0]}, the image is {width}x{height}",
            "size",
        )
        return
    counts = np.bincount(ids.ravel(), minlength=256)
    present = np.flatnonzero(counts).tolist()
    bad = [i for i in present if n_labels <= i != IGNORE_INDEX]
    if bad:
        found.skip(
            rel,
            f"its mask {mask_rel} holds class id(s) {_ids_text(bad)} outside the class list "
            f"(ids 0..{n_labels - 1} in {CLASSES_FILE}; 255 = ignore)",
            "bad-id",
        )
        return
    classes = [i for i in present if i < n_labels]
    if not classes:
        found.skip(
            rel, f"its mask {mask_rel} is all 255 (ignore): no pixel is labelled", "all-ignore"
        )
        return
    pixels = [int(counts[i]) for i in classes]
    found.samples.append(
        SegmentationSample(rel, mask_rel, int(width), int(height), classes, pixels)
    )


def _read_folder(data: Path, folder: Path, n_labels: int, reader: Reader) -> _Found:
    """Samples of ``folder/images`` with their masks in ``folder/masks``; paths relative to
    ``data``."""
    images_dir, masks_dir = folder / IMAGES_DIR, folder / MASKS_DIR
    for need in (images_dir, masks_dir):
        if not need.is_dir():
            raise DataError(
                f"{need} does not exist",
                f"give {folder} an {IMAGES_DIR}/ folder and a {MASKS_DIR}/ folder of masks",
            )
    found = _Found()
    images: dict[Path, Path] = {}  # path relative to images/, suffix dropped → image
    for path in _files(images_dir):
        key = path.relative_to(images_dir).with_suffix("")
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            found.skip(_rel(path, data), f"not an image file ({path.suffix})", "not-image")
        elif key in images:
            found.skip(
                _rel(path, data),
                f"{_rel(images[key], data)} has the same name, and one mask ({key.name}.png) "
                "cannot tell the two apart",
                "duplicate",
            )
        else:
            images[key] = path
    masks: dict[Path, Path] = {}
    others: dict[Path, Path] = {}  # files in masks/ that are not PNGs
    for path in _files(masks_dir):
        key = path.relative_to(masks_dir).with_suffix("")
        (masks if path.suffix.lower() == ".png" else others)[key] = path
    found.files = len(images)
    for key, image in images.items():
        if key in masks:
            _sample(data, image, masks[key], n_labels, reader, found)
            continue
        expected = _rel(masks_dir / key.parent / f"{key.name}.png", data)
        reason = f"no mask: {expected} does not exist"
        if key in others:
            reason += f" ({_rel(others[key], data)} is not a PNG; masks must be lossless PNGs)"
        found.skip(_rel(image, data), reason, "no-mask")
    for key, path in sorted([*masks.items(), *others.items()], key=lambda kv: kv[1]):
        if key not in images:
            found.skip(_rel(path, data), "mask without an image", "orphan-mask")
    return found


# -- class names ---------------------------------------------------------------------------
def _read_names(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} cannot be read: {exc}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    names = _check_names([line.strip() for line in lines], path)
    if len(names) < 2:
        raise DataError(
            f"{path} names {len(names)} class(es); a segmenter needs at least 2",
            "list every class, one per line, starting with the one for unlabelled ground "
            "(e.g. background)",
        )
    if len(names) > MAX_CLASSES:
        raise DataError(
            f"{path} names {len(names)} classes; at most {MAX_CLASSES} fit (255 = ignore)",
            "merge classes",
        )
    return names


def _class_names(data: Path, folders: Sequence[Path]) -> list[str]:
    """Names from ``DATA/classes.txt`` or the split folders' own; all given must agree."""
    files = [p for p in (data / CLASSES_FILE, *(f / CLASSES_FILE for f in folders)) if p.is_file()]
    if not files:
        raise DataError(
            f"{data} has no {CLASSES_FILE}, so the mask ids cannot be named",
            f"write {data / CLASSES_FILE} with one class name per line (line 1 is id 0, e.g. "
            "background; 255 in a mask means ignore)",
        )
    names = _read_names(files[0])
    for other in files[1:]:
        if _read_names(other) != names:
            raise DataError(
                f"{other} differs from {files[0]}",
                f"give every split the same class list, or keep only {data / CLASSES_FILE}",
            )
    return names


# -- checks and the split ------------------------------------------------------------------
def _require_samples(data: Path, found: _Found) -> None:
    """A dataset without a single usable image is a `DataError` that says where they went."""
    if found.samples:
        return
    why = f"0 usable images of {found.files}"
    if found.kinds:
        why += ": " + ", ".join(
            f"{count} {_SKIPPED[kind]}" for kind, count in found.kinds.most_common()
        )
        first = found.skipped[0]
        why += f"; first: {first['path']}: {first['reason']}"
    raise DataError(f"{data}: {why}", MASK_FIX)


def _unused_classes(labels: Sequence[str], found: _Found) -> list[dict[str, str]]:
    used = {c for s in found.samples for c in s.classes}
    return [
        {"path": CLASSES_FILE, "reason": f"class {i} ({name!r}) appears in no usable mask"}
        for i, name in enumerate(labels)
        if i not in used
    ]


def _scan_masks(
    data: Path, ratios: Sequence[float], seed: int, reader: Reader
) -> SegmentationSplit:
    ratios = check_ratios(ratios)
    labels = _class_names(data, [])
    found = _read_folder(data, data, len(labels), reader)
    _require_samples(data, found)
    items = _STRATIFIER.assign(found.samples, SPLITS, ratios, seed, str(data))
    issues = _unused_classes(labels, found)
    return SegmentationSplit(data, labels, "masks", items, found.skipped, issues)


def _scan_masks_splits(
    data: Path, ratios: Sequence[float], seed: int, reader: Reader
) -> SegmentationSplit:
    ratios = check_ratios(ratios)
    folders = [data / name for name in SPLITS if (data / name).is_dir()]
    labels = _class_names(data, folders)
    found, given = _Found(), {}
    for folder in folders:
        split_found = _read_folder(data, folder, len(labels), reader)
        found.merge(split_found)
        given[folder.name] = split_found.samples
    _require_samples(data, found)
    items = _STRATIFIER.complete(data, given, ratios, seed)
    issues = _unused_classes(labels, found)
    return SegmentationSplit(data, labels, "masks", items, found.skipped, issues)


# -- public entry points -------------------------------------------------------------------
Scanner = Callable[[Path, Sequence[float], int, Reader], SegmentationSplit]
LAYOUTS: Registry[Scanner] = Registry("segmentation dataset layout")
LAYOUTS.register("masks", _scan_masks)
LAYOUTS.register("masks-splits", _scan_masks_splits)


def _has_pair(folder: Path) -> bool:
    return (folder / IMAGES_DIR).is_dir() and (folder / MASKS_DIR).is_dir()


def detect_segmentation_layout(data: str | os.PathLike[str]) -> str | None:
    """``masks`` (``images/`` + ``masks/``) or ``masks-splits`` (``train/images`` +
    ``train/masks``, optionally val/ and test/) for a segmentation dataset; None otherwise."""
    data = Path(data)
    if not data.is_dir():
        return None
    if _has_pair(data):
        return "masks"
    if _has_pair(data / "train"):
        return "masks-splits"
    return None


def is_segmentation_dataset(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder in one of the segmentation layouts (images/ + masks/)."""
    return detect_segmentation_layout(path) is not None


def scan_segmentation(
    data: str | os.PathLike[str],
    ratios: Sequence[float] = DEFAULT_RATIOS,
    seed: int = 0,
    store: ImageStore | None = None,
) -> SegmentationSplit:
    """Read, verify and split a segmentation dataset (images/ + masks/ + classes.txt, one
    folder or train/ val/ test/ folders).

    Every image is decoded once (into ``store`` when given, so training reuses the pixels) and
    every mask once. The split is stratified by each image's rarest class and seeded: the same
    data and seed give the same split. A missing classes.txt or a dataset without a usable image
    raise `DataError`; bad rows are skipped and listed in ``skipped``.
    """
    data = Path(data).absolute()  # split.json must work from any working directory
    layout = detect_segmentation_layout(data)
    if layout is None:
        raise DataError(
            f"{data} is not a segmentation dataset",
            "give a folder with images/ + masks/ (one PNG of class ids per image) + "
            "classes.txt, or train/ val/ test/ folders of images/ + masks/",
        )
    reader: Reader = store.get if store is not None else read_image
    return LAYOUTS.get(layout)(data, ratios, seed, reader)


def segmentation_table(split: SegmentationSplit):  # -> rich.table.Table
    """A rich table of images per class and split, each class's share of the labelled pixels,
    then the image totals."""
    from rich.table import Table

    names = [n for n in SPLITS if n in split.items]
    counts = split.counts()
    table = Table(title=f"segmentation balance ({split.root})")
    table.add_column("class")
    for n in names:
        table.add_column(n, justify="right")
    table.add_column("pixels", justify="right")
    pixels = {
        label: sum(counts[n]["pixels_per_class"][label] for n in names) for label in split.labels
    }
    grand = sum(pixels.values()) or 1
    for label in split.labels:
        per = [counts[n]["images_per_class"][label] for n in names]
        table.add_row(label, *(str(v) for v in per), f"{100 * pixels[label] / grand:.1f}%")
    table.add_section()
    table.add_row("images", *(str(counts[n]["images"]) for n in names), "100%")
    return table
