"""Which engine a bundle deploys on this device, chosen by measurement.

The build deploys INT8 on the CPU only where it measured faster than FP32
(`edgevision.compile.deploy`). TensorRT's kernels differ from GPU to GPU, so its choice is made
where the engines are built: `choose_engine` (``edgevision engine``'s default, ``--precision
auto``) builds the INT8 engine (the Q/DQ model) and the FP16 one (the FP32 model), times both
with their own runners at batch 1 and the profile's max batch, interleaved, and deploys INT8 only
when it is ``MIN_SPEEDUP`` times faster at batch 1 and a second, independent timing agrees. The
choice goes into the manifest's ``deploy.tensorrt`` with this device's identity; a runner made
without a precision (`TrtRunner.from_bundle`, ``edgevision run``, ``profile``) runs the recorded
engine on that device and INT8 elsewhere.

Not run on a GPU in this project's CI (no NVIDIA device there); its logic is tested against the
fake TensorRT of ``tests/backends/tensorrt``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from edgevision.errors import BuildError

if TYPE_CHECKING:
    from edgevision.backends.tensorrt.staleness import EngineRecord, Environment
    from edgevision.bundle import Bundle

_LOG = logging.getLogger(__name__)

TARGET = "tensorrt"  # the manifest's deploy.<target>
MIN_SPEEDUP = 1.10  # the CPU build's rule (`edgevision.compile.deploy.MIN_SPEEDUP`)
ITERATIONS = 200  # interleaved rounds per timing
ARTIFACT = {"int8": "int8-trt", "fp16": "fp32"}

# Median ms per call of each engine at each batch: (engines by key, input shapes, rounds) ->
# key -> batch -> ms.
EngineTimer = Callable[
    [Mapping[str, "EngineRecord"], Sequence[tuple[int, ...]], int], dict[str, dict[str, float]]
]


@dataclass
class EngineChoice:
    """The engine this device deploys and why, with the latencies that decided it."""

    precision: str  # "int8" or "fp16"
    why: str
    engines: dict[str, EngineRecord]  # precision -> the engine built for it
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)  # precision -> batch
    measured: bool = True
    recorded: bool = False  # written into the bundle's manifest

    @property
    def engine(self) -> EngineRecord:
        """The deployed engine's record."""
        return self.engines[self.precision]

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``deploy.tensorrt`` record."""
        record = self.engine
        return {
            "artifact": ARTIFACT[self.precision],
            "precision": self.precision,
            "why": self.why,
            "measured": self.measured,
            "latency_ms": self.latency_ms,
            "engines": {p: r.file for p, r in self.engines.items()},
            "device": asdict(record.environment),
        }


def choose_engine(
    bundle_path: str | os.PathLike[str],
    iterations: int | None = None,
    min_speedup: float = MIN_SPEEDUP,
    timer: EngineTimer | None = None,
    **options: Any,
) -> EngineChoice:
    """Build (or reuse) the INT8 and the FP16 engine of ``bundle_path`` on this device, deploy
    the faster one (INT8 only when ``min_speedup`` times faster at batch 1, twice, in timings of
    ``iterations`` rounds, default ``ITERATIONS``) and record the choice in the manifest.
    ``options`` are `build_engine`'s (not ``precision``); the FP16 engine ignores
    ``fp16_fallback``. Where no FP16 engine can be built here, INT8 is deployed unmeasured and
    the record says why."""
    from edgevision.backends.tensorrt.build import build_engine
    from edgevision.bundle import Bundle

    options.pop("precision", None)
    int8 = build_engine(bundle_path, precision="int8", **options)
    float_options = {k: v for k, v in options.items() if k != "fp16_fallback"}
    try:
        fp16 = build_engine(bundle_path, precision="fp16", **float_options)
    except BuildError as exc:
        choice = EngineChoice(
            "int8",
            f"int8-trt deployed unmeasured: no FP16 engine to compare with ({exc.message})",
            {"int8": int8},
            measured=False,
        )
        return record_choice(Bundle.open(bundle_path), choice)
    engines = {"int8": int8, "fp16": fp16}
    bundle = Bundle.open(bundle_path)
    time = timer or time_engines
    shapes = [bundle.spec.input_shape(b) for b in sorted({1, int8.max_batch})]
    rounds = iterations or ITERATIONS
    times = time(engines, shapes, rounds)
    if _faster(times, min_speedup):
        times = time(engines, shapes, rounds)  # one fast timing may be chance
    choice = EngineChoice(
        "int8" if _faster(times, min_speedup) else "fp16", _why(times, min_speedup), engines, times
    )
    return record_choice(bundle, choice)


def time_engines(
    engines: Mapping[str, EngineRecord],
    shapes: Sequence[tuple[int, ...]],
    iterations: int = ITERATIONS,
) -> dict[str, dict[str, float]]:
    """Median ms per call of every engine at every input shape (random inputs; keyed by the
    batch), interleaved in a fresh order each round, each runner's own clock
    (`edgevision.profile`'s method)."""
    import numpy as np

    from edgevision.backends.tensorrt.runner import TrtRunner
    from edgevision.profile.models import median_ms

    rng = np.random.default_rng(0)
    feeds = {str(s[0]): rng.normal(size=s).astype(np.float32) for s in shapes}
    runners = {key: TrtRunner(record, name=f"tensorrt:{key}") for key, record in engines.items()}
    times = median_ms(runners, feeds, iterations)
    return {key: {b: round(ms, 4) for b, ms in by_batch.items()} for key, by_batch in times.items()}


def record_choice(bundle: Bundle, choice: EngineChoice) -> EngineChoice:
    """Write ``choice`` into the manifest's ``deploy.tensorrt``; a read-only bundle keeps its
    record (the choice is then only logged: pass the precision to the runtime)."""
    deploy = dict(bundle.manifest.get("deploy") or {})
    deploy[TARGET] = choice.to_dict()
    previous = bundle.manifest.get("deploy")
    bundle.manifest["deploy"] = deploy
    try:
        bundle.save_manifest()
        choice.recorded = True
    except OSError as exc:
        bundle.manifest["deploy"] = previous
        _LOG.warning(
            "bundle %s is read-only (%s): the TensorRT choice (%s) is not recorded; run with "
            "--precision %s",
            bundle.root,
            exc.strerror,
            choice.precision,
            "int8" if choice.precision == "int8" else "fp32",
        )
    _LOG.info("TensorRT deploys %s: %s", choice.precision, choice.why)
    return choice


def deployed_precision(bundle: Bundle, here: Environment) -> str | None:
    """The engine precision ``choose_engine`` recorded for this device (``here``), or None: no
    measured record, or one measured on another GPU / TensorRT version."""
    record = (bundle.manifest.get("deploy") or {}).get(TARGET)
    if not isinstance(record, dict) or not record.get("measured"):
        return None
    if record.get("device") != asdict(here):
        _LOG.info("the recorded TensorRT choice was measured on another device: not followed")
        return None
    precision = record.get("precision")
    return precision if precision in ARTIFACT else None


def _faster(times: Mapping[str, Mapping[str, float]], min_speedup: float) -> bool:
    return times["int8"]["1"] * min_speedup <= times["fp16"]["1"]


def _why(times: Mapping[str, Mapping[str, float]], min_speedup: float) -> str:
    parts = [
        f"{times['fp16'][b] / times['int8'][b]:.2f}x at batch {b} "
        f"({times['int8'][b]:.3f} vs {times['fp16'][b]:.3f} ms)"
        for b in times["int8"]
    ]
    verdict = (
        "int8-trt deployed"
        if _faster(times, min_speedup)
        else f"INT8 not {min_speedup:.2f}x faster at batch 1: the FP16 engine deployed"
    )
    return f"INT8 engine vs FP16 on this device: {', '.join(parts)}; {verdict}"


__all__ = ["MIN_SPEEDUP", "EngineChoice", "choose_engine", "deployed_precision", "time_engines"]
