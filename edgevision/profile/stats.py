"""Latency statistics: the percentiles a budget can name, and a summary of a set of samples."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgevision.errors import EdgeVisionError
from edgevision.registry import Registry

# A budget or a comparison names one of these; an unknown name lists the valid ones.
PERCENTILES: Registry[Callable[[np.ndarray], float]] = Registry("percentile")
PERCENTILES.register("p50", lambda x: float(np.percentile(x, 50)))
PERCENTILES.register("p90", lambda x: float(np.percentile(x, 90)))
PERCENTILES.register("p99", lambda x: float(np.percentile(x, 99)))
PERCENTILES.register("max", lambda x: float(np.max(x)))
PERCENTILES.register("mean", lambda x: float(np.mean(x)))

STAT_ORDER = ("min", "p50", "p90", "p99", "max", "mean")


@dataclass(frozen=True)
class LatencyStats:
    """Summary of latency samples, in milliseconds; ``throughput`` is items per second."""

    n: int
    min: float
    p50: float
    p90: float
    p99: float
    max: float
    mean: float
    std: float
    throughput: float

    def get(self, percentile: str) -> float:
        """The value of ``percentile`` (p50, p90, p99, max, mean; also min)."""
        if percentile != "min":
            PERCENTILES.get(percentile)  # an unknown name raises, listing the valid ones
        return float(getattr(self, percentile))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyStats:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def summarize(samples_ms: Sequence[float], items_per_sample: int = 1) -> LatencyStats:
    """Summarise latency samples (ms); throughput counts ``items_per_sample`` per sample."""
    x = np.asarray(samples_ms, dtype=np.float64)
    if x.size == 0:
        raise EdgeVisionError("no latency samples to summarise", "run at least one iteration")
    mean = float(np.mean(x))
    values = {name: PERCENTILES.get(name)(x) for name in PERCENTILES.names()}
    return LatencyStats(
        n=int(x.size),
        min=float(np.min(x)),
        std=float(np.std(x)),
        throughput=items_per_sample * 1000.0 / mean if mean > 0 else float("inf"),
        **values,
    )


def check_percentile(name: str) -> str:
    """Return ``name`` if it is a known percentile, else raise `RegistryError` listing them."""
    PERCENTILES.get(name)
    return name
