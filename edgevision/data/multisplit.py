"""Splits of datasets whose images each hold several classes (detection, segmentation), torch-free.

`Stratifier` is the seeded train/val/test cut, stratified by each image's rarest class; a task
gives it how a sample names its classes (detection: a box's label per box, so a class counts its
boxes; segmentation: the ids its mask holds, so a class counts its images) and the words of its
"add images" hints. `TaskSplit` is the ``split.json`` both tasks write, marked with the task's
name: save, load (another task's split, or a classification one, is refused) and the
per-image rarest class that calibration stratifies by.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import numpy as np

from edgevision.data.split import SPLITS
from edgevision.errors import DataError
from edgevision.fileio import atomic_write_json, check_version, read_json


class Sample(Protocol):
    path: str  # POSIX, relative to the dataset root: the split's sort key

    def to_dict(self) -> dict[str, Any]: ...


S = TypeVar("S", bound=Sample)
T = TypeVar("T", bound="TaskSplit")


def quota(n: int, ratios: Sequence[float], done: Sequence[int]) -> list[int]:
    """How many of the next stratum of ``n`` go to each split (train first).

    Cumulative rounding: after each stratum every split holds its ratio of the images seen so
    far (to one image), so each stratum is cut in proportion and the totals match the ratios;
    train keeps at least one image of every stratum (a class's rarest images).
    """
    total = sum(done) + n
    rest = [
        max(0, math.floor(total * r + 0.5) - d) for r, d in zip(ratios[1:], done[1:], strict=True)
    ]
    while sum(rest) > n - 1:
        rest[rest.index(max(rest))] -= 1
    return [n - sum(rest), *rest]


@dataclass(frozen=True)
class Stratifier(Generic[S]):
    """The seeded, stratified split of one task's samples.

    ``classes(sample)`` lists the class ids a sample holds, repeated as often as the class should
    count (a detection image once per box); ``few_fix`` is the hint when there are fewer images
    than splits, ``empty_fix`` the hint when a given split folder has no usable image.
    """

    classes: Callable[[S], Sequence[int]]
    few_fix: str
    empty_fix: str

    def rarest(self, samples: Sequence[S]) -> list[int]:
        """Each sample's rarest class (counted over ``samples``; ties to the lower id), -1 for a
        sample without any."""
        totals = Counter(y for s in samples for y in self.classes(s))
        return [
            min(set(self.classes(s)), key=lambda y: (totals[y], y), default=-1) for s in samples
        ]

    def strata(self, samples: Sequence[S]) -> list[list[S]]:
        """Samples grouped by their rarest class, rarest first; samples without a class last."""
        totals = Counter(y for s in samples for y in self.classes(s))
        groups: dict[int, list[S]] = {}
        for sample, rarest in zip(samples, self.rarest(samples), strict=True):
            groups.setdefault(rarest, []).append(sample)
        order = sorted(groups, key=lambda y: (y < 0, totals[y], y))
        return [groups[y] for y in order]

    def assign(
        self,
        samples: Sequence[S],
        names: Sequence[str],
        ratios: Sequence[float],
        seed: int,
        what: str,
    ) -> dict[str, list[S]]:
        """Seeded, stratified cut of ``samples`` into ``names`` (train first) by ``ratios``."""
        if len(samples) < len(names):
            raise DataError(
                f"{what} has {len(samples)} usable image(s); a {'/'.join(names)} split needs at "
                f"least {len(names)}",
                self.few_fix,
            )
        rng = np.random.default_rng(seed)
        out: dict[str, list[S]] = {name: [] for name in names}
        for group in self.strata(sorted(samples, key=lambda s: s.path)):
            order = [group[i] for i in rng.permutation(len(group))]
            counts = quota(len(order), ratios, [len(out[name]) for name in names])
            start = 0
            for name, count in zip(names, counts, strict=True):
                out[name] += order[start : start + count]
                start += count
        self._fill_empty(out, names)
        self._cover_classes(out, names)
        return {name: sorted(out[name], key=lambda s: s.path) for name in names}

    def complete(
        self, data: Path, given: dict[str, list[S]], ratios: Sequence[float], seed: int
    ) -> dict[str, list[S]]:
        """User-given splits as they are; a missing val or test is carved from train
        (stratified)."""
        for name, samples in given.items():
            if not samples:
                raise DataError(f"{data / name} has no usable images", self.empty_fix)
        missing = [name for name in SPLITS if name not in given]
        items = {name: sorted(given[name], key=lambda s: s.path) for name in given}
        if missing:
            names = ["train", *missing]
            shares = [ratios[SPLITS.index(name)] for name in names]
            carved = self.assign(
                given["train"], names, [r / sum(shares) for r in shares], seed, str(data / "train")
            )
            items.update(carved)
        return {name: items[name] for name in SPLITS}

    def _fill_empty(self, out: dict[str, list[S]], names: Sequence[str]) -> None:
        """Give an empty split the training image train can spare best (its classes most
        common)."""
        for name in names[1:]:
            if out[name]:
                continue
            train = out[names[0]]
            present = Counter(y for s in train for y in set(self.classes(s)))
            spare = [
                min((present[y] for y in self.classes(s)), default=len(train) + 1) for s in train
            ]
            pick = max(range(len(train)), key=lambda i: (spare[i], i))
            out[name].append(train.pop(pick))

    def _cover_classes(self, out: dict[str, list[S]], names: Sequence[str]) -> None:
        """Move an image into train for each class in 3+ images that train would lack."""
        images = Counter(y for split in out.values() for s in split for y in set(self.classes(s)))
        for y in sorted(images):
            if images[y] < 3 or any(y in self.classes(s) for s in out[names[0]]):
                continue
            donors = [
                n
                for n in names[1:]
                if len(out[n]) > 1 and any(y in self.classes(s) for s in out[n])
            ]
            if donors:
                donor = max(donors, key=lambda n: len(out[n]))
                pick = next(i for i, s in enumerate(out[donor]) if y in self.classes(s))
                out[names[0]].append(out[donor].pop(pick))


class TaskSplit:
    """What `DetectionSplit` and `SegmentationSplit` share: their ``split.json`` and lookups.

    A subclass is a dataclass with the fields ``root``, ``labels``, ``format``, ``items``
    (split name → samples), ``skipped`` and ``issues``, and names its task (``TASK``, the
    ``task`` key of the file), the schema version of its file (``SCHEMA``), its sample class
    (``SAMPLE``, with ``to_dict`` and ``from_dict(row, n_labels)``) and its `Stratifier`.
    """

    TASK: ClassVar[str]
    SCHEMA: ClassVar[int]
    SAMPLE: ClassVar[Any]
    STRATIFIER: ClassVar[Stratifier[Any]]
    # The subclass's dataclass fields (annotations here make no fields).
    root: Path
    labels: list[str]
    format: str
    items: dict[str, list[Any]]
    skipped: list[dict[str, str]]
    issues: list[dict[str, str]]

    def _samples(self, split: str) -> list[Any]:
        if split not in self.items:
            raise DataError(f"split {split!r} does not exist", f"use one of {sorted(self.items)}")
        return self.items[split]

    def labelled_paths(self, split: str) -> list[tuple[Path, str | None]]:
        """Absolute image paths and each image's rarest class in the split (by the task's count
        of the split's classes; None for an image without any): what calibration stratifies
        by, so every class's images are sampled."""
        samples = self._samples(split)
        rarest = self.STRATIFIER.rarest(samples)
        return [
            (self.root / s.path, self.labels[y] if y >= 0 else None)
            for s, y in zip(samples, rarest, strict=True)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.TASK,
            "schema_version": self.SCHEMA,
            "root": str(self.root),
            "format": self.format,
            "labels": list(self.labels),
            "items": {k: [s.to_dict() for s in v] for k, v in self.items.items()},
            "skipped": self.skipped,
            "issues": self.issues,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the split as JSON (atomically)."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls: type[T], path: str | os.PathLike[str]) -> T:
        """Read a split written by `save`; another task's split (a classification split has no
        'task' key) is a `DataError`."""
        path = Path(path)
        data = read_json(path, "split file", DataError, "train with `edgevision train`")
        if not isinstance(data, dict):
            raise DataError(f"split file {path} is malformed: not a JSON object")
        task = cls.TASK
        if data.get("task") != task:
            what = "a classification split (no 'task' key)"
            if "task" in data:
                what = f"a split for task {data['task']!r}"
            raise DataError(
                f"split file {path} is not a {task} split: it is {what}",
                f"give the split.json of a {task} run, or scan the {task} dataset again",
            )
        check_version(
            data.get("schema_version"),
            cls.SCHEMA,
            f"split file {path}",
            DataError,
            "scan the dataset again with this edgevision",
        )
        try:
            labels = [str(name) for name in data["labels"]]
            items = {
                str(k): [cls.SAMPLE.from_dict(row, len(labels)) for row in v]
                for k, v in data["items"].items()
            }
            return cls(
                root=Path(data["root"]),
                labels=labels,
                format=str(data["format"]),
                items=items,
                skipped=list(data.get("skipped", [])),
                issues=list(data.get("issues", [])),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"split file {path} is malformed: {exc}") from None
