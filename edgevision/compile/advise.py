"""Calibration advisor: how many images did the ranges need to settle?

MinMax ranges are computed with ONNX Runtime's own calibrator on growing prefixes of the
calibration set (16, 32, 64, …, N images, in the set's class-interleaved order). After each
prefix the calibrator's running ranges are read; the change from one prefix to the next is the
largest move of any tensor's min or max, relative to that tensor's range width. The ranges have
*settled* at the first prefix after which every further change stays below ``tolerance``; the
recommendation is twice that (a margin), never below the minimum set size. Ranges still moving
at N mean the set is too small (or holds rare outliers).

The result is cached like the ranges (same key, plus the advisor's settings), so a rebuild
does not pay for the extra pass.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgevision.compile.calibrate import (
    _canonical,
    _input_batch,
    _limit_threads,
    cache_key,
    default_cache_dir,
    quantizable_op_types,
    read_keyed_cache,
)
from edgevision.compile.calibration import MIN_IMAGES, CalibrationSet
from edgevision.compile.progress import Tracker, silent
from edgevision.errors import ConfigError
from edgevision.fileio import atomic_write_text, sha256_bytes
from edgevision.spec import ModelSpec

log = logging.getLogger(__name__)

ADVICE_FORMAT = 1
DEFAULT_TOLERANCE = 0.05
_TINY = 1e-12


@dataclass(frozen=True)
class CalibrationAdvice:
    """Range change per prefix and the size the ranges needed."""

    size: int  # images in the set
    tolerance: float
    prefixes: list[int]
    changes: list[float | None]  # change from the previous prefix (None for the first)
    moved_most: list[str | None]  # the tensor that moved most at each step
    p90_changes: list[float | None]  # 90% of the tensors moved less than this
    settled_at: int | None  # None: not settled (still moving at N, or too few prefixes)
    recommended: int | None
    from_cache: bool = False
    available: int | None = None  # images the calibration source holds (None: unknown)

    @property
    def enough(self) -> bool | None:
        """Whether the set is at least the recommended size (None: cannot tell)."""
        return None if self.recommended is None else self.size >= self.recommended

    def message(self) -> str:
        """One sentence for the console and the report."""
        if len(self.prefixes) < 2:
            return (
                f"{self.size} calibration images are too few to see the ranges settle; "
                f"use at least {2 * self.prefixes[0]}"
            )
        tol = f"{100 * self.tolerance:g}%"
        if self.settled_at is None:
            last = self.changes[-1] or 0.0
            typical = self.p90_changes[-1] or 0.0
            return (
                f"calibration ranges still move at {self.size} images (last step "
                f"{100 * last:.1f}% > {tol} in {self.moved_most[-1]}; 90% of tensors < "
                f"{100 * typical:.1f}%): {self._grow()}"
            )
        verdict = "the set is large enough" if self.enough else self._grow()
        return (
            f"calibration ranges settled at {self.settled_at} of {self.size} images "
            f"(every later change < {tol}); {self.recommended} recommended, {verdict}"
        )

    def _grow(self) -> str:
        """How to reach ``recommended``: a larger --calib-size while the source has images,
        else how many more images the source needs (never more than it holds via the size)."""
        if self.available is None or (self.recommended or 0) <= self.available:
            return f"use more images: --calib-size {self.recommended}"
        short = self.recommended - self.available
        grow = f"use --calib-size {self.available} and " if self.available > self.size else ""
        return (
            f"the calibration source holds only {self.available} images: {grow}add "
            f"{short} more images (from the camera) to --calib"
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for name in ("changes", "p90_changes"):
            d[name] = [None if c is None else round(c, 5) for c in d[name]]
        return d | {"enough": self.enough, "message": self.message(), "method": "minmax"}


def prefix_sizes(total: int, start: int = MIN_IMAGES) -> list[int]:
    """``start``, 2·``start``, 4·``start``, … below ``total``, then ``total``."""
    sizes, n = [], start
    while n < total:
        sizes.append(n)
        n *= 2
    return [*sizes, total]


def advise_calibration_size(
    model_path: str | os.PathLike[str],
    calib: CalibrationSet,
    spec: ModelSpec,
    tolerance: float = DEFAULT_TOLERANCE,
    start: int = MIN_IMAGES,
    cache_dir: str | os.PathLike[str] | None = None,
    threads: int = 0,
    batch_size: int = 16,
    track: Tracker = silent,
) -> CalibrationAdvice:
    """How many of ``calib``'s images the MinMax ranges of ``model_path`` (the pre-processed
    FP32 model) needed to settle within ``tolerance``, and the size to use."""
    if not 0 < tolerance < 1 or start < 1:
        raise ConfigError(
            f"calibration advisor tolerance {tolerance} / start {start} out of range",
            "use a tolerance in (0, 1), e.g. 0.05, and start >= 1",
        )
    key = cache_key(model_path, calib, "minmax", spec) | {
        "advice": ADVICE_FORMAT,
        "tolerance": tolerance,
        "start": start,
    }
    path = (
        Path(cache_dir or default_cache_dir()) / f"advice-{sha256_bytes(_canonical(key))[:32]}.json"
    )
    cached = _load(path, key)
    if cached is not None:
        return replace(cached, available=calib.stats.get("available"))
    prefixes = prefix_sizes(len(calib), start)
    snapshots = _prefix_ranges(
        Path(model_path), calib.tensors, prefixes, threads, batch_size, track
    )
    advice = _advice(len(calib), tolerance, prefixes, snapshots, start)
    advice = replace(advice, available=calib.stats.get("available"))
    atomic_write_text(path, json.dumps({"edgevision_key": key, "advice": advice.to_dict()}))
    return advice


def _advice(
    size: int,
    tolerance: float,
    prefixes: list[int],
    snapshots: list[dict[str, tuple[float, float]]],
    start: int,
) -> CalibrationAdvice:
    changes: list[float | None] = [None]
    moved: list[str | None] = [None]
    p90: list[float | None] = [None]
    for prev, cur in zip(snapshots, snapshots[1:], strict=False):
        moves = range_changes(prev, cur)
        tensor = max(moves, key=moves.__getitem__) if moves else None
        tensor = tensor if tensor and moves[tensor] > 0 else None
        changes.append(moves[tensor] if tensor else 0.0)
        moved.append(tensor)
        p90.append(float(np.percentile(list(moves.values()), 90)) if moves else 0.0)
    settled = None
    if len(prefixes) >= 2 and (changes[-1] or 0.0) < tolerance:
        settled = prefixes[-1]
        for i in range(len(prefixes) - 1, 0, -1):
            if (changes[i] or 0.0) >= tolerance:
                break
            settled = prefixes[i - 1]
    # Not settled: the set is too small to say how many are enough; double it.
    recommended = max(MIN_IMAGES, 2 * settled) if settled is not None else 2 * max(size, start)
    return CalibrationAdvice(size, tolerance, prefixes, changes, moved, p90, settled, recommended)


def range_changes(
    prev: dict[str, tuple[float, float]], cur: dict[str, tuple[float, float]]
) -> dict[str, float]:
    """How far each tensor's min or max moved between two range sets, relative to its current
    width (tensors of zero width are skipped)."""
    out = {}
    for tensor, (lo, hi) in cur.items():
        if tensor in prev and hi - lo > _TINY:
            p_lo, p_hi = prev[tensor]
            out[tensor] = max(abs(lo - p_lo), abs(hi - p_hi)) / (hi - lo)
    return out


class _Reader:
    """A CalibrationDataReader over several batches."""

    def __init__(self, name: str, batches: list[np.ndarray]) -> None:
        self._items = [{name: np.ascontiguousarray(b)} for b in reversed(batches)]

    def get_next(self) -> dict[str, np.ndarray] | None:
        return self._items.pop() if self._items else None


def _prefix_ranges(
    model_path: Path,
    tensors: np.ndarray,
    prefixes: list[int],
    threads: int,
    batch_size: int,
    track: Tracker,
) -> list[dict[str, tuple[float, float]]]:
    """ORT's MinMax calibrator fed prefix by prefix; its running ranges read after each."""
    from onnxruntime.quantization import CalibrationMethod, create_calibrator

    name, fixed = _input_batch(model_path)
    step = fixed or batch_size
    snapshots = []
    with tempfile.TemporaryDirectory(prefix="edgevision-advise-") as tmp:
        calibrator = create_calibrator(
            model_path,
            quantizable_op_types(),
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"symmetric": False},
        )
        if threads:
            _limit_threads(calibrator, threads)
        bounds = list(zip([0, *prefixes], prefixes, strict=False))
        with contextlib.redirect_stdout(io.StringIO()):
            for lo, hi in track(bounds, len(bounds), "calibration advisor"):
                part = tensors[lo:hi]
                batches = [part[i : i + step] for i in range(0, len(part), step)]
                if fixed:
                    batches = [b for b in batches if len(b) == fixed]
                if batches:
                    calibrator.collect_data(_Reader(name, batches))
                snapshots.append(_ranges(calibrator.compute_data()))
    return snapshots


def _ranges(data: Any) -> dict[str, tuple[float, float]]:
    if data is None:  # nothing collected yet (a fixed batch larger than the prefix)
        return {}
    return {
        k: (float(np.min(v.range_value[0])), float(np.max(v.range_value[1])))
        for k, v in data.data.items()
    }


def _load(path: Path, key: dict[str, Any]) -> CalibrationAdvice | None:
    def advice(raw: dict[str, Any]) -> CalibrationAdvice:
        saved = raw["advice"]
        fields = {k: saved[k] for k in CalibrationAdvice.__dataclass_fields__ if k in saved}
        return CalibrationAdvice(**(fields | {"from_cache": True}))

    return read_keyed_cache(path, key, advice, "calibration advice")
