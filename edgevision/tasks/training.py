"""The torch-side hooks a task gives `edgevision train` (the loop itself stays generic).

`edgevision.train.loop` owns everything tasks share: threads, DDP, the optimiser and schedule,
EMA, freezing, early stopping, atomic checkpoints, exact ``--resume`` and the progress bars. A
task's `Trainer` supplies what differs: how its data is scanned and split, its spec, model,
datasets, loss, evaluation, log lines and report. Each task registers one instance as
``TRAINER`` in ``edgevision.tasks.<task>.train``; `Task.training()` imports it.

Scanning, loading a saved split, the data log lines and the datasets have defaults here, driven
by the task's class attributes (`scanner`, `split_type`, `data_table`, `issue_kind`,
`dataset_type`, `make_augment`); a task whose data differs overrides the method instead.
torch is imported only inside the methods that need it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgevision.errors import EdgeVisionError


def log_rows(log: Any, header: str, rows: list[dict[str, str]], limit: int = 10) -> None:
    """``header``, then the first ``limit`` rows (``{"path", "reason"}``) indented below it."""
    log.info(header)
    for item in rows[:limit]:
        log.info(f"  {item['path']}: {item['reason']}")


class Trainer:
    """Base hooks; a task overrides every method that raises `NotImplementedError` and sets
    (or overrides the methods that read) the data attributes below."""

    task: str = ""
    # Options whose default depends on the task (TrainConfig leaves them None).
    defaults: dict[str, Any] = {}
    # monitor name -> (history key, +1 when higher is better, -1 when lower is)
    monitors: dict[str, tuple[str, float]] = {}
    collate: Callable[[list[Any]], Any] | None = None  # the DataLoader's collate_fn
    # The data defaults' parts (functions as staticmethods):
    scanner: Callable[..., Any] | None = None  # (data, ratios, seed, store) -> the split
    split_type: Any = None  # the split's class: ``split_type.load(RUN/split.json)``
    data_table: Callable[[Any], Any] | None = None  # split -> the rich table `announce` logs
    issue_kind: str = "dataset issue(s)"  # what `announce` calls the split's ``issues``
    dataset_type: Callable[..., Any] | None = None  # (items, spec, store, augment, seed)
    make_augment: Callable[..., Any] | None = None  # (level, hflip, fill=) -> train augment
    pastes_objects: bool = False  # whether ``--copy-paste`` applies (its datasets paste boxes)

    def check_monitor(self, monitor: str) -> None:
        """Refuse a monitor this task does not record."""
        if monitor not in self.monitors:
            raise EdgeVisionError(
                f"--monitor {monitor!r} is not recorded when training for {self.task}",
                f"use {', '.join(self.monitors)}",
            )

    def scan(self, config: Any, store: Any) -> Any:
        """Read, verify and split ``config.data`` (decoding every image once into ``store``):
        `scanner` with the run's split ratios and seed."""
        return self.scanner(config.data, config.split, config.seed, store)

    def load_split(self, path: Path) -> Any:
        """The split a run saved (``RUN/split.json``), read by `split_type`."""
        return self.split_type.load(path)

    def make_spec(self, config: Any, split: Any) -> Any:
        """The run's ModelSpec."""
        raise NotImplementedError

    def create_model(self, backbone: str, spec: Any, weights: Any, dropout: float = 0.0) -> Any:
        """The model for ``spec`` on ``backbone``; ``weights=None`` is a random start."""
        raise NotImplementedError

    def announce(self, log: Any, split: Any) -> None:
        """Log what the data holds: where (its format) and the split sizes, `data_table`, then
        the first ten unusable files and dataset issues (``split.skipped``, ``split.issues``)."""
        sizes = ", ".join(f"{k} {len(v)}" for k, v in split.items.items())
        log.info(f"data: {split.root} ({split.format}) — {len(split.labels)} classes, {sizes}")
        log.table(self.data_table(split))
        for what, rows in (("unusable file(s)", split.skipped), (self.issue_kind, split.issues)):
            if rows:
                log_rows(log, f"[yellow]{len(rows)} {what}[/] (see report.txt):", rows)

    def datasets(self, split: Any, spec: Any, store: Any, config: Any) -> dict[str, Any]:
        """Train (augmented), val and test datasets: `dataset_type` over each split's items,
        the train one augmented by `make_augment` (level, ``--hflip``, the spec's pad value as
        the fill), each seeded by the run's seed."""
        from edgevision.train.data import make_datasets

        augment = self.make_augment(config.augment, config.hflip, fill=spec.pad_value)
        return make_datasets(split, spec, store, augment, config.seed, self.dataset_type)

    def loss(self, run: Any, outputs: Any, targets: Any) -> tuple[Any, dict[str, float]]:
        """The batch loss and its named parts (floats, for the history)."""
        raise NotImplementedError

    def evaluate(self, run: Any, loader: Any) -> tuple[dict[str, float], Any]:
        """``(history fields with "val_loss", raw result)`` over a whole split (all ranks)."""
        raise NotImplementedError

    def summarize(self, run: Any, raw: Any, fields: dict[str, float], split: str) -> dict:
        """The report's metrics of one split from `evaluate`'s raw result."""
        raise NotImplementedError

    def epoch_text(self, entry: dict[str, float]) -> str:
        """The metric part of an epoch's log line."""
        raise NotImplementedError

    def final_text(self, metrics: dict[str, Any]) -> str:
        """The headline of the best weights on val and test."""
        raise NotImplementedError

    def headline(self) -> list[tuple[str, str, Callable[[dict[str, Any]], float]]]:
        """Metrics for side-by-side tables: (JSON key, label, function(metrics) -> [0, 1])."""
        raise NotImplementedError

    def write_report(self, run: Any, metrics: dict[str, Any], history: list[dict]) -> None:
        """Write the run's report files (rank 0)."""
        raise NotImplementedError

    def rebuild(self, backbone: str, spec: Any) -> Any:
        """An empty model to load a checkpoint's weights into."""
        return self.create_model(backbone, spec, None)
