"""Which artifact a target deploys, chosen by measurement: INT8 only where it is faster.

INT8 is not faster on every architecture with ONNX Runtime's CPU kernels (a Q/DQ pair around an
op that has no INT8 kernel costs more than the op; depthwise and large-kernel convolutions have
slow INT8 kernels). After verification the build times FP32 and INT8 side by side, interleaved,
at batch 1 and at the largest batch; where INT8 is slower at batch 1 it times every layer of
both models with ONNX Runtime's profiler, keeps the layers that are slower in INT8 in float
(the fewest first: 1, 2, 4, … of the worst), and deploys FP32 only when that does not make INT8
faster either. The choice and its reason go into the manifest under ``"deploy"``; the runtime
(`--backend auto`) and the profiler's ★ follow it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

FP32 = "fp32"
QUANTIZABLE = ("Conv", "MatMul", "Gemm", "ConvTranspose")
MIN_SPEEDUP = 1.10  # FP32 / INT8 at batch 1 that deploys INT8
# Activations ORT fuses into the convolution before them: a fused node is named by their output.
_FUSED_INTO_PRODUCER = ("Relu", "Clip", "LeakyRelu", "HardSigmoid", "Sigmoid", "Add", "Mul")
_TOKEN = re.compile(r"_token_\d+$")

# Quantizes the prepared model for one target with these nodes kept in float; returns its path.
Requantize = Callable[[Sequence[str], Path], Path]


@dataclass
class Deployment:
    """What one target deploys and why, with the latencies that decided it (ms, medians)."""

    target: str
    artifact: str
    why: str
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> batch -> ms
    float_nodes: list[str] = field(default_factory=list)  # kept float for speed
    measured: bool = True

    def to_dict(self) -> dict[str, Any]:
        """The manifest's ``deploy.<target>`` record."""
        return {
            "artifact": self.artifact,
            "why": self.why,
            "measured": self.measured,
            "latency_ms": self.latency_ms,
            "float_nodes_for_speed": self.float_nodes,
        }


def median_ms(
    models: Mapping[str, str | os.PathLike[str]],
    feeds: Mapping[str, np.ndarray],
    iterations: int = 30,
    threads: int = 1,
) -> dict[str, dict[str, float]]:
    """Median ms per call of every ONNX model on every feed (model -> feed name -> ms), with
    ONNX Runtime, interleaved round-robin in a fresh order each round (edgevision.profile's
    method). The one timing loop of the build: the deployment choice and the budget's price."""
    from edgevision.backends.ort import OrtRunner
    from edgevision.profile.models import median_ms as runner_medians

    runners = {n: OrtRunner(p, threads=threads, name=f"ort:{n}") for n, p in models.items()}
    return runner_medians(runners, feeds, iterations)


def time_models(
    models: Mapping[str, str | os.PathLike[str]],
    batches: Sequence[int],
    shape: Sequence[int],
    iterations: int = 30,
    threads: int = 1,
) -> dict[str, dict[str, float]]:
    """Median ms per call of every model at every batch size (random inputs), interleaved."""
    rng = np.random.default_rng(0)
    feeds = {str(b): rng.normal(size=(b, *shape[1:])).astype(np.float32) for b in batches}
    times = median_ms(models, feeds, iterations, threads)
    return {n: {b: round(ms, 4) for b, ms in by_batch.items()} for n, by_batch in times.items()}


def node_times(
    model: str | os.PathLike[str], shape: Sequence[int], runs: int = 20, threads: int = 1
) -> dict[str, float]:
    """Mean ms per run of each node of ``model``, from ONNX Runtime's profiler, by the node
    names of ``model`` itself (fused kernels are attributed to the node they started from)."""
    import onnx
    import onnxruntime as ort

    graph = onnx.load(str(model), load_external_data=False).graph
    names = {n.name for n in graph.node}
    producer = {o: n for n in graph.node for o in n.output}
    x = np.random.default_rng(0).normal(size=tuple(shape)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="ev-prof-") as tmp:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "p")
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x}
        for _ in range(runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    totals: dict[str, float] = {}
    for event in events:
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        node = _source_node(event["name"][: -len("_kernel_time")], names, producer)
        if node is not None:
            totals[node] = totals.get(node, 0.0) + event["dur"] / 1000.0 / runs
    return totals


def _source_node(kernel: str, names: set[str], producer: dict[str, Any]) -> str | None:
    """The model's node an ORT kernel came from: its own name (optionally ``_token_N``), or for
    a kernel named after a tensor (NCHWc convs), the convolution that produced the tensor."""
    base = _TOKEN.sub("", kernel)
    if base in names:
        return base
    tensor = base.removesuffix("_nchwc")
    node = producer.get(tensor)
    while node is not None and node.op_type in _FUSED_INTO_PRODUCER:
        node = producer.get(node.input[0])
    return node.name if node is not None else None


def slower_in_int8(
    fp32: Mapping[str, float], int8: Mapping[str, float], op_types: Mapping[str, str]
) -> list[tuple[str, float]]:
    """Quantizable nodes that take longer in INT8 than in FP32, the worst first (node, +ms)."""
    worse = [
        (node, round(ms - fp32.get(node, 0.0), 4))
        for node, ms in int8.items()
        if op_types.get(node) in QUANTIZABLE and ms > fp32.get(node, 0.0)
    ]
    return sorted(worse, key=lambda item: -item[1])


@dataclass
class DeployInputs:
    """What the choice for the ``cpu`` target needs from the build."""

    fp32: Path
    int8: Path
    shape: tuple[int, ...]  # the model input for batch 1
    requantize: Requantize
    work: Path
    max_batch: int = 8
    threads: int = 1
    iterations: int = 30
    already_float: tuple[str, ...] = ()  # kept float by --exclude-nodes or the accuracy budget
    # INT8 costs fidelity: it is deployed only when clearly faster, not within timing noise
    # (a shared machine's run-to-run spread is several percent).
    min_speedup: float = MIN_SPEEDUP


def choose_cpu(inputs: DeployInputs) -> tuple[Deployment, Path]:
    """Deploy INT8 on the CPU only where it is ``min_speedup`` times faster than FP32 at batch 1.

    Returns the decision and the INT8 model to ship (the given one, or one with the layers that
    are slower in INT8 kept in float when that made INT8 faster).
    """
    times, faster = _timed(inputs, inputs.int8)
    if faster:
        return Deployment("cpu", "int8-cpu", _why_int8(times, "int8-cpu"), times), inputs.int8
    rescued, slow = _rescue(inputs, times)
    if rescued is not None:
        return rescued
    fp32_ms, int8_ms = times[FP32]["1"], times["int8-cpu"]["1"]
    tried = (
        f"also with up to {slow} layer(s) that are slower in INT8 kept in float"
        if slow
        else "and no single layer is slower in INT8 (the Q/DQ conversions cost more than the "
        "INT8 layers gain)"
    )
    speed = (
        "slower than" if int8_ms >= fp32_ms else f"less than {inputs.min_speedup:.2f}x faster than"
    )
    why = (
        f"INT8 {speed} FP32 on this CPU ({int8_ms:.3f} vs {fp32_ms:.3f} ms at batch 1, "
        f"{int8_ms / fp32_ms:.2f}x), {tried}: FP32 deployed"
    )
    log.warning("%s", why)
    return Deployment("cpu", FP32, why, times), inputs.int8


def _rescue(inputs: DeployInputs, times: dict[str, dict[str, float]]) -> tuple[Any, int]:
    """The fewest layers slower in INT8 kept in float (1, 2, 4, … of the worst) that make INT8
    faster than FP32 at batch 1, or None; and how many layers are slower in INT8."""
    import onnx

    op_types = {n.name: n.op_type for n in onnx.load(str(inputs.fp32)).graph.node}
    profile_shape = inputs.shape
    slow = slower_in_int8(
        node_times(inputs.fp32, profile_shape, threads=inputs.threads),
        node_times(inputs.int8, profile_shape, threads=inputs.threads),
        op_types,
    )
    log.info("%d layer(s) are slower in INT8 than in FP32", len(slow))
    count = 1
    while slow and count <= 2 * len(slow):
        nodes = [n for n, _ in slow[:count]]
        model = inputs.requantize([*inputs.already_float, *nodes], inputs.work / f"speed{count}")
        tried, faster = _timed(inputs, model)
        if faster:
            why = _why_int8(tried, "int8-cpu") + f", with {len(nodes)} layer(s) slower in INT8 "
            why += "kept in float"
            return (Deployment("cpu", "int8-cpu", why, tried, nodes), model), len(slow)
        if count >= len(slow):
            break
        count = min(2 * count, len(slow))
    return None, len(slow)


def _timed(inputs: DeployInputs, int8: Path) -> tuple[dict[str, dict[str, float]], bool]:
    """FP32 vs ``int8`` timed; INT8 counts as faster only when a second, independent timing
    agrees (the search tries several candidates: one may look fast by chance). Returns the
    last timing and the verdict."""
    models = {FP32: inputs.fp32, "int8-cpu": int8}
    batches = sorted({1, inputs.max_batch})
    times = _time(inputs, models, batches)
    if not _faster(times, "int8-cpu", inputs.min_speedup):
        return times, False
    again = _time(inputs, models, batches)
    return again, _faster(again, "int8-cpu", inputs.min_speedup)


def _time(inputs: DeployInputs, models: dict[str, Path], batches: list[int]) -> Any:
    return time_models(models, batches, inputs.shape, inputs.iterations, inputs.threads)


def _faster(times: dict[str, dict[str, float]], name: str, min_speedup: float) -> bool:
    return times[name]["1"] * min_speedup <= times[FP32]["1"]


def _why_int8(times: dict[str, dict[str, float]], name: str) -> str:
    parts = []
    for b in times[name]:
        speedup = times[FP32][b] / times[name][b]
        parts.append(
            f"{speedup:.2f}x faster than FP32 at batch {b}"
            if speedup >= 1
            else f"slower than FP32 at batch {b} ({speedup:.2f}x; deployed for batch 1)"
        )
    return f"{name}: " + ", ".join(parts)


def not_measured(target: str, artifact: str, why: str) -> Deployment:
    """A target whose artifact cannot be timed here (TensorRT: timed on the device)."""
    return Deployment(target, artifact, why, measured=False)


__all__ = [
    "DeployInputs",
    "Deployment",
    "choose_cpu",
    "median_ms",
    "node_times",
    "not_measured",
    "slower_in_int8",
    "time_models",
]
