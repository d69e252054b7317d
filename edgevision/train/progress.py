"""Console output of a run: rich progress bars per epoch, or plain log lines (``--quiet``).

Only rank 0 talks; other ranks get the silent `NullLog`.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from edgevision.registry import Registry


class NullLog:
    """Says nothing (ranks other than 0)."""

    def info(self, message: str) -> None:
        """One line of information."""

    def table(self, table: Any) -> None:
        """A rich table."""

    def epoch(self, epoch: int, epochs: int, steps: int) -> _Epoch:
        """A context manager tracking one epoch's steps."""
        return _Epoch()


class _Epoch:
    """Counts images and the running loss of one epoch; subclasses display them."""

    def __init__(self) -> None:
        self.images = 0
        self.loss_sum = 0.0
        self.steps = 0
        self.start = time.perf_counter()

    def __enter__(self) -> _Epoch:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def step(self, images: int, loss: float) -> None:
        self.images += images
        self.loss_sum += loss * images
        self.steps += 1

    @property
    def loss(self) -> float:
        return self.loss_sum / max(1, self.images)

    @property
    def rate(self) -> float:
        return self.images / max(1e-9, time.perf_counter() - self.start)


class PlainLog(NullLog):
    """Plain lines, no colours or bars: for log files and CI (``--quiet``)."""

    def __init__(self) -> None:
        self.console = Console(no_color=True, highlight=False, soft_wrap=True)

    def info(self, message: str) -> None:
        self.console.print(message)  # markup is parsed (and dropped: no colours)

    def table(self, table: Any) -> None:
        self.console.print(table)

    def epoch(self, epoch: int, epochs: int, steps: int) -> _Epoch:
        return _Epoch()


class _RichEpoch(_Epoch):
    def __init__(self, console: Console, epoch: int, epochs: int, steps: int) -> None:
        super().__init__()
        self.progress = Progress(
            TextColumn(f"epoch {epoch}/{epochs}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[rate]:.0f} img/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.task = self.progress.add_task("train", total=steps, loss=0.0, rate=0.0)

    def __enter__(self) -> _RichEpoch:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def step(self, images: int, loss: float) -> None:
        super().step(images, loss)
        self.progress.update(self.task, advance=1, loss=self.loss, rate=self.rate)


class RichLog(PlainLog):
    """Colours, tables and a live progress bar per epoch (loss, images/s, ETA)."""

    def __init__(self) -> None:
        self.console = Console(highlight=False)

    def info(self, message: str) -> None:
        self.console.print(message)

    def epoch(self, epoch: int, epochs: int, steps: int) -> _Epoch:
        if not self.console.is_terminal:  # a live bar in a log file is just noise
            return _Epoch()
        return _RichEpoch(self.console, epoch, epochs, steps)


LOGS: Registry[type[NullLog]] = Registry("log style")
LOGS.register("rich", RichLog)
LOGS.register("plain", PlainLog)
LOGS.register("none", NullLog)


def make_log(quiet: bool, is_main: bool) -> NullLog:
    """Rank 0's log (rich or plain); other ranks say nothing."""
    return LOGS.get("none" if not is_main else "plain" if quiet else "rich")()
