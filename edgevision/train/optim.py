"""Optimisers (AdamW, SGD with momentum) and learning-rate schedules with linear warm-up.

Schedules are stepped once per batch, so warm-up is smooth even when it lasts one epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from edgevision.registry import Registry
from edgevision.train.config import TrainConfig

if TYPE_CHECKING:
    import torch

OPTIMIZERS: Registry[Callable[[list[dict], TrainConfig], torch.optim.Optimizer]] = Registry(
    "optimizer"
)
# name → function(step, total_steps, steps_per_epoch, config) → learning-rate factor.
SCHEDULES: Registry[Callable[[int, int, int, TrainConfig], float]] = Registry("schedule")
_WARMUP_START = 0.01  # the first step's factor: warm-up from 1% of the learning rate


@OPTIMIZERS.register("adamw")
def _adamw(groups: list[dict], config: TrainConfig) -> torch.optim.Optimizer:
    import torch

    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


@OPTIMIZERS.register("sgd")
def _sgd(groups: list[dict], config: TrainConfig) -> torch.optim.Optimizer:
    import torch

    return torch.optim.SGD(
        groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def param_groups(
    model: torch.nn.Module, lr: float, weight_decay: float, backbone_lr_scale: float = 1.0
) -> list[dict]:
    """Trainable parameters in four groups: head / backbone × decay / no decay.

    Biases and norm weights (1-D) get no weight decay. The backbone's learning rate is
    ``lr * backbone_lr_scale``: a smaller step keeps more of the pretrained features.
    """
    head = {id(p) for p in model.get_classifier().parameters()}
    groups = {(h, d): [] for h in (True, False) for d in (True, False)}
    for p in model.parameters():
        if p.requires_grad:
            groups[(id(p) in head, p.ndim > 1)].append(p)
    return [
        {
            "params": params,
            "lr": lr if is_head else lr * backbone_lr_scale,
            "weight_decay": weight_decay if decays else 0.0,
        }
        for (is_head, decays), params in groups.items()
    ]


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The configured optimiser over the model's trainable parameters."""
    groups = param_groups(model, config.lr, config.weight_decay, config.backbone_lr_scale)
    return OPTIMIZERS.get(config.optimizer)(groups, config)


def _warmup(step: int, steps_per_epoch: int, config: TrainConfig) -> float | None:
    warm = round(config.warmup_epochs * steps_per_epoch)
    if step >= warm:
        return None
    return _WARMUP_START + (1.0 - _WARMUP_START) * step / max(1, warm)


@SCHEDULES.register("cosine")
def _cosine(step: int, total: int, steps_per_epoch: int, config: TrainConfig) -> float:
    warm = _warmup(step, steps_per_epoch, config)
    if warm is not None:
        return warm
    start = round(config.warmup_epochs * steps_per_epoch)
    progress = (step - start) / max(1, total - start)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


@SCHEDULES.register("step")
def _step(step: int, total: int, steps_per_epoch: int, config: TrainConfig) -> float:
    del total
    warm = _warmup(step, steps_per_epoch, config)
    if warm is not None:
        return warm
    return config.gamma ** (step // (config.step_size * steps_per_epoch))


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-batch `LambdaLR` following the configured schedule over all epochs."""
    import torch

    total = config.epochs * steps_per_epoch
    schedule = SCHEDULES.get(config.schedule)

    def factor(step: int) -> float:
        return schedule(step, total, steps_per_epoch, config)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
