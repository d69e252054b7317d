"""Freeze strategies: ``full``, ``head`` or ``last:N`` (the last N stages and the head).

Stages come from timm's own parameter grouping (``model.group_matcher(coarse=True)``, the one
timm uses for layer-wise learning-rate decay), so ``last:N`` works for any timm model: for
EfficientNet the stages are ``blocks.0`` … ``blocks.6``, and ``conv_head``/``bn2`` belong to
the last one. Models without a matcher fall back to their top-level children.

Frozen BatchNorm layers stay in eval mode even while the model trains, so their running
statistics keep the pretrained values (`set_train_mode`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgevision.errors import EdgeVisionError

if TYPE_CHECKING:
    import torch

_LAST = re.compile(r"^last:(\d+)$")


@dataclass(frozen=True)
class FreezePlan:
    """What a strategy trains: ``stages`` is how many of the last stages (``-1`` = all)."""

    name: str
    stages: int

    def describe(self, total: int) -> str:
        if self.stages < 0:
            return "full (every layer trains)"
        if self.stages == 0:
            return "head only (backbone frozen)"
        return f"last {self.stages} of {total} stages + head"


def parse_freeze(value: str) -> FreezePlan:
    """``"full"``, ``"head"`` or ``"last:N"`` → a `FreezePlan`; anything else is an error."""
    value = str(value).strip().lower()
    if value == "full":
        return FreezePlan("full", -1)
    if value == "head":
        return FreezePlan("head", 0)
    match = _LAST.match(value)
    if match:
        return FreezePlan(value, int(match.group(1)))
    raise EdgeVisionError(
        f"--freeze {value!r} is not a freeze strategy",
        "use full, head, or last:N (the last N stages and the head train), e.g. last:2",
    )


def stages(model: torch.nn.Module) -> list[list[str]]:
    """The model's parameter names grouped into stages, input to output, head excluded.

    A model may name its own stages (``freeze_stages()``, e.g. the detector's backbone).
    """
    own = getattr(model, "freeze_stages", None)
    if own is not None:
        return own()
    head = {id(p) for p in model.get_classifier().parameters()}
    names = {id(p): n for n, p in model.named_parameters()}
    matcher = getattr(model, "group_matcher", None)
    if matcher is not None:
        from timm.models import group_parameters

        groups = list(group_parameters(model, matcher(coarse=True)).values())
    else:
        groups = [[f"{c}.{n}" for n, _ in m.named_parameters()] for c, m in model.named_children()]
    keep = {n for i, n in names.items() if i not in head}
    groups = [[n for n in g if n in keep] for g in groups]
    return [g for g in groups if g]


def apply_freeze(model: torch.nn.Module, plan: FreezePlan | str) -> tuple[int, int]:
    """Set ``requires_grad`` by the plan; returns (trainable, total) parameter counts."""
    plan = parse_freeze(plan) if isinstance(plan, str) else plan
    groups = stages(model)
    if plan.stages > len(groups):
        raise EdgeVisionError(
            f"--freeze {plan.name}: this backbone has only {len(groups)} stages",
            f"use last:1 … last:{len(groups)}, head or full",
        )
    train_names: set[str] = set()
    if plan.stages < 0:
        train_names = {n for n, _ in model.named_parameters()}
    elif plan.stages > 0:
        train_names = {n for g in groups[-plan.stages :] for n in g}
    head = {id(p) for p in model.get_classifier().parameters()}
    for name, p in model.named_parameters():
        p.requires_grad_(name in train_names or id(p) in head)
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


def frozen_norms(model: torch.nn.Module) -> list[torch.nn.Module]:
    """BatchNorm layers whose parameters are all frozen (they keep their running stats)."""
    from torch.nn.modules.batchnorm import _BatchNorm

    def frozen(m: torch.nn.Module) -> bool:
        params = list(m.parameters())
        return bool(params) and not any(p.requires_grad for p in params)

    return [m for m in model.modules() if isinstance(m, _BatchNorm) and frozen(m)]


def set_train_mode(model: torch.nn.Module, norms: list[torch.nn.Module] | None = None) -> None:
    """``model.train()``, except frozen BatchNorm layers, which stay in eval mode."""
    model.train()
    for m in frozen_norms(model) if norms is None else norms:
        m.eval()
