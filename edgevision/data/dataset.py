"""Labelled image datasets (torch-free): scan, verify and split into train / val / test.

Three layouts are understood, picked by `detect_layout`:

* ``folder``: an ImageFolder, one sub-folder per class (``DATA/stop/001.jpg``);
* ``splits``: user-given splits, ``DATA/train``, ``DATA/val`` and ``DATA/test``, each an
  ImageFolder;
* ``manifest``: a CSV file of ``path,label`` rows (paths relative to the CSV's folder).

Every image is decoded once while scanning: an unreadable, empty, truncated or non-image file is
skipped and recorded in ``Split.skipped`` (never a crash), and the decoded pixels can be kept in
an `ImageStore` so training does not decode them again.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgevision.data.images import IMAGE_EXTENSIONS, read_image
from edgevision.data.split import SPLITS, Split
from edgevision.errors import CorruptImageError, DataError
from edgevision.registry import Registry

DEFAULT_RATIOS = (0.7, 0.15, 0.15)
_CACHE_LIMIT = 2 << 30  # decoded pixels kept in memory, at most (bytes)

Reader = Callable[[Path], np.ndarray]


class ImageStore:
    """Decode-once image cache: ``get(path)`` reads an image and keeps its uint8 pixels.

    Pixels are kept until ``limit_bytes`` is reached; later images are decoded on every call.
    Small datasets (the usual fine-tuning case) then cost one decode per file for the whole run.
    """

    def __init__(self, limit_bytes: int = _CACHE_LIMIT) -> None:
        self.limit_bytes = int(limit_bytes)
        self.used_bytes = 0
        self._images: dict[Path, np.ndarray] = {}

    def get(self, path: str | os.PathLike[str]) -> np.ndarray:
        """The BGR uint8 pixels of ``path`` (raises `CorruptImageError` like `read_image`)."""
        path = Path(path)
        img = self._images.get(path)
        if img is None:
            img = read_image(path)
            img.setflags(write=False)  # augmentations must copy, never edit the cache
            if self.used_bytes + img.nbytes <= self.limit_bytes:
                self._images[path] = img
                self.used_bytes += img.nbytes
        return img

    def __len__(self) -> int:
        return len(self._images)


@dataclass
class Scan:
    """Usable samples found under ``root``: ``(relative_path, label_name)``, plus what was not."""

    root: Path
    samples: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


def _is_hidden(path: Path | str) -> bool:
    return Path(path).name.startswith(".")


def _class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not _is_hidden(p))


def scan_image_folder(root: str | os.PathLike[str], prefix: str = "") -> Scan:
    """Candidate files of an ImageFolder (one sub-folder per class), not yet decoded.

    Images outside a class folder and files in a class folder without an image extension are
    recorded as skipped; hidden files (``.DS_Store``…) and non-image files beside the class
    folders (a README, generator metadata) are ignored. ``prefix`` is prepended to the
    relative paths (``"train/"`` for user-given split folders).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist or is not a folder")
    scan = Scan(root)
    for entry in sorted(root.iterdir()):
        if entry.is_file() and entry.suffix.lower() in IMAGE_EXTENSIONS:
            scan.skipped.append(
                {"path": prefix + entry.name, "reason": "not inside a class folder"}
            )
    for folder in _class_folders(root):
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or any(_is_hidden(p) for p in path.relative_to(root).parts):
                continue
            rel = prefix + path.relative_to(root).as_posix()
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                scan.skipped.append({"path": rel, "reason": f"not an image file ({path.suffix})"})
            else:
                scan.samples.append((rel, folder.name))
    return scan


def read_manifest(path: str | os.PathLike[str]) -> Scan:
    """Samples of a CSV manifest: ``path,label`` rows, an optional ``path,label`` header.

    Relative paths are relative to the CSV's folder. A malformed row is an error naming its line.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest {path} does not exist")
    scan = Scan(path.parent)
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"manifest {path} is not a readable CSV: {exc}") from None
    for line, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
        if not any(cells) or (line == 1 and [c.lower() for c in cells] == ["path", "label"]):
            continue
        if len(cells) != 2 or not all(cells):
            raise DataError(
                f"manifest {path} line {line} is {row!r}",
                "write one 'path,label' pair per line (paths relative to the CSV's folder)",
            )
        scan.samples.append((cells[0], cells[1]))
    return scan


def verify_images(scan: Scan, reader: Reader = read_image) -> Scan:
    """Decode every sample; drop (and record) the ones that are unreadable or not images."""
    good: list[tuple[str, str]] = []
    skipped = list(scan.skipped)
    for rel, label in scan.samples:
        try:
            reader(scan.root / rel)
        except CorruptImageError as exc:
            skipped.append({"path": rel, "reason": exc.message})
            continue
        good.append((rel, label))
    return Scan(scan.root, good, skipped)


def _labels_of(samples: Iterable[tuple[str, str]], data: Path) -> list[str]:
    labels = sorted({label for _, label in samples})
    if not labels:
        raise DataError(
            f"no usable images found in {data}",
            "give an ImageFolder (one sub-folder of images per class) or a path,label CSV",
        )
    if len(labels) < 2:
        raise DataError(
            f"{data} has only one class ({labels[0]!r}); a classifier needs at least 2",
            "add a sub-folder of images for each other class (e.g. 'background')",
        )
    return labels


def check_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Validate train/val/test ratios: three positive numbers summing to 1."""
    values = tuple(float(r) for r in ratios)
    if len(values) != 3 or not all(0.0 < r < 1.0 for r in values) or abs(sum(values) - 1) > 1e-6:
        raise DataError(
            f"split ratios {list(ratios)} are invalid",
            "give three positive train,val,test ratios that sum to 1, e.g. 0.7,0.15,0.15",
        )
    return values  # type: ignore[return-value]


def make_split(
    samples: Sequence[tuple[str, int]],
    labels: Sequence[str],
    root: str | os.PathLike[str],
    ratios: Sequence[float] = DEFAULT_RATIOS,
    seed: int = 0,
    skipped: Sequence[dict[str, str]] = (),
) -> Split:
    """Split ``(relative_path, label_index)`` samples into train/val/test, stratified by class.

    Each class is shuffled with ``seed`` and cut by ``ratios``; val and test get at least one
    image of every class, so a class needs at least 3 images.
    """
    _, r_val, r_test = check_ratios(ratios)
    by_class: dict[int, list[str]] = {i: [] for i in range(len(labels))}
    for rel, y in samples:
        by_class[int(y)].append(rel)
    rng = np.random.default_rng(seed)
    items: dict[str, list[tuple[str, int]]] = {name: [] for name in SPLITS}
    for y, paths in by_class.items():
        n = len(paths)
        n_val, n_test = max(1, round(n * r_val)), max(1, round(n * r_test))
        if n - n_val - n_test < 1:
            raise DataError(
                f"class {labels[y]!r} has {n} usable image(s); the train/val/test split "
                f"{list(ratios)} needs at least {n_val + n_test + 1}",
                "add images to that class, or remove its folder",
            )
        order = [paths[i] for i in rng.permutation(n)]
        cuts = {"val": order[:n_val], "test": order[n_val : n_val + n_test]}
        cuts["train"] = order[n_val + n_test :]
        for name, chosen in cuts.items():
            items[name].extend((rel, y) for rel in sorted(chosen))
    return Split(Path(root), list(labels), items, list(skipped))


def _index(samples: Sequence[tuple[str, str]], labels: Sequence[str]) -> list[tuple[str, int]]:
    index = {name: i for i, name in enumerate(labels)}
    return [(rel, index[label]) for rel, label in samples]


def _scan_folder(data: Path, ratios: Sequence[float], seed: int, reader: Reader) -> Split:
    scan = verify_images(scan_image_folder(data), reader)
    labels = _labels_of(scan.samples, data)
    return make_split(_index(scan.samples, labels), labels, data, ratios, seed, scan.skipped)


def _scan_manifest(data: Path, ratios: Sequence[float], seed: int, reader: Reader) -> Split:
    scan = verify_images(read_manifest(data), reader)
    labels = _labels_of(scan.samples, data)
    return make_split(_index(scan.samples, labels), labels, scan.root, ratios, seed, scan.skipped)


def _scan_splits(data: Path, ratios: Sequence[float], seed: int, reader: Reader) -> Split:
    del ratios, seed  # the user already chose the split
    missing = [name for name in SPLITS if not (data / name).is_dir()]
    if missing:
        raise DataError(
            f"{data} has split folders but no {', '.join(missing)} folder",
            "give DATA/train, DATA/val and DATA/test (each an ImageFolder), or one ImageFolder",
        )
    scans = {}
    for name in SPLITS:
        found = scan_image_folder(data / name, prefix=f"{name}/")
        scans[name] = verify_images(Scan(data, found.samples, found.skipped), reader)
    labels = _labels_of(scans["train"].samples, data / "train")
    for name in ("val", "test"):
        extra = sorted({label for _, label in scans[name].samples} - set(labels))
        if extra:
            raise DataError(
                f"{data / name} has class(es) {extra} that {data / 'train'} does not have",
                "give every class training images, or remove it from val/test",
            )
        if not scans[name].samples:
            raise DataError(f"{data / name} has no usable images", "add images to it")
    items = {name: _index(scans[name].samples, labels) for name in SPLITS}
    skipped = [s for name in SPLITS for s in scans[name].skipped]
    return Split(data, labels, items, skipped)


LAYOUTS: Registry[Callable[[Path, Sequence[float], int, Reader], Split]] = Registry(
    "dataset layout"
)
LAYOUTS.register("folder", _scan_folder)
LAYOUTS.register("splits", _scan_splits)
LAYOUTS.register("manifest", _scan_manifest)


def detect_layout(data: str | os.PathLike[str]) -> str:
    """``manifest`` for a .csv file, ``splits`` for DATA/{train,val}, else ``folder``."""
    data = Path(data)
    if data.is_file():
        if data.suffix.lower() != ".csv":
            raise DataError(
                f"dataset {data} is a file but not a .csv manifest",
                "give an ImageFolder directory or a path,label CSV",
            )
        return "manifest"
    if not data.is_dir():
        raise DataError(f"dataset {data} does not exist", "give an ImageFolder or a CSV manifest")
    if (data / "train").is_dir() and ((data / "val").is_dir() or (data / "test").is_dir()):
        return "splits"
    return "folder"


def scan_dataset(
    data: str | os.PathLike[str],
    ratios: Sequence[float] = DEFAULT_RATIOS,
    seed: int = 0,
    store: ImageStore | None = None,
) -> Split:
    """Scan, verify and split a dataset (ImageFolder, split folders or CSV manifest).

    Every image is decoded once (into ``store`` when given, so training reuses the pixels);
    bad files land in ``Split.skipped``. No images, a single class, or a class too small for
    the split raise `DataError`.
    """
    data = Path(data).absolute()  # split.json must work from any working directory
    reader: Reader = store.get if store is not None else read_image
    return LAYOUTS.get(detect_layout(data))(data, ratios, seed, reader)


def class_counts(split: Split) -> dict[str, dict[str, int]]:
    """``counts[label][split_name]``: how many images of each class each split holds."""
    counts = {label: dict.fromkeys(split.items, 0) for label in split.labels}
    for name, rows in split.items.items():
        for _, y in rows:
            counts[split.labels[y]][name] += 1
    return counts


def balance_table(split: Split):  # -> rich.table.Table
    """A rich table of the class balance: images per class and split, with a total row."""
    from rich.table import Table

    names = [n for n in SPLITS if n in split.items]
    table = Table(title=f"class balance ({split.root})", show_footer=True)
    table.add_column("class", footer="total")
    totals = {n: len(split.items[n]) for n in names}
    for n in names:
        table.add_column(n, justify="right", footer=str(totals[n]))
    table.add_column("share", justify="right", footer="100%")
    grand = sum(totals.values()) or 1
    for label, per in class_counts(split).items():
        share = 100 * sum(per.values()) / grand
        table.add_row(label, *(str(per[n]) for n in names), f"{share:.1f}%")
    return table
