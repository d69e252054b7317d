"""Detection datasets (torch-free): COCO JSON and YOLO txt read into one form, verified and split.

Four layouts are understood, picked by `detect_detection_layout`:

* ``coco``: ``DATA/images/`` + ``DATA/annotations.json`` (COCO ``file_name`` relative to
  ``images/``, or to ``DATA`` when that is where the file is);
* ``coco-splits``: ``DATA/train``, and optionally ``DATA/val`` and ``DATA/test``, each with its
  own ``images/`` + ``annotations.json``; a missing val or test split is carved from train;
* ``yolo``: ``DATA/images/`` + ``DATA/labels/*.txt`` (``class cx cy w h`` rows, normalised), class
  names from ``DATA/data.yaml`` (``names:`` list or ``{id: name}`` mapping) or ``DATA/classes.txt``;
* ``yolo-splits``: a ``data.yaml`` whose ``train:`` (``val:``, ``test:``) keys name image folders
  relative to ``DATA``; each labels folder is the image folder with its ``images`` path component
  replaced by ``labels``, as Ultralytics does. (Its ``path:`` key is not used.)

Boxes become ``[x0, y0, x1, y1]`` floats in pixels of the decoded image, clipped to it. Every
image is decoded once; bad input is never a crash and never silent: an unusable image (missing,
corrupt, a duplicate) lands in ``DetectionSplit.skipped`` and a box that was dropped or clipped in
``DetectionSplit.issues``, each with its reason. Images without boxes are kept as negatives.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np

from edgevision.data.dataset import DEFAULT_RATIOS, ImageStore, Reader, check_ratios
from edgevision.data.images import IMAGE_EXTENSIONS, read_image
from edgevision.data.multisplit import Stratifier, TaskSplit
from edgevision.data.split import SPLITS
from edgevision.errors import CorruptImageError, DataError, DependencyError
from edgevision.fileio import read_json
from edgevision.registry import Registry

SCHEMA_VERSION = 1
ANNOTATIONS = "annotations.json"
COCO_FIX = (
    "every annotation needs an image_id from 'images', a category_id from 'categories' and a "
    "bbox [x, y, width, height] in pixels inside its image"
)
YOLO_FIX = (
    "write one 'class cx cy w h' row per box in labels/NAME.txt (same name as the image), with "
    "class ids from the names list and coordinates normalised to [0, 1]"
)
# Why boxes were dropped, as the "no usable box" error words it ("37 had an unknown category_id").
_DROPPED = {
    "unknown-image": "had an unknown image_id",
    "unknown-category": "had an unknown category_id",
    "crowd": "were crowd boxes",
    "malformed": "were malformed annotations",
    "bad-bbox": "had a bbox that is not 4 finite numbers",
    "bad-row": "were malformed label rows",
    "bad-class": "had a class id out of range",
    "zero-size": "were zero-size (or under 1 px)",
    "outside": "were entirely outside their image",
    "skipped-image": "belonged to skipped images",
}


@dataclass
class DetectionSample:
    """One image and its boxes: ``[x0, y0, x1, y1]`` pixels and label indices, paired by order."""

    path: str  # POSIX, relative to the dataset root
    width: int
    height: int
    boxes: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)

    def boxes_array(self) -> np.ndarray:
        """The boxes as an ``(N, 4)`` float32 array (``(0, 4)`` for a negative)."""
        return np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)

    def labels_array(self) -> np.ndarray:
        """The label indices as an ``(N,)`` int64 array."""
        return np.asarray(self.labels, dtype=np.int64).reshape(-1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "width": self.width,
            "height": self.height,
            "boxes": [[float(v) for v in box] for box in self.boxes],
            "labels": [int(y) for y in self.labels],
        }

    @classmethod
    def from_dict(cls, row: dict[str, Any], n_labels: int) -> DetectionSample:
        """A sample from `to_dict`'s form; ValueError/TypeError/KeyError when it is not that."""
        boxes = [[float(v) for v in box] for box in row["boxes"]]
        labels = [int(y) for y in row["labels"]]
        if len(boxes) != len(labels):
            raise ValueError(f"{row['path']!r} has {len(boxes)} boxes but {len(labels)} labels")
        if any(len(box) != 4 or not all(map(math.isfinite, box)) for box in boxes):
            raise ValueError(f"{row['path']!r} has a box that is not 4 finite numbers")
        if any(not 0 <= y < n_labels for y in labels):
            raise ValueError(f"{row['path']!r} has a label index outside 0..{n_labels - 1}")
        return cls(str(row["path"]), int(row["width"]), int(row["height"]), boxes, labels)


# Each box counts for its class: an image's rarest class is its class with the fewest boxes.
_STRATIFIER: Stratifier[DetectionSample] = Stratifier(
    attrgetter("labels"),
    few_fix="add images (with or without boxes), or give the splits as folders",
    empty_fix="add images to it",
)


@dataclass
class DetectionSplit(TaskSplit):
    """Detection samples per split (``items["train"|"val"|"test"]``), plus what was not usable.

    ``skipped`` lists whole images or files left out, ``issues`` boxes dropped or changed; both
    as ``{"path", "reason"}`` with paths relative to ``root``.
    """

    root: Path
    labels: list[str]
    format: str  # "coco" or "yolo"
    items: dict[str, list[DetectionSample]] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    issues: list[dict[str, str]] = field(default_factory=list)
    # For TaskSplit (split.json, load, labelled_paths); class attributes, not fields.
    TASK = "detection"
    SCHEMA = SCHEMA_VERSION
    SAMPLE = DetectionSample
    STRATIFIER = _STRATIFIER

    def paths(self, split: str) -> list[tuple[Path, DetectionSample]]:
        """Absolute image paths and samples of one split."""
        return [(self.root / s.path, s) for s in self._samples(split)]

    def counts(self) -> dict[str, dict[str, Any]]:
        """Per split: ``images``, ``boxes``, ``negatives`` (images without boxes), ``per_class``
        (boxes per label name)."""
        out: dict[str, dict[str, Any]] = {}
        for name, samples in self.items.items():
            per_class = dict.fromkeys(self.labels, 0)
            for sample in samples:
                for y in sample.labels:
                    per_class[self.labels[y]] += 1
            out[name] = {
                "images": len(samples),
                "boxes": sum(per_class.values()),
                "negatives": sum(not s.boxes for s in samples),
                "per_class": per_class,
            }
        return out


# -- what one annotation source gave -------------------------------------------------------
@dataclass
class _Found:
    """Samples read from one annotation source, the images skipped and the per-box issues."""

    samples: list[DetectionSample] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    issues: list[dict[str, str]] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)  # drop kind → boxes

    def skip(self, path: str, reason: str) -> None:
        self.skipped.append({"path": path, "reason": reason})

    def issue(self, path: str, reason: str, dropped: str | None = None) -> None:
        self.issues.append({"path": path, "reason": reason})
        if dropped:
            self.dropped[dropped] += 1

    def add_box(
        self, sample: DetectionSample, box: Sequence[float], label: int, path: str, where: str
    ) -> None:
        """Clip ``box`` to ``sample``'s image and keep it, or drop it; either way say so."""
        kept, note, kind = _fit_box(box, sample.width, sample.height)
        if note:
            self.issue(path, where + note, None if kept else kind)
        if kept:
            sample.boxes.append(kept)
            sample.labels.append(label)

    def merge(self, other: _Found) -> None:
        self.samples += other.samples
        self.skipped += other.skipped
        self.issues += other.issues
        self.dropped.update(other.dropped)


def _fmt(box: Iterable[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


def _fit_box(
    box: Sequence[float], width: int, height: int
) -> tuple[list[float] | None, str | None, str]:
    """``(kept_box, note, kind)`` for ``[x0, y0, x1, y1]`` in a ``width`` x ``height`` image.

    ``kind`` is ``ok`` (note None), ``clipped`` (kept, clipped to the image) or why it was
    dropped (``zero-size``, ``outside``; kept_box None).
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    size = f"{width}x{height}"
    if x1 <= x0 or y1 <= y0:
        return None, f"zero or negative size box {_fmt(box)} dropped", "zero-size"
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        return None, f"box {_fmt(box)} is entirely outside the {size} image, dropped", "outside"
    kept = [min(max(x0, 0.0), width), min(max(y0, 0.0), height)]
    kept += [min(max(x1, 0.0), width), min(max(y1, 0.0), height)]
    if kept[2] - kept[0] < 1 or kept[3] - kept[1] < 1:
        note = f"box {_fmt(box)} is under 1 px wide or high in the {size} image, dropped"
        return None, note, "zero-size"
    if kept != [x0, y0, x1, y1]:
        return kept, f"box {_fmt(box)} clipped to the {size} image", "clipped"
    return kept, None, "ok"


def _rel(path: Path, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _files(folder: Path) -> list[Path]:
    """Files under ``folder`` (recursively, hidden ones left out), sorted."""
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _decode(
    data: Path, rel: str, reader: Reader, found: _Found, n_boxes: int = 0
) -> DetectionSample | None:
    """An empty sample sized like the decoded image, or None (image skipped, with the reason)."""
    try:
        img = reader(data / rel)
    except CorruptImageError as exc:
        ignored = f"; its {n_boxes} box(es) are ignored" if n_boxes else ""
        found.skip(rel, exc.message + ignored)
        found.dropped["skipped-image"] += n_boxes
        return None
    height, width = img.shape[:2]
    return DetectionSample(rel, int(width), int(height), [], [])


def _check_names(names: Sequence[str], source: Path) -> list[str]:
    """Label names must be non-empty and unique (they key every per-class count)."""
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if not name.strip():
            raise DataError(f"class {i} in {source} has an empty name", "give every class a name")
        if name in seen:
            raise DataError(
                f"classes {seen[name]} and {i} in {source} are both named {name!r}",
                "give every class a different name (merge the two classes into one id)",
            )
        seen[name] = i
    return list(names)


# -- COCO JSON -----------------------------------------------------------------------------
def _coco_sections(doc: Any, path: Path) -> tuple[list[Any], list[Any], list[Any]]:
    if not isinstance(doc, dict):
        raise DataError(
            f"COCO annotations file {path} holds a {type(doc).__name__}, not an object",
            "write {'images': [...], 'annotations': [...], 'categories': [...]}",
        )
    sections = []
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            what = "has no" if key not in doc else f"has a {type(doc[key]).__name__} as its"
            raise DataError(
                f"COCO annotations file {path} {what} {key!r} list",
                "write {'images': [...], 'annotations': [...], 'categories': [...]}",
            )
        sections.append(doc[key])
    return sections[0], sections[1], sections[2]


def _coco_categories(categories: list[Any], path: Path) -> list[tuple[int, str]]:
    """``(category_id, name)`` pairs in id order: label index i is the i-th pair."""
    pairs: dict[int, str] = {}
    for i, cat in enumerate(categories):
        cid = cat.get("id") if isinstance(cat, dict) else None
        name = cat.get("name") if isinstance(cat, dict) else None
        if not isinstance(cid, int) or isinstance(cid, bool) or not isinstance(name, str):
            raise DataError(
                f"categories[{i}] in {path} is {cat!r}",
                "give each category an integer 'id' and a 'name' string",
            )
        if cid in pairs:
            raise DataError(f"category id {cid} appears twice in {path}", "give each its own id")
        pairs[cid] = name
    ordered = sorted(pairs.items())
    _check_names([name for _, name in ordered], path)
    return ordered


@dataclass
class _CocoImage:
    rel: str
    entry: dict[str, Any]
    boxes: list[tuple[str, list[float], int]] = field(default_factory=list)  # (where, box, label)


def _is_id(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _coco_file(folder: Path, data: Path, file_name: str) -> str:
    """``file_name`` under ``images/`` (the convention), else beside ``annotations.json``."""
    name = file_name.replace("\\", "/")
    path = folder / "images" / name
    if not path.exists() and (folder / name).exists():
        path = folder / name
    return _rel(path, data)


def _coco_images(
    images: list[Any], folder: Path, data: Path, ann_rel: str, found: _Found
) -> dict[Any, _CocoImage]:
    """Image entries by id; malformed ones and repeated ids are skipped."""
    entries: dict[Any, _CocoImage] = {}
    for i, entry in enumerate(images):
        image_id = entry.get("id") if isinstance(entry, dict) else None
        file_name = entry.get("file_name") if isinstance(entry, dict) else None
        if not _is_id(image_id) or not isinstance(file_name, str) or not file_name:
            found.skip(ann_rel, f"images[{i}] needs an 'id' and a 'file_name' (it is {entry!r})")
        elif image_id in entries:
            found.skip(
                _coco_file(folder, data, file_name),
                f"image id {image_id!r} appears twice in {ann_rel}; the later entry is ignored",
            )
        else:
            entries[image_id] = _CocoImage(_coco_file(folder, data, file_name), entry)
    return entries


def _coco_annotation(
    ann: Any, i: int, entries: dict[Any, _CocoImage], index: dict[int, int], ann_rel: str
) -> tuple[str, str, str | None]:
    """``(path, where, why_dropped)`` for one annotation; its box is added when not dropped."""
    if not isinstance(ann, dict):
        return ann_rel, f"annotations[{i}] is not an object, dropped", "malformed"
    where = f"annotation {ann.get('id', f'#{i}')}: "
    image_id = ann.get("image_id")
    if not _is_id(image_id) or image_id not in entries:
        return ann_rel, f"{where}unknown image_id {image_id!r}, box dropped", "unknown-image"
    image = entries[image_id]
    cid = ann.get("category_id")
    if not isinstance(cid, int) or isinstance(cid, bool) or cid not in index:
        return image.rel, f"{where}unknown category_id {cid!r}, box dropped", "unknown-category"
    if ann.get("iscrowd"):
        return image.rel, f"{where}crowd box ignored", "crowd"
    bbox = ann.get("bbox")
    numbers = isinstance(bbox, (list, tuple)) and len(bbox) == 4
    numbers = numbers and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
    if not numbers or not all(math.isfinite(v) for v in bbox):
        return image.rel, f"{where}bbox {bbox!r} is not 4 finite numbers, dropped", "bad-bbox"
    x, y, w, h = (float(v) for v in bbox)
    image.boxes.append((where, [x, y, x + w, y + h], index[cid]))
    return image.rel, where, None


def _coco_size_check(
    image: _CocoImage, sample: DetectionSample, ann_rel: str, found: _Found
) -> None:
    said = (image.entry.get("width"), image.entry.get("height"))
    if said != (None, None) and said != (sample.width, sample.height):
        found.issue(
            image.rel,
            f"{ann_rel} says the image is {said[0]}x{said[1]}, the file decodes to "
            f"{sample.width}x{sample.height}; its boxes are clipped to the decoded size",
        )


def _read_coco(data: Path, folder: Path, reader: Reader) -> tuple[list[tuple[int, str]], _Found]:
    """Categories and samples of one COCO folder; paths relative to ``data``."""
    ann_path = folder / ANNOTATIONS
    doc = read_json(ann_path, "COCO annotations file", DataError, f"add {ann_path}")
    images, annotations, categories = _coco_sections(doc, ann_path)
    cats = _coco_categories(categories, ann_path)
    index = {cid: i for i, (cid, _) in enumerate(cats)}
    ann_rel = _rel(ann_path, data)
    found = _Found()
    entries = _coco_images(images, folder, data, ann_rel, found)
    for i, ann in enumerate(annotations):
        path, reason, dropped = _coco_annotation(ann, i, entries, index, ann_rel)
        if dropped:
            found.issue(path, reason, dropped)
    seen: dict[str, Any] = {}
    for image_id, image in entries.items():
        if image.rel in seen:
            found.skip(
                image.rel,
                f"image ids {seen[image.rel]!r} and {image_id!r} in {ann_rel} name the same file; "
                f"the later is ignored with its {len(image.boxes)} box(es)",
            )
            found.dropped["skipped-image"] += len(image.boxes)
            continue
        seen[image.rel] = image_id
        sample = _decode(data, image.rel, reader, found, len(image.boxes))
        if sample is None:
            continue
        _coco_size_check(image, sample, ann_rel, found)
        for where, box, label in image.boxes:
            found.add_box(sample, box, label, image.rel, where)
        found.samples.append(sample)
    for path in _files(folder / "images"):
        rel = _rel(path, data)
        if path.suffix.lower() in IMAGE_EXTENSIONS and rel not in seen:
            found.skip(rel, f"not listed in {ann_rel}")
    return cats, found


def _category_difference(a: list[tuple[int, str]], b: list[tuple[int, str]]) -> str:
    only_a = [f"{cid}: {name!r}" for cid, name in a if (cid, name) not in b]
    only_b = [f"{cid}: {name!r}" for cid, name in b if (cid, name) not in a]
    return f"only in train: {only_a or 'none'}; only here: {only_b or 'none'}"


def _scan_coco(data: Path, ratios: Sequence[float], seed: int, reader: Reader) -> DetectionSplit:
    cats, found = _read_coco(data, data, reader)
    _require_boxes(data, found, COCO_FIX)
    items = _STRATIFIER.assign(found.samples, SPLITS, check_ratios(ratios), seed, str(data))
    return DetectionSplit(data, [n for _, n in cats], "coco", items, found.skipped, found.issues)


def _scan_coco_splits(
    data: Path, ratios: Sequence[float], seed: int, reader: Reader
) -> DetectionSplit:
    ratios = check_ratios(ratios)
    given: dict[str, list[DetectionSample]] = {}
    found = _Found()
    cats: list[tuple[int, str]] = []
    for name in SPLITS:
        if not (data / name).is_dir():
            continue
        if not (data / name / ANNOTATIONS).is_file():
            raise DataError(
                f"{data / name} has no {ANNOTATIONS}",
                f"add {data / name / ANNOTATIONS} (COCO JSON for {data / name / 'images'}), "
                "or remove the folder to carve that split from train",
            )
        split_cats, split_found = _read_coco(data, data / name, reader)
        if name == "train":
            cats = split_cats
        elif split_cats != cats:
            raise DataError(
                f"the categories of {data / name / ANNOTATIONS} differ from those of "
                f"{data / 'train' / ANNOTATIONS} ({_category_difference(cats, split_cats)})",
                "give every split the same 'categories' list (same ids, same names)",
            )
        found.merge(split_found)
        given[name] = split_found.samples
    _require_boxes(data, found, COCO_FIX)
    items = _STRATIFIER.complete(data, given, ratios, seed)
    return DetectionSplit(data, [n for _, n in cats], "coco", items, found.skipped, found.issues)


# -- YOLO txt ------------------------------------------------------------------------------
def _read_data_yaml(path: Path) -> dict[str, Any]:
    """``data.yaml`` as a mapping (PyYAML is imported here only: the runtime never needs it)."""
    try:
        import yaml
    except ImportError:
        raise DependencyError(
            f"PyYAML is needed to read {path}",
            "`pip install pyyaml` (it comes with `pip install 'edgevision[train]'`), or give "
            "the class names in classes.txt instead",
        ) from None
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"{path} is not readable YAML: {exc}", "fix or rewrite the file") from None
    if not isinstance(doc, dict):
        raise DataError(
            f"{path} holds a {type(doc).__name__}, not a mapping",
            "write a 'names:' key (and optionally 'train:', 'val:', 'test:' image folders)",
        )
    return doc


def _yaml_names(names: Any, path: Path) -> tuple[list[str], dict[int, int]]:
    """Names and class id → label index from data.yaml's ``names`` (a list or an id mapping)."""
    if isinstance(names, (list, tuple)):
        pairs = list(enumerate(names))
    elif isinstance(names, dict):
        try:
            pairs = sorted((int(k), v) for k, v in names.items() if not isinstance(k, bool))
        except (TypeError, ValueError):
            pairs = []
        if len(pairs) != len(names):
            raise DataError(
                f"'names' in {path} has keys that are not integer class ids: {list(names)}",
                "write 'names:' as a list, or as a mapping of class id to name ({0: car, ...})",
            )
    else:
        raise DataError(
            f"'names' in {path} is {names!r}, not a list or a mapping",
            "write 'names:' as a list, or as a mapping of class id to name ({0: car, ...})",
        )
    labels = _check_names(["" if v is None else str(v) for _, v in pairs], path)
    return labels, {cid: i for i, (cid, _) in enumerate(pairs)}


def _yolo_names(data: Path, doc: dict[str, Any] | None = None) -> tuple[list[str], dict[int, int]]:
    """Class names from ``data.yaml`` (preferred) or ``classes.txt``; none is a `DataError`."""
    yaml_path, txt_path = data / "data.yaml", data / "classes.txt"
    if doc is None and yaml_path.is_file():
        doc = _read_data_yaml(yaml_path)
    if doc is not None and "names" in doc:
        return _yaml_names(doc["names"], yaml_path)
    if txt_path.is_file():
        try:
            lines = txt_path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{txt_path} cannot be read: {exc}") from None
        while lines and not lines[-1].strip():
            lines.pop()
        names = _check_names([line.strip() for line in lines], txt_path)
        return names, {i: i for i in range(len(names))}
    where = f"{yaml_path} has no 'names' key" if doc is not None else f"{data} has no class names"
    raise DataError(
        f"{where}, so the YOLO class ids cannot be named",
        f"add a 'names:' list to {yaml_path} (Ultralytics' form), or write {txt_path} with one "
        "class name per line (line 1 is class 0)",
    )


class _BadRow(Exception):
    """A label row that cannot be a box: ``reason`` for the issue, ``kind`` for the count."""

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.reason, self.kind = reason, kind


def _yolo_row(
    line: str, ids: dict[int, int], width: int, height: int
) -> tuple[int, list[float], bool]:
    """``(label, [x0, y0, x1, y1] in pixels, outside_unit_range)`` of one ``class cx cy w h``."""
    fields = line.split()
    if len(fields) != 5:
        raise _BadRow(f"{len(fields)} fields, expected 5 (class cx cy w h), dropped", "bad-row")
    try:
        values = [float(v) for v in fields]
    except ValueError:
        raise _BadRow(f"{line.strip()!r} has a non-numeric value, dropped", "bad-row") from None
    if not all(math.isfinite(v) for v in values):
        raise _BadRow(f"{line.strip()!r} has a non-finite value, dropped", "bad-row")
    if values[0] != int(values[0]) or int(values[0]) not in ids:  # a whole number
        known = f"0..{len(ids) - 1}" if list(ids) == list(range(len(ids))) else sorted(ids)
        raise _BadRow(f"class id {fields[0]} is not one of {known}, dropped", "bad-class")
    cx, cy, w, h = values[1:]
    box = [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height]
    return ids[int(values[0])], box, any(not 0.0 <= v <= 1.0 for v in values[1:])


def _yolo_image(
    data: Path, image: Path, label_file: Path, ids: dict[int, int], reader: Reader, found: _Found
) -> None:
    rel, label_rel = _rel(image, data), _rel(label_file, data)
    try:
        text = label_file.read_text(encoding="utf-8-sig") if label_file.is_file() else ""
    except (OSError, UnicodeDecodeError) as exc:
        found.skip(rel, f"its label file {label_rel} cannot be read ({exc})")
        return
    rows = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    sample = _decode(data, rel, reader, found, len(rows))
    if sample is None:
        return
    for n, line in rows:
        try:
            label, box, outside = _yolo_row(line, ids, sample.width, sample.height)
        except _BadRow as exc:
            found.issue(label_rel, f"line {n}: {exc.reason}", exc.kind)
            continue
        where = f"line {n}: values outside [0, 1]; " if outside else f"line {n}: "
        found.add_box(sample, box, label, label_rel, where)
    found.samples.append(sample)


def _read_yolo(
    data: Path, images_dir: Path, labels_dir: Path, ids: dict[int, int], reader: Reader
) -> _Found:
    """Samples of one YOLO image folder and its labels folder; paths relative to ``data``."""
    if not labels_dir.is_dir():
        raise DataError(
            f"{labels_dir} does not exist (the labels of {images_dir})",
            "put one NAME.txt per image there (images without boxes may have none)",
        )
    found = _Found()
    images: dict[Path, Path] = {}  # image path relative to images_dir, suffix dropped → image
    for path in _files(images_dir):
        key = path.relative_to(images_dir).with_suffix("")
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            found.skip(_rel(path, data), f"not an image file ({path.suffix})")
        elif key in images:
            found.skip(
                _rel(path, data),
                f"{_rel(images[key], data)} has the same name, and one label file "
                f"({key.name}.txt) cannot tell the two apart",
            )
        else:
            images[key] = path
    for key, image in images.items():
        _yolo_image(data, image, labels_dir / key.parent / f"{key.name}.txt", ids, reader, found)
    for path in _files(labels_dir):
        key = path.relative_to(labels_dir).with_suffix("")
        if path.suffix == ".txt" and path.name != "classes.txt" and key not in images:
            found.skip(_rel(path, data), "label file without an image")
    return found


def _labels_dir(images_dir: Path) -> Path:
    """Ultralytics' rule: the last ``images`` component of the path becomes ``labels``."""
    parts = list(images_dir.parts)
    if "images" not in parts:
        raise DataError(
            f"image folder {images_dir} has no 'images' component, so its labels folder "
            "cannot be found",
            "keep images in .../images/... and labels in the matching .../labels/... folder",
        )
    i = len(parts) - 1 - parts[::-1].index("images")
    parts[i] = "labels"
    return Path(*parts)


def _yolo_split_dirs(data: Path, doc: dict[str, Any]) -> dict[str, Path]:
    """The image folder of each split data.yaml names (``train`` required)."""
    yaml_path, dirs = data / "data.yaml", {}
    for name in SPLITS:
        value = doc.get(name)
        if value in (None, ""):
            continue
        fix = f"give '{name}:' as one image folder relative to {data}, e.g. 'images/{name}'"
        if not isinstance(value, str):
            raise DataError(f"'{name}' in {yaml_path} is {value!r}, not one folder", fix)
        path = Path(os.path.normpath(data / value))
        if not path.is_dir() and value.startswith("../"):
            path = Path(os.path.normpath(data / value[3:]))  # Roboflow exports write ../train
        if not path.is_dir():
            raise DataError(f"'{name}: {value}' in {yaml_path} is not a folder ({path})", fix)
        dirs[name] = path
    if "train" not in dirs:
        raise DataError(f"{yaml_path} names no 'train' image folder", "add 'train: images/train'")
    for a in dirs:
        for b in dirs:
            if a != b and dirs[b].is_relative_to(dirs[a]):
                raise DataError(
                    f"the {b} folder {dirs[b]} is inside (or is) the {a} folder {dirs[a]} in "
                    f"{yaml_path}: its images would be in two splits",
                    "give each split its own folder, or drop the key to carve that split",
                )
    return dirs


def _scan_yolo(data: Path, ratios: Sequence[float], seed: int, reader: Reader) -> DetectionSplit:
    labels, ids = _yolo_names(data)
    found = _read_yolo(data, data / "images", data / "labels", ids, reader)
    _require_boxes(data, found, YOLO_FIX)
    items = _STRATIFIER.assign(found.samples, SPLITS, check_ratios(ratios), seed, str(data))
    return DetectionSplit(data, labels, "yolo", items, found.skipped, found.issues)


def _scan_yolo_splits(
    data: Path, ratios: Sequence[float], seed: int, reader: Reader
) -> DetectionSplit:
    ratios = check_ratios(ratios)
    doc = _read_data_yaml(data / "data.yaml")
    dirs = _yolo_split_dirs(data, doc)
    labels, ids = _yolo_names(data, doc)
    found, given = _Found(), {}
    for name, images_dir in dirs.items():
        split_found = _read_yolo(data, images_dir, _labels_dir(images_dir), ids, reader)
        found.merge(split_found)
        given[name] = split_found.samples
    _require_boxes(data, found, YOLO_FIX)
    items = _STRATIFIER.complete(data, given, ratios, seed)
    return DetectionSplit(data, labels, "yolo", items, found.skipped, found.issues)


# -- checks and the split ------------------------------------------------------------------
def _require_boxes(data: Path, found: _Found, fix: str) -> None:
    """A dataset without a single usable box is a `DataError` that says where the boxes went."""
    if any(s.boxes for s in found.samples):
        return
    dropped = sum(found.dropped.values())
    why = "0 usable boxes: none is annotated"
    if dropped:
        why = f"0 usable boxes of {dropped}: " + ", ".join(
            f"{count} {_DROPPED[kind]}" for kind, count in found.dropped.most_common()
        )
    skipped = f" ({len(found.skipped)} skipped)" if found.skipped else ""
    if found.issues:
        why += f"; first issue: {found.issues[0]['path']}: {found.issues[0]['reason']}"
    raise DataError(f"{data}: {len(found.samples)} images{skipped}, {why}", fix)


# -- public entry points -------------------------------------------------------------------
Scanner = Callable[[Path, Sequence[float], int, Reader], DetectionSplit]
LAYOUTS: Registry[Scanner] = Registry("detection dataset layout")
LAYOUTS.register("coco", _scan_coco)
LAYOUTS.register("coco-splits", _scan_coco_splits)
LAYOUTS.register("yolo", _scan_yolo)
LAYOUTS.register("yolo-splits", _scan_yolo_splits)


def detect_detection_layout(data: str | os.PathLike[str]) -> str | None:
    """``coco``, ``coco-splits``, ``yolo`` or ``yolo-splits`` for a detection dataset folder;
    None for anything else (an ImageFolder, a CSV manifest, a missing path).

    A ``data.yaml`` that is not a YAML mapping is a `DataError` (the folder is meant as YOLO).
    """
    data = Path(data)
    if not data.is_dir():
        return None
    if (data / ANNOTATIONS).is_file():
        return "coco"
    if (data / "train" / ANNOTATIONS).is_file():
        return "coco-splits"
    if (data / "data.yaml").is_file():
        doc = _read_data_yaml(data / "data.yaml")
        if any(doc.get(name) not in (None, "") for name in SPLITS):
            return "yolo-splits"
    names_file = any((data / n).exists() for n in ("labels", "data.yaml", "classes.txt"))
    if (data / "masks").is_dir() and not (data / "labels").is_dir():
        return None  # images/ + masks/ + classes.txt: a segmentation dataset, not YOLO
    if (data / "images").is_dir() and names_file:
        return "yolo"
    return None


def is_detection_dataset(data: str | os.PathLike[str]) -> bool:
    """Whether ``data`` is a folder in one of the detection layouts."""
    return detect_detection_layout(data) is not None


def scan_detection(
    data: str | os.PathLike[str],
    ratios: Sequence[float] = DEFAULT_RATIOS,
    seed: int = 0,
    store: ImageStore | None = None,
) -> DetectionSplit:
    """Read, verify and split a detection dataset (COCO JSON or YOLO txt, one folder or splits).

    Every image is decoded once (into ``store`` when given, so training reuses the pixels). The
    split is stratified by each image's rarest class (negatives apart) and seeded: the same data
    and seed give the same split. A malformed annotations file, missing class names or a
    dataset without a usable box raise `DataError`.
    """
    data = Path(data).absolute()  # split.json must work from any working directory
    layout = detect_detection_layout(data)
    if layout is None:
        raise DataError(
            f"{data} is not a detection dataset",
            "give a folder with images/ + annotations.json (COCO), or images/ + labels/ + "
            "data.yaml or classes.txt (YOLO), or train/ val/ test/ folders of either",
        )
    reader: Reader = store.get if store is not None else read_image
    return LAYOUTS.get(layout)(data, ratios, seed, reader)


def detection_table(split: DetectionSplit):  # -> rich.table.Table
    """A rich table of boxes per class and split, then box, image and negative totals."""
    from rich.table import Table

    names = [n for n in SPLITS if n in split.items]
    counts = split.counts()
    table = Table(title=f"detection balance ({split.root})")
    table.add_column("class")
    for n in names:
        table.add_column(n, justify="right")
    table.add_column("share", justify="right")
    grand = sum(counts[n]["boxes"] for n in names) or 1
    for label in split.labels:
        per = [counts[n]["per_class"][label] for n in names]
        table.add_row(label, *(str(v) for v in per), f"{100 * sum(per) / grand:.1f}%")
    table.add_section()
    table.add_row("boxes", *(str(counts[n]["boxes"]) for n in names), "100%")
    table.add_row("images", *(str(counts[n]["images"]) for n in names), "")
    table.add_row("negatives", *(str(counts[n]["negatives"]) for n in names), "")
    return table
