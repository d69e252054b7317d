"""Training (torch): backbones, heads, freeze policies, loop, reports.

Public API: ``train(TrainConfig(...)) -> TrainResult``. Names are resolved lazily so that
importing ``edgevision.train`` (e.g. for `edgevision.train.checkpoint`) does not pull in the
training loop.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgevision.train.config import TrainConfig, TrainResult
    from edgevision.train.loop import train

__all__ = ["TrainConfig", "TrainResult", "train"]
_LAZY = {
    "TrainConfig": "edgevision.train.config",
    "TrainResult": "edgevision.train.config",
    "train": "edgevision.train.loop",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgevision.train' has no attribute {name!r}")
