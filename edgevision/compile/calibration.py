"""Step 2: the calibration set — which images, read once, preprocessed with the model's spec.

Sources: a folder (recursive; ``class/xxx.png`` sub-folders give labels), a glob, a manifest
JSON (format in calibration/README.md), or — with no source — a class-stratified sample of the
checkpoint's training split. Corrupt files are skipped, counted and reported; fewer than
`MIN_IMAGES` usable images is a `CalibrationError`. The set's manifest (relative paths +
SHA-256) goes into the bundle as ``calibration.json`` and keys the calibration cache.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevision.compile.progress import Tracker, silent
from edgevision.data.images import IMAGE_EXTENSIONS, list_images, read_image
from edgevision.errors import CalibrationError, CorruptImageError
from edgevision.fileio import atomic_write_json, sha256_bytes, sha256_file
from edgevision.preprocess import preprocess
from edgevision.spec import ModelSpec

if TYPE_CHECKING:
    from edgevision.data.split import Split

log = logging.getLogger(__name__)

MIN_IMAGES = 16
DEFAULT_SIZE = 512
MANIFEST_FORMAT = "edgevision-calibration"
MANIFEST_VERSION = 1
STATS_REFERENCE_IMAGES = 64
# "Differs strongly": a channel mean moved by more than half a training std, or a std off by 2x.
MEAN_SHIFT_LIMIT = 0.5
STD_RATIO_LIMIT = 2.0
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class Candidate:
    """An image the set may use: absolute path, optional label, optional expected SHA-256."""

    path: Path
    label: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class CalibImage:
    """One image of the set: POSIX path relative to the set's root, its SHA-256 and label."""

    path: str
    sha256: str
    label: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {"path": self.path, "sha256": self.sha256}
        return d | ({"label": self.label} if self.label is not None else {})


@dataclass
class CalibrationSet:
    """The images a model is calibrated on, and their preprocessed tensors (N, …) float32."""

    root: Path
    source: str
    images: list[CalibImage]
    tensors: np.ndarray
    skipped: list[dict[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.tensors)

    @property
    def manifest_sha256(self) -> str:
        """Hash of the sorted (path, SHA-256) list: changes whenever any image or the selection
        does, not with the order the images were read in (ranges do not depend on it)."""
        files = sorted([i.path, i.sha256] for i in self.images)
        return sha256_bytes(json.dumps(files, sort_keys=True).encode())

    def manifest(self) -> dict[str, Any]:
        """The manifest written to the bundle (readable back as a ``--calib`` manifest)."""
        return {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "root": str(self.root.resolve()),
            "source": self.source,
            "size": len(self.images),
            "manifest_sha256": self.manifest_sha256,
            "files": [i.to_dict() for i in self.images],
            "skipped": self.skipped,
            "stats": self.stats,
        }


def collect_calibration(
    source: str | os.PathLike[str] | None,
    spec: ModelSpec,
    size: int = DEFAULT_SIZE,
    split: Split | None = None,
    seed: int = 0,
    track: Tracker = silent,
) -> CalibrationSet:
    """Gather and preprocess up to ``size`` calibration images.

    ``source``: a folder, a glob, a manifest ``.json``, or None to sample the training split of
    ``split`` stratified by class. Warns (in ``.warnings`` and the log) about skipped corrupt
    files, classes with no image, and pixel statistics far from the training data's.
    """
    if size < MIN_IMAGES:
        raise CalibrationError(
            f"calibration size {size} is too small", f"use --calib-size >= {MIN_IMAGES}"
        )
    root, candidates, description = resolve_candidates(source, spec, split)
    if not candidates:
        raise CalibrationError(
            f"calibration set {description} has no images",
            f"point --calib at a folder, glob or manifest with >= {MIN_IMAGES} images "
            f"({', '.join(IMAGE_EXTENSIONS)})",
        )
    ordered = stratified_order(candidates, seed)
    images, tensors, skipped = _read_until(ordered, root, spec, size, track)
    if len(images) < MIN_IMAGES:
        raise CalibrationError(
            f"calibration set {description} has {len(images)} usable image(s) "
            f"({len(skipped)} unreadable skipped); at least {MIN_IMAGES} are needed",
            "add images (a few hundred, covering every class and lighting condition)",
        )
    calib = CalibrationSet(root, description, images, np.stack(tensors), skipped)
    calib.stats["available"] = len(candidates)  # what --calib-size could grow to
    _check_set(calib, spec, split, source is None, seed)
    for message in calib.warnings:
        log.warning(message)
    return calib


# -- where the images come from -------------------------------------------------------------
def resolve_candidates(
    source: str | os.PathLike[str] | None, spec: ModelSpec, split: Split | None
) -> tuple[Path, list[Candidate], str]:
    """The set's root, its candidate images and a description of the source."""
    if source is None:
        return _from_split(split)
    text = str(source)
    path = Path(text)
    if path.is_dir():
        return path, _from_folder(path, spec), f"folder {path}"
    if path.is_file():
        return _from_manifest(path)
    if _GLOB_CHARS & set(text):
        return _from_glob(text, spec)
    raise CalibrationError(
        f"calibration source {text} does not exist",
        "give a folder of images, a glob like 'data/**/*.png', or a manifest .json",
    )


def _from_split(split: Split | None) -> tuple[Path, list[Candidate], str]:
    if split is None or not split.items.get("train"):
        raise CalibrationError(
            "no calibration set given and no training split to sample one from",
            "pass --calib DIR|GLOB|MANIFEST (or build from a RUN folder that has split.json)",
        )
    cands = [Candidate(p, label) for p, label in split.labelled_paths("train")]
    return split.root, cands, f"training split of {split.root}"


def _label_of(rel: Path, spec: ModelSpec) -> str | None:
    # ImageFolder layout: the first folder is the class, when it names one of the spec's labels.
    return rel.parts[0] if len(rel.parts) > 1 and rel.parts[0] in spec.labels else None


def _from_folder(root: Path, spec: ModelSpec) -> list[Candidate]:
    return [Candidate(p, _label_of(p.relative_to(root), spec)) for p in list_images(root)]


def _from_glob(pattern: str, spec: ModelSpec) -> tuple[Path, list[Candidate], str]:
    prefix = []
    for part in Path(pattern).parts:
        if _GLOB_CHARS & set(part):
            break
        prefix.append(part)
    root = Path(*prefix) if prefix else Path(".")
    paths = sorted(
        Path(p)
        for p in glob.glob(pattern, recursive=True)
        if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_EXTENSIONS
    )
    cands = [Candidate(p, _label_of(p.relative_to(root), spec)) for p in paths]
    return root, cands, f"glob {pattern}"


def read_manifest(path: Path) -> tuple[Path, list[Candidate]]:
    """Parse a calibration manifest (see calibration/README.md) into its root and candidates."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CalibrationError(
            f"calibration manifest {path} is not readable JSON: {exc}",
            "give a folder or glob of images, or a manifest as described in calibration/README.md",
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise CalibrationError(
            f"calibration manifest {path} has no 'files' list",
            'write {"format": "edgevision-calibration", "version": 1, "files": [...]}',
        )
    if data.get("format", MANIFEST_FORMAT) != MANIFEST_FORMAT or data.get("version", 1) != 1:
        raise CalibrationError(
            f"calibration manifest {path} has format {data.get('format')!r} version "
            f"{data.get('version')!r}",
            f"use format {MANIFEST_FORMAT!r}, version {MANIFEST_VERSION}",
        )
    root = Path(data.get("root") or ".")
    root = root if root.is_absolute() else path.parent / root
    return root, [_manifest_entry(path, root, e) for e in data["files"]]


def _manifest_entry(manifest: Path, root: Path, entry: Any) -> Candidate:
    if isinstance(entry, str):
        entry = {"path": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        raise CalibrationError(
            f"calibration manifest {manifest} has a bad entry {entry!r}",
            'each entry is "relative/path.png" or {"path": ..., "sha256": ..., "label": ...}',
        )
    return Candidate(root / entry["path"], entry.get("label"), entry.get("sha256"))


def _from_manifest(path: Path) -> tuple[Path, list[Candidate], str]:
    root, cands = read_manifest(path)
    return root, cands, f"manifest {path}"


def write_manifest(
    images: Sequence[str | os.PathLike[str]],
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    labels: Sequence[str | None] | None = None,
) -> Path:
    """Write a calibration manifest for ``images`` (paths under ``root``), hashing each file."""
    root = Path(root)
    files = []
    for i, image in enumerate(images):
        p = Path(image)
        entry = {"path": p.relative_to(root).as_posix(), "sha256": sha256_file(p)}
        if labels is not None and labels[i] is not None:
            entry["label"] = labels[i]
        files.append(entry)
    out = Path(out)
    rel_root = os.path.relpath(root.resolve(), out.parent.resolve())
    doc = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "root": rel_root}
    return atomic_write_json(out, doc | {"files": files})


# -- sampling and reading -------------------------------------------------------------------
def stratified_order(candidates: Sequence[Candidate], seed: int = 0) -> list[Candidate]:
    """Candidates shuffled within each class, then interleaved class by class.

    Taking the first N gives a class-balanced sample; corrupt files are replaced by the next.
    """
    rng = random.Random(seed)
    groups: dict[str, list[Candidate]] = {}
    for c in candidates:
        groups.setdefault(c.label or "", []).append(c)
    for members in groups.values():
        rng.shuffle(members)
    ordered: list[Candidate] = []
    queues = [groups[k] for k in sorted(groups)]
    for i in range(max(len(q) for q in queues)):
        ordered.extend(q[i] for q in queues if i < len(q))
    return ordered


def _read_until(
    ordered: list[Candidate], root: Path, spec: ModelSpec, size: int, track: Tracker
) -> tuple[list[CalibImage], list[np.ndarray], list[dict[str, str]]]:
    images: list[CalibImage] = []
    tensors: list[np.ndarray] = []
    skipped: list[dict[str, str]] = []
    total = min(size, len(ordered))
    for cand, frame in track(_decoded(ordered, skipped, size), total, "calibration set"):
        digest = sha256_file(cand.path)
        if cand.sha256 is not None and cand.sha256 != digest:
            raise CalibrationError(
                f"calibration image {cand.path} does not match its SHA-256 in the manifest",
                "restore the original file, or regenerate the manifest",
            )
        images.append(CalibImage(_relative(cand.path, root), digest, cand.label))
        tensors.append(preprocess(frame, spec)[0])
    return images, tensors, skipped


def _decoded(
    ordered: list[Candidate], skipped: list[dict[str, str]], size: int
) -> Iterator[tuple[Candidate, np.ndarray]]:
    good = 0
    for cand in ordered:
        if good >= size:
            return
        try:
            frame = read_image(cand.path)
        except CorruptImageError as exc:
            skipped.append({"path": str(cand.path), "reason": exc.message})
            continue
        good += 1
        yield cand, frame


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


# -- checks ---------------------------------------------------------------------------------
def channel_stats(tensors: np.ndarray, spec: ModelSpec) -> dict[str, list[float]]:
    """Per-channel mean and std of preprocessed tensors (in the model's channel order)."""
    axis = 1 if spec.layout == "NCHW" else 3
    other = tuple(a for a in range(tensors.ndim) if a != axis)
    return {
        "mean": [round(float(v), 4) for v in tensors.mean(axis=other)],
        "std": [round(float(v), 4) for v in tensors.std(axis=other)],
    }


def _check_set(
    calib: CalibrationSet, spec: ModelSpec, split: Split | None, from_split: bool, seed: int
) -> None:
    if calib.skipped:
        first = calib.skipped[0]
        calib.warnings.append(
            f"skipped {len(calib.skipped)} unreadable calibration image(s), "
            f"e.g. {first['path']}: {first['reason']}"
        )
    calib.stats = {"calibration": channel_stats(calib.tensors, spec)}
    labels = [i.label for i in calib.images]
    # A split whose images hold several classes each (segmentation) says which: coverage is
    # then counted over every class an image holds, not only the one it was sampled by.
    held = getattr(split, "image_classes", None) if from_split else None
    if held is not None:
        classes = held("train")
        per_image = [classes.get(calib.root / i.path, ()) for i in calib.images]
        counts = {c: sum(c in names for names in per_image) for c in spec.labels}
    elif all(label is not None for label in labels):
        counts = {c: labels.count(c) for c in spec.labels}
    else:
        counts = None
    if counts is not None:
        missing = [c for c, n in counts.items() if n == 0]
        calib.stats["classes"] = counts
        if missing:
            calib.warnings.append(
                f"the calibration set has no image of class(es) {', '.join(missing)}: "
                "INT8 ranges may clip their activations; add images of every class"
            )
    if split is not None and not from_split:
        _compare_with_training(calib, spec, split, seed)


def _compare_with_training(calib: CalibrationSet, spec: ModelSpec, split: Split, seed: int) -> None:
    train = split.paths("train") if split.items.get("train") else []
    rng = random.Random(seed)
    sample = rng.sample(train, min(len(train), STATS_REFERENCE_IMAGES))
    frames = []
    for path, *_ in sample:  # (image, label) pairs, or (image, mask, sample) for segmentation
        try:
            frames.append(preprocess(read_image(path), spec)[0])
        except CorruptImageError:
            continue
    if not frames:
        return
    ref = channel_stats(np.stack(frames), spec)
    calib.stats["training"] = ref
    got = calib.stats["calibration"]
    pairs = zip(got["mean"], got["std"], ref["mean"], ref["std"], strict=True)
    for c, (m, s, rm, rs) in enumerate(pairs):
        ratio = s / rs if rs > 0 else float("inf")
        if abs(m - rm) > MEAN_SHIFT_LIMIT * rs or not (
            1 / STD_RATIO_LIMIT <= ratio <= STD_RATIO_LIMIT
        ):
            calib.warnings.append(
                f"calibration pixel statistics differ strongly from the training data in "
                f"channel {c} (mean {m:.2f} vs {rm:.2f}, std {s:.2f} vs {rs:.2f}): "
                "calibrate on images like the ones the model will see"
            )
            return
