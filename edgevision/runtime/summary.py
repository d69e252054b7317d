"""`RunSummary`: what a pipeline run did and how fast, measured per frame.

A stable API (the profiler's pipeline mode reads it): frame counts, per-frame capture-to-result
latency and frame age, per-stage milliseconds per frame, reconnect gaps, wall time and the time
to the first result. Lists hold one float per processed frame (per read frame for ``capture``)
up to `SAMPLE_CAP`; past it a uniform sample of all frames (`Reservoir`), so a run of hours
keeps its memory flat while its percentiles stay unbiased.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

STAGES = ("capture", "preprocess", "infer", "postprocess", "sink")
PERCENTILES = (50, 90, 99)
SAMPLE_CAP = 1 << 12  # values kept per series (~130 KB as Python floats); p99 to ~0.2 points
_MASK = (1 << 64) - 1


def _mix(n: int) -> int:
    """splitmix64 of ``n``: a cheap, deterministic pseudo-random number per append count."""
    z = (n * 0x9E3779B97F4A7C15) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


class Reservoir(list):
    """A list that keeps at most ``cap`` values: every one until it is full, then a uniform
    sample of all values appended (Vitter's algorithm R). ``seen`` counts every append.

    Which slot a value replaces depends only on the append count, so reservoirs appended in
    step (one value per frame each: frame index, latency, stage times) keep the same frames.
    """

    def __init__(self, values: Any = (), cap: int = SAMPLE_CAP) -> None:
        super().__init__(values)
        self.cap = cap
        self.seen = len(self)

    def append(self, value: Any) -> None:
        """Keep ``value`` while there is room, else in a random slot with probability cap/seen."""
        self.seen += 1
        if len(self) < self.cap:
            super().append(value)
            return
        slot = _mix(self.seen) % self.seen
        if slot < self.cap:
            self[slot] = value


def _series() -> Reservoir:
    return Reservoir()


def percentiles(values: list[float] | np.ndarray) -> dict[str, float]:
    """{'n', 'mean', 'p50', 'p90', 'p99', 'max'} of ``values`` (NaN for an empty list)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        nan = float("nan")
        return {"n": 0, "mean": nan, **{f"p{p}": nan for p in PERCENTILES}, "max": nan}
    out: dict[str, float] = {"n": int(v.size), "mean": float(v.mean())}
    for p, value in zip(PERCENTILES, np.percentile(v, PERCENTILES), strict=True):
        out[f"p{p}"] = float(value)
    out["max"] = float(v.max())
    return out


@dataclass
class RunSummary:
    """A pipeline run's counts and timings.

    Counts: ``frames_read`` (delivered by the source, corrupt ones included) =
    ``frames_processed`` + ``frames_dropped`` (replaced by a newer frame before use, or still
    in flight when ``max_frames`` was reached) + ``frames_corrupt``.
    Timings, milliseconds: ``latency_ms[i]`` capture → result and ``age_ms[i]`` capture →
    preprocess start of the i-th processed frame (``frame_index[i]``); ``stage_ms[stage]`` one
    value per frame for each stage in `STAGES`. ``wall_s`` runs from the first frame captured to
    the last result; ``startup_s`` from the pipeline's start to its first result. ``cpus``:
    which CPUs the inference thread and the other stages were pinned to (empty: not pinned).
    """

    source: str
    backend: str
    frames_read: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0
    frames_corrupt: int = 0
    reconnects: int = 0
    reconnect_gaps_s: list[float] = field(default_factory=list)
    read_timeouts: int = 0
    wall_s: float = 0.0
    startup_s: float | None = None
    stop_reason: str = ""
    cpus: dict[str, list[int]] = field(default_factory=dict)  # the CPU plan, when pinned
    frame_index: list[int] = field(default_factory=_series)
    latency_ms: list[float] = field(default_factory=_series)
    age_ms: list[float] = field(default_factory=_series)
    stage_ms: dict[str, list[float]] = field(
        default_factory=lambda: {s: Reservoir() for s in STAGES}
    )

    @property
    def fps(self) -> float:
        """Processed frames per second of wall time."""
        return self.frames_processed / self.wall_s if self.wall_s > 0 else 0.0

    def latency(self) -> dict[str, float]:
        """Percentiles of capture-to-result latency (ms)."""
        return percentiles(self.latency_ms)

    def age(self) -> dict[str, float]:
        """Percentiles of frame age at preprocess (ms)."""
        return percentiles(self.age_ms)

    def stages(self) -> dict[str, dict[str, float]]:
        """Percentiles of each stage's per-frame time (ms)."""
        return {name: percentiles(values) for name, values in self.stage_ms.items()}

    def to_dict(self, samples: bool = False) -> dict[str, Any]:
        """JSON-ready; per-frame lists only with ``samples``, percentiles always."""
        data = asdict(self)
        for key in ("frame_index", "latency_ms", "age_ms", "stage_ms"):
            if not samples:
                data.pop(key)
        data.update(fps=self.fps, latency=self.latency(), age=self.age(), stages=self.stages())
        return data

    def table(self) -> Any:
        """A rich Table of the counts and timings (rich is a base dependency)."""
        from rich.table import Table

        table = Table(title=f"edgevision run — {self.source}", title_justify="left")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for name, value in self._rows():
            table.add_row(name, value)
        return table

    def _rows(self) -> list[tuple[str, str]]:
        lat, age = self.latency(), self.age()
        gaps = ", ".join(f"{g:.1f}" for g in self.reconnect_gaps_s[:5])
        rows = [
            ("backend", self.backend),
            ("stopped", self.stop_reason),
            ("frames read", str(self.frames_read)),
            ("processed", str(self.frames_processed)),
            ("dropped", str(self.frames_dropped)),
            ("corrupt", str(self.frames_corrupt)),
            ("reconnects", f"{self.reconnects}" + (f" (gaps s: {gaps})" if gaps else "")),
            ("FPS", f"{self.fps:.1f}"),
            ("latency p50 / p99 ms", f"{lat['p50']:.1f} / {lat['p99']:.1f}"),
            ("frame age p50 / p99 ms", f"{age['p50']:.1f} / {age['p99']:.1f}"),
        ]
        for name, stats in self.stages().items():
            rows.append((f"  {name} p50 / p99 ms", f"{stats['p50']:.2f} / {stats['p99']:.2f}"))
        if self.startup_s is not None:
            rows.append(("first result after s", f"{self.startup_s:.2f}"))
        if self.cpus:
            plan = " · ".join(f"{k} {','.join(map(str, v))}" for k, v in self.cpus.items())
            rows.append(("CPUs", plan))
        return rows
