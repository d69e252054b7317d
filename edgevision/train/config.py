"""`TrainConfig` (what `edgevision train` was asked to do) and `TrainResult` (what it did).

Torch-free and light: the CLI reads the defaults at start-up and checks a config before torch
is imported.
The config is stored, as a plain dict, in every checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgevision.errors import EdgeVisionError
from edgevision.spec import RESIZE_MODES

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "step")
MONITORS = ("val_acc", "val_loss", "val_f1", "val_map", "val_map50", "val_miou")  # per task
AUGMENTS = ("none", "light", "default", "strong")
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_RATIOS = (0.7, 0.15, 0.15)  # == edgevision.data.dataset.DEFAULT_RATIOS (tested)
# Options whose default depends on the task (its Trainer.defaults); None until `resolved`.
TASK_DEFAULTED = ("size", "resize", "monitor", "augment", "batch_size", "copy_paste")
MAX_COPY_PASTE = 64


@dataclass
class TrainConfig:
    """Everything a training run needs; mirrors the `edgevision train` options.

    ``task``: ``"auto"`` (from the data's layout), ``"classification"`` or ``"detection"``.
    ``weights``: ``"default"`` (shipped or timm-downloaded ImageNet weights), ``None`` (random
    init, i.e. training from scratch) or a local checkpoint path. ``freeze``: ``"full"``,
    ``"head"`` or ``"last:N"``. ``threads`` ``None`` means all cores. ``size`` is the input side
    in pixels (square) or ``"WIDTHxHEIGHT"``. The options in `TASK_DEFAULTED` left ``None`` take
    the task's defaults (`resolved`; e.g. classification 128 px, batch 32, detection 320x240,
    batch 8). ``copy_paste``: the most objects pasted into a training image from other
    training images (detection only; 0 off; detection's default is measured in the README).
    """

    data: str
    out: str = "runs/train"
    task: str = "auto"
    backbone: str = "efficientnet_lite0"
    weights: str | None = "default"
    size: int | str | None = None
    resize: str | None = None
    freeze: str = "full"
    dropout: float = 0.2
    optimizer: str = "adamw"
    lr: float = 2e-3  # measured on the road signs: 1e-3 and 4e-3 generalise worse (README)
    backbone_lr_scale: float = 1.0
    weight_decay: float = 0.01
    momentum: float = 0.9
    batch_size: int | None = None
    epochs: int = 20
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    step_size: int = 5
    gamma: float = 0.1
    label_smoothing: float = 0.1
    ema: float = 0.998  # decay of the weights' moving average (0: off); measured: README
    augment: str | None = None
    hflip: bool = False
    copy_paste: int | None = None
    split: tuple[float, float, float] = DEFAULT_RATIOS
    seed: int = 0
    patience: int = 6
    monitor: str | None = None
    resume: bool = False
    overwrite: bool = False
    compare_baseline: bool = False
    device: str = "auto"
    amp: bool | None = None
    threads: int | None = None
    workers: int = 0
    cache_mb: int = 2048
    quiet: bool = False

    def __post_init__(self) -> None:
        self.data = str(self.data)
        self.out = str(self.out)
        if isinstance(self.size, str) and self.size.strip().isdigit():
            self.size = int(self.size)
        if self.weights is not None and self.weights != "default":
            self.weights = str(self.weights)
        from edgevision.data.dataset import check_ratios  # cv2: not at CLI start-up

        self.split = check_ratios(self.split)

    def resolved(self) -> TrainConfig:
        """A copy with the task decided (``auto``: from the data) and task defaults filled in."""
        from dataclasses import replace

        from edgevision.tasks import TASKS, get_task
        from edgevision.tasks.base import infer_task

        task = self.task
        if task == "auto":
            task = infer_task(self.data)
        elif task not in TASKS:
            raise EdgeVisionError(
                f"--task {task!r} is not a task", f"use auto, {', '.join(TASKS.names())}"
            )
        defaults = get_task(task).training().defaults
        filled = {k: v for k, v in defaults.items() if getattr(self, k) is None}
        return replace(self, task=task, **filled)

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) from ``size`` (an int or ``"WIDTHxHEIGHT"``)."""
        return parse_input_size(self.size)

    def validate(self) -> None:
        """Raise `EdgeVisionError` naming the first bad option and the fix."""
        if self.task == "auto" or any(getattr(self, k) is None for k in TASK_DEFAULTED):
            raise EdgeVisionError(
                "the training config has undecided task defaults", "call config.resolved() first"
            )
        for name, value, options in (
            ("--optimizer", self.optimizer, OPTIMIZERS),
            ("--schedule", self.schedule, SCHEDULES),
            ("--monitor", self.monitor, MONITORS),
            ("--augment", self.augment, AUGMENTS),
            ("--device", self.device, DEVICES),
            ("--resize", self.resize, RESIZE_MODES),
        ):
            if value not in options:
                raise EdgeVisionError(f"{name} {value!r} is not valid", f"use {', '.join(options)}")
        self._check_ranges()
        from edgevision.train.freeze import parse_freeze

        parse_freeze(self.freeze)

    def _check_ranges(self) -> None:
        h, w = self.input_size
        checks = (
            ("--size", self.size, min(h, w) >= 16 and max(h, w) <= 1024, "16..1024"),
            ("--epochs", self.epochs, self.epochs >= 1, ">= 1"),
            ("--batch-size", self.batch_size, self.batch_size >= 1, ">= 1"),
            ("--lr", self.lr, 0 < self.lr < 10, "in (0, 10)"),
            (
                "--backbone-lr-scale",
                self.backbone_lr_scale,
                0 < self.backbone_lr_scale <= 1,
                "in (0, 1]",
            ),
            ("--weight-decay", self.weight_decay, 0 <= self.weight_decay < 1, "in [0, 1)"),
            ("--momentum", self.momentum, 0 <= self.momentum < 1, "in [0, 1)"),
            ("--dropout", self.dropout, 0 <= self.dropout < 1, "in [0, 1)"),
            ("--label-smoothing", self.label_smoothing, 0 <= self.label_smoothing < 1, "[0, 1)"),
            ("--warmup", self.warmup_epochs, 0 <= self.warmup_epochs <= self.epochs, "<= epochs"),
            ("--ema", self.ema, 0 <= self.ema < 1, "in [0, 1), e.g. 0.998 (0 turns it off)"),
            ("--step-size", self.step_size, self.step_size >= 1, ">= 1"),
            ("--gamma", self.gamma, 0 < self.gamma <= 1, "in (0, 1]"),
            ("--patience", self.patience, self.patience >= 0, ">= 0 (0 turns it off)"),
            ("--workers", self.workers, self.workers >= 0, ">= 0"),
            ("--cache-mb", self.cache_mb, self.cache_mb >= 0, ">= 0"),
            ("--threads", self.threads, self.threads is None or self.threads >= 1, ">= 1"),
            (
                "--copy-paste",
                self.copy_paste,
                0 <= self.copy_paste <= MAX_COPY_PASTE,
                f"in 0..{MAX_COPY_PASTE} (0 turns it off)",
            ),
        )
        for name, value, ok, valid in checks:
            if not ok:
                raise EdgeVisionError(f"{name} {value} is out of range", f"use a value {valid}")
        if self.copy_paste:
            from edgevision.tasks import get_task

            if not get_task(self.task).training().pastes_objects:
                raise EdgeVisionError(
                    f"--copy-paste {self.copy_paste}: pasting boxed objects applies to "
                    f"detection, not {self.task}",
                    "leave --copy-paste out (or pass 0)",
                )
        if self.resume and self.overwrite:
            raise EdgeVisionError(
                "--resume and --overwrite contradict each other", "pass only one of them"
            )

    @property
    def run_dir(self) -> Path:
        return Path(self.out)

    def to_dict(self) -> dict[str, Any]:
        """Plain values only (lists, not tuples): safe for JSON and ``weights_only`` loads."""
        d = asdict(self)
        d["split"] = list(d["split"])
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild a config from `to_dict`, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class TrainResult:
    """What a run produced: files, metrics (top-1 in [0, 1]) and its history."""

    run_dir: Path
    best_checkpoint: Path
    labels: list[str]
    metrics: dict[str, Any]
    history: list[dict[str, float]]
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    wall_s: float
    skipped: list[dict[str, str]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)  # the effective config (after --resume)
    baseline: TrainResult | None = None  # the head-only run of --compare-baseline
    model: Any = field(default=None, repr=False)  # the best weights, in eval mode (torch module)

    @property
    def val_top1(self) -> float:
        return float(self.metrics["val"]["top1"])

    @property
    def test_top1(self) -> float:
        return float(self.metrics["test"]["top1"])


def parse_input_size(size: int | str | None) -> tuple[int, int]:
    """``224`` → (224, 224); ``"256x192"`` (WIDTHxHEIGHT, as `data synth`) → (192, 256) (h, w)."""
    if isinstance(size, int) and not isinstance(size, bool):
        return size, size
    if isinstance(size, str) and size.strip().isdigit():
        return int(size), int(size)
    if isinstance(size, str):
        from edgevision.data.render import parse_size  # OpenCV: not at CLI start-up

        w, h = parse_size(size.strip().lower(), "--size")
        return h, w
    raise EdgeVisionError(
        f"--size {size!r} is not a size",
        "give pixels, e.g. --size 224, or WIDTHxHEIGHT, e.g. --size 320x240",
    )


def default_threads() -> int:
    """All cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS / Windows
        return os.cpu_count() or 1
