"""The torch-side hooks a task gives `edgevision train` (the loop itself stays generic).

`edgevision.train.loop` owns everything tasks share: threads, DDP, the optimiser and schedule,
EMA, freezing, early stopping, atomic checkpoints, exact ``--resume`` and the progress bars. A
task's `Trainer` supplies what differs: how its data is scanned and split, its spec, model,
datasets, loss, evaluation, log lines and report. Each task registers one instance as
``TRAINER`` in ``edgevision.tasks.<task>.train``; `Task.training()` imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgevision.errors import EdgeVisionError


class Trainer:
    """Base hooks; a task overrides every method that raises `NotImplementedError`."""

    task: str = ""
    # Options whose default depends on the task (TrainConfig leaves them None).
    defaults: dict[str, Any] = {}
    # monitor name -> (history key, +1 when higher is better, -1 when lower is)
    monitors: dict[str, tuple[str, float]] = {}
    collate: Callable[[list[Any]], Any] | None = None  # the DataLoader's collate_fn

    def check_monitor(self, monitor: str) -> None:
        """Refuse a monitor this task does not record."""
        if monitor not in self.monitors:
            raise EdgeVisionError(
                f"--monitor {monitor!r} is not recorded when training for {self.task}",
                f"use {', '.join(self.monitors)}",
            )

    def scan(self, config: Any, store: Any) -> Any:
        """Read, verify and split ``config.data`` (decoding every image once into ``store``)."""
        raise NotImplementedError

    def load_split(self, path: Path) -> Any:
        """The split a run saved (``RUN/split.json``)."""
        raise NotImplementedError

    def make_spec(self, config: Any, split: Any) -> Any:
        """The run's ModelSpec."""
        raise NotImplementedError

    def create_model(self, backbone: str, spec: Any, weights: Any, dropout: float = 0.0) -> Any:
        """The model for ``spec`` on ``backbone``; ``weights=None`` is a random start."""
        raise NotImplementedError

    def announce(self, log: Any, split: Any) -> None:
        """Log what the data holds (sizes, balance, skipped files)."""
        raise NotImplementedError

    def datasets(self, split: Any, spec: Any, store: Any, config: Any) -> dict[str, Any]:
        """Train (augmented), val and test datasets."""
        raise NotImplementedError

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
