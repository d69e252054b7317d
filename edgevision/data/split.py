"""A dataset split (train / val / test) as written by `edgevision train` into ``RUN/split.json``.

Paths are stored relative to the data root so a run folder can move with its data. `build` reads
it to sample a calibration set from the training split and to evaluate on the test split.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgevision.errors import DataError
from edgevision.fileio import atomic_write_json, read_json

SPLITS = ("train", "val", "test")


@dataclass
class Split:
    """Labelled samples per split: ``items[split] = [(relative_path, label_index), ...]``."""

    root: Path
    labels: list[str]
    items: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}

    def paths(self, split: str) -> list[tuple[Path, int]]:
        """Absolute paths and label indices of one split."""
        if split not in self.items:
            raise DataError(f"split {split!r} does not exist", f"use one of {sorted(self.items)}")
        return [(self.root / rel, label) for rel, label in self.items[split]]

    def labelled_paths(self, split: str) -> list[tuple[Path, str | None]]:
        """Absolute paths and label names of one split (what calibration stratifies by)."""
        return [(path, self.labels[y]) for path, y in self.paths(split)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "labels": list(self.labels),
            "items": {k: [[p, int(y)] for p, y in v] for k, v in self.items.items()},
            "skipped": self.skipped,
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the split as JSON (atomically)."""
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Split:
        """Read a split written by `save`."""
        path = Path(path)
        data = read_json(path, "split file", DataError, "train with `edgevision train`")
        try:
            return cls(
                root=Path(data["root"]),
                labels=list(data["labels"]),
                items={k: [(str(p), int(y)) for p, y in v] for k, v in data["items"].items()},
                skipped=list(data.get("skipped", [])),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(f"split file {path} is malformed: {exc}") from None
