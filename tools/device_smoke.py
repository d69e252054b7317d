"""First contact with an NVIDIA device: every TensorRT and CUDA path, passed, failed or skipped.

Run it first on a new Jetson or GPU machine (a few minutes; at most 10). Each step prints one
row with its reason; the JSON report has the details. A step that cannot run here (no
TensorRT, no driver, no DLA, no ModelOpt, ...) is *skipped* with the reason, never silently
passed. Exit code 0 when nothing failed, 1 when a step that could run failed.

    python tools/device_smoke.py                      # writes device_smoke.json
    python tools/device_smoke.py --json out.json --only 'infer:*' --keep

Steps: versions and the device through each memory module; fp32 and int8 engines (batch
1/1/4), timing-cache reuse and a corrupted cache; the parser's errors for an unsupported op;
inference at batch 1 and 4 on the main thread, a worker thread and a real Pipeline with each
memory module, against ONNX Runtime; activate/deactivate cycles under pycuda with device memory
sampled; stale and corrupted engines refused; the engine inspector (INT8 kernels, DLA); INT8 vs
FP16 latency. Without TensorRT, on any CUDA machine: `edgevision train` with AMP, a one-process
NCCL DDP run, and ONNX Runtime's CUDA provider.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fnmatch
import json
import logging
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # edgevision from this checkout, and tests.helpers

MEMORY_MODULES = ("cuda-python", "pycuda")
PACKAGES = ("edgevision", "tensorrt", "tensorrt-cu12", "tensorrt-cu13", "cuda-python",
            "cuda-bindings", "pycuda", "onnxruntime", "onnxruntime-gpu", "onnx", "torch",
            "nvidia-modelopt", "numpy", "opencv-python-headless")  # fmt: skip
INPUT_SIZE = (96, 128)  # H, W: large enough that INT8 vs FP16 is a kernel comparison
SUBPROCESS_TIMEOUT_S = 240
EXPENSIVE = {"bundle", "onnx_tools"}  # not probed once a cheaper prerequisite is missing


class Skip(Exception):
    """The step cannot run on this machine; the message says why."""


class StepFailed(Exception):
    """The step ran and its check did not hold."""


@dataclass
class StepResult:
    """One row of the report."""

    name: str
    status: str  # pass | fail | skip
    reason: str
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)


def expect(condition: bool, message: str) -> None:
    """Fail the step with ``message`` unless ``condition`` holds."""
    if not condition:
        raise StepFailed(message)


@contextlib.contextmanager
def captured_warnings(logger: str) -> Iterator[list[str]]:
    """The warnings ``logger`` emits inside the block."""
    messages: list[str] = []

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = Handler(logging.WARNING)
    log = logging.getLogger(logger)
    log.addHandler(handler)
    try:
        yield messages
    finally:
        log.removeHandler(handler)


# -- what this machine has -----------------------------------------------------------------------
class Machine:
    """The prerequisites, each probed once: a value, or the reason it is missing."""

    def __init__(self, work: Path, cycles: int) -> None:
        self.work, self.cycles = work, cycles
        self._cache: dict[str, tuple[Any, str | None]] = {}
        self.results: dict[str, StepResult] = {}
        self.state: dict[str, Any] = {}  # what steps hand on (engine records, bundles)

    def _probe(self, key: str, fn: Callable[[], Any]) -> Any:
        if key not in self._cache:
            try:
                self._cache[key] = (fn(), None)
            except Skip as exc:
                self._cache[key] = (None, str(exc))
            except Exception as exc:  # a broken install: say what it raised
                self._cache[key] = (None, f"{key}: {type(exc).__name__}: {exc}")
        value, reason = self._cache[key]
        if reason is not None:
            raise Skip(reason)
        return value

    def need(self, *keys: str) -> list[Any]:
        """Every prerequisite named, or `Skip` listing each one that is missing (the test
        bundle, which takes seconds to make, only when everything before it is there)."""
        values, reasons = [], []
        for key in keys:
            if key in EXPENSIVE and reasons:
                continue
            try:
                values.append(getattr(self, key)())
            except Skip as exc:
                reasons.append(str(exc))
        if reasons:
            raise Skip("; ".join(dict.fromkeys(reasons)))
        return values

    def needs_step(self, name: str) -> Any:
        """What step ``name`` handed on, or `Skip` saying it did not pass."""
        result = self.results.get(name)
        if result is None or result.status != "pass":
            status = {None: "did not run", "skip": "was skipped", "fail": "failed"}
            raise Skip(f"needs {name}, which {status[result and result.status]}")
        return self.state[name]

    # the prerequisites
    def trt(self) -> Any:
        def load() -> Any:
            try:
                import tensorrt
            except ImportError as exc:
                raise Skip(f"tensorrt is not installed ({exc})") from None
            return tensorrt

        return self._probe("tensorrt", load)

    def gpu(self) -> Any:
        def load() -> Any:
            from edgevision.backends.tensorrt.cuda_memory import open_memory
            from edgevision.errors import BackendError

            try:
                return open_memory()
            except BackendError as exc:
                raise Skip(exc.message) from None

        return self._probe("gpu", load)

    def memory(self, name: str) -> Any:
        def load() -> Any:
            from edgevision.backends.tensorrt.cuda_memory import open_memory
            from edgevision.errors import BackendError

            try:
                return open_memory(name)
            except BackendError as exc:
                raise Skip(exc.message) from None

        return self._probe(f"memory:{name}", load)

    def onnx_tools(self) -> Any:
        def load() -> Any:
            try:
                import onnx  # noqa: F401
                import onnxruntime.quantization  # noqa: F401
            except ImportError as exc:
                raise Skip(f"the test bundle needs onnx ({exc}): pip install onnx") from None
            return True

        return self._probe("onnx", load)

    def cv2(self) -> Any:
        def load() -> Any:
            try:
                import cv2
            except ImportError as exc:
                raise Skip(f"OpenCV is not installed ({exc})") from None
            return cv2

        return self._probe("cv2", load)

    def torch_cuda(self) -> Any:
        def load() -> Any:
            try:
                import torch
            except ImportError as exc:
                raise Skip(f"torch is not installed ({exc})") from None
            if not torch.cuda.is_available():
                raise Skip(
                    f"torch {torch.__version__} sees no CUDA GPU (torch.cuda.is_available() is "
                    f"False; built for CUDA {torch.version.cuda})"
                )
            return torch

        return self._probe("torch-cuda", load)

    def ort_cuda(self) -> Any:
        def load() -> Any:
            import onnxruntime as ort

            providers = ort.get_available_providers()
            if "CUDAExecutionProvider" not in providers:
                raise Skip(
                    f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (it has "
                    f"{', '.join(providers)}): pip install onnxruntime-gpu"
                )
            return ort

        return self._probe("ort-cuda", load)

    def bundle(self) -> Path:
        def load() -> Path:
            self.need("onnx_tools")
            return make_smoke_bundle(self.work / "bundle-src")

        return self._probe("bundle", load)


# -- the test bundle -----------------------------------------------------------------------------
def smoke_spec() -> Any:
    from edgevision.spec import ModelSpec

    return ModelSpec(labels=("a", "b", "c", "d"), input_size=INPUT_SIZE)


def smoke_onnx(path: Path) -> Path:
    """Four 3x3 convolutions (32..128 channels, strides 2), pooling and a linear head."""
    from onnx import helper, numpy_helper

    from tests.helpers import save_classifier

    rng = np.random.default_rng(0)
    widths, inits, nodes, x = [3, 32, 64, 128, 128], [], [], "input"
    for i, (cin, cout) in enumerate(zip(widths, widths[1:], strict=False)):
        w = rng.normal(0, (2 / (9 * cin)) ** 0.5, (cout, cin, 3, 3)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"),
                  numpy_helper.from_array(np.zeros(cout, np.float32), f"b{i}")]  # fmt: skip
        stride = 1 if i == 3 else 2
        nodes += [helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1],
                                   strides=[stride, stride]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]  # fmt: skip
        x = f"r{i}"
    head = rng.normal(0, 0.1, (4, widths[-1])).astype(np.float32)
    inits += [numpy_helper.from_array(head, "fc_w"),
              numpy_helper.from_array(np.zeros(4, np.float32), "fc_b")]  # fmt: skip
    nodes += [helper.make_node("GlobalAveragePool", [x], ["g"]),
              helper.make_node("Flatten", ["g"], ["f"]),
              helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], transB=1)]  # fmt: skip
    return save_classifier(path, "smoke", nodes, inits, INPUT_SIZE, 4)


def frames(n: int, seed: int = 0) -> list[np.ndarray]:
    """Random BGR camera-like frames."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(n)]


def qdq_onnx(src: Path, dst: Path) -> Path:
    """Symmetric INT8 Q/DQ (the form TensorRT's explicit quantization reads), calibrated on
    preprocessed random frames."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from edgevision.preprocess import preprocess

    spec = smoke_spec()

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter({"input": preprocess(f, spec)} for f in frames(16, seed=1))

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    quantize_static(
        str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )  # fmt: skip
    return dst


def make_smoke_bundle(root: Path) -> Path:
    """fp32 + int8-trt artifacts of the smoke model."""
    from edgevision.bundle import write_bundle

    root.mkdir(parents=True, exist_ok=True)
    fp32 = smoke_onnx(root / "fp32.onnx")
    int8 = qdq_onnx(fp32, root / "int8.onnx")
    artifacts = {
        "fp32": {"file": "model.fp32.onnx", "precision": "fp32", "target": "any"},
        "int8-trt": {"file": "model.int8.trt.onnx", "precision": "int8", "target": "tensorrt"},
    }
    files = {"model.fp32.onnx": fp32, "model.int8.trt.onnx": int8}
    return write_bundle(root / "bundle", files, smoke_spec(), artifacts)


def unsupported_op_bundle(root: Path) -> Path:
    """The smoke model plus a node of an op no TensorRT has."""
    import onnx
    from onnx import helper

    from edgevision.bundle import write_bundle

    root.mkdir(parents=True, exist_ok=True)
    model = onnx.load(smoke_onnx(root / "m.onnx"))
    node = helper.make_node("EdgeVisionNoSuchOp", ["logits"], ["extra"], name="no_such_op_0",
                            domain="edgevision.smoke")  # fmt: skip
    model.graph.node.append(node)
    model.opset_import.append(helper.make_opsetid("edgevision.smoke", 1))
    onnx.save(model, root / "m.onnx")
    art = {"file": "model.int8.trt.onnx", "precision": "int8", "target": "tensorrt"}
    return write_bundle(root / "b", {"model.int8.trt.onnx": root / "m.onnx"}, smoke_spec(),
                        {"int8-trt": art})  # fmt: skip


def fresh_bundle(m: Machine, name: str) -> Path:
    """A copy of the smoke bundle, so that a step's engines do not meet another's."""
    dst = m.work / name
    if not dst.exists():
        shutil.copytree(m.bundle(), dst)
    return dst


# -- steps: versions and devices -----------------------------------------------------------------
def step_versions(m: Machine) -> dict[str, Any]:
    """Python, the OS and every library that matters, installed or not."""
    from edgevision.profile.machine import package_version

    details = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": {p: package_version(p) for p in PACKAGES},
    }
    with contextlib.suppress(Skip):
        details["tensorrt_module"] = str(m.trt().__version__)
    tegra = Path("/etc/nv_tegra_release")
    if tegra.is_file():
        details["nv_tegra_release"] = tegra.read_text(errors="replace").splitlines()[0]
    return details


def step_device(m: Machine, name: str) -> dict[str, Any]:
    """Device properties and versions through one memory module."""
    memory = m.memory(name)
    info = memory.device_info(0)
    free, total = memory.mem_info()
    details = {
        "versions": memory.versions(),
        "device": asdict(info) | {"compute_capability": info.compute_capability},
        "memory_free_mib": free >> 20,
        "memory_total_mib": total >> 20,
        "passed_over": list(memory.skipped),
    }
    expect(info.multiprocessors > 0, f"{name} reports {info.multiprocessors} multiprocessors")
    other = m.results.get(f"device:{MEMORY_MODULES[0]}")
    if other is not None and other.status == "pass" and name != MEMORY_MODULES[0]:
        first = other.details["device"]
        same = (first["name"], first["major"], first["minor"], first["multiprocessors"])
        expect(same == (info.name, info.major, info.minor, info.multiprocessors),
               f"{name} sees {info} but {MEMORY_MODULES[0]} saw {first}")  # fmt: skip
    return details


# -- steps: building -----------------------------------------------------------------------------
def build(m: Machine, precision: str, **options: Any) -> Any:
    """An engine of the smoke bundle at batch 1/1/4 (compared with ORT on 16 frames unless
    ``parity_images`` says otherwise)."""
    from edgevision.backends.tensorrt.build import build_engine

    options = {"parity_images": frames(16), **options}
    return build_engine(
        fresh_bundle(m, "bundle"), precision=precision, min_batch=1, opt_batch=1, max_batch=4,
        workspace_mb=512, timing_cache=m.work / "timing.cache", **options,
    )  # fmt: skip


def step_build(m: Machine, precision: str) -> dict[str, Any]:
    """An engine at batch 1/1/4, compared with FP32 ONNX Runtime on 16 frames."""
    m.need("trt", "gpu", "bundle")
    record = build(m, precision)
    m.state[f"build:{precision}"] = record
    parity = record.parity or {}
    floor = 1.0 if precision == "fp32" else 0.75
    expect(parity.get("top1_agreement", 0) >= floor,
           f"top-1 agreement with FP32 ORT {parity.get('top1_agreement')} < {floor}")  # fmt: skip
    return {"engine": record.file, "build_seconds": record.build_seconds, "parity": parity,
            "strongly_typed": record.strongly_typed, "size_bytes": record.size_bytes}  # fmt: skip


def step_timing_cache_reuse(m: Machine) -> dict[str, Any]:
    """A second build (engine elsewhere, same timing cache) loads the cache without a warning."""
    first = m.needs_step("build:int8")
    cache = m.work / "timing.cache"
    expect(cache.is_file(), f"the first build left no timing cache at {cache}")
    with captured_warnings("edgevision.backends.tensorrt.build") as warnings:
        again = build(m, "int8", engine_cache=m.work / "engines-again")
    expect(not any("timing cache" in w for w in warnings), f"timing cache refused: {warnings}")
    return {"first_build_s": first.build_seconds, "rebuild_s": again.build_seconds,
            "speedup": round(first.build_seconds / max(again.build_seconds, 1e-6), 2)}  # fmt: skip


def step_timing_cache_corrupt(m: Machine) -> dict[str, Any]:
    """A corrupted timing-cache file is replaced by a fresh cache; the build goes on."""
    from edgevision.backends.tensorrt.build import build_engine

    m.needs_step("build:int8")
    cache = m.work / "corrupt.cache"
    garbage = b"\xffnot a timing cache" * 64
    cache.write_bytes(garbage)
    with captured_warnings("edgevision.backends.tensorrt.build") as warnings:
        record = build_engine(
            fresh_bundle(m, "bundle"), max_batch=4, timing_cache=cache,
            engine_cache=m.work / "engines-corrupt", parity_images=[],
        )  # fmt: skip
    expect(record.path.is_file(), "no engine was written")
    expect(cache.read_bytes() != garbage, "the corrupted timing cache was not replaced")
    return {"warnings": warnings, "cache_bytes": cache.stat().st_size}


def step_parser_errors(m: Machine) -> dict[str, Any]:
    """An ONNX with an op no TensorRT has: the error quotes the parser, node by node."""
    from edgevision.backends.tensorrt.build import build_engine
    from edgevision.errors import BuildError

    m.need("trt", "gpu", "onnx_tools")
    bundle = unsupported_op_bundle(m.work / "unsupported")
    try:
        build_engine(bundle, max_batch=1, parity_images=[])
    except BuildError as exc:
        text = str(exc)
        expect("ONNX parser rejected" in text, f"not the parser's error: {text}")
        expect("EdgeVisionNoSuchOp" in text or "no_such_op_0" in text,
               f"the error does not name the node: {text}")  # fmt: skip
        return {"error": text.splitlines()}
    raise StepFailed("TensorRT built an engine from a model with an unknown op")


# -- steps: inference -------------------------------------------------------------------------
def reference(bundle: Path, onnx_file: str, x: np.ndarray) -> np.ndarray:
    from edgevision.backends.ort.runner import OrtRunner

    with OrtRunner(bundle / onnx_file, threads=1) as ort:
        return ort.infer(x)["logits"]


def compare(got: np.ndarray, ref: np.ndarray, precision: str) -> dict[str, float]:
    """Max abs error against ORT, relative to the logits' scale, and top-1 agreement."""
    expect(got.shape == ref.shape, f"shape {got.shape} vs ONNX Runtime {ref.shape}")
    expect(bool(np.isfinite(got).all()), "non-finite outputs")
    scale = max(1.0, float(np.abs(ref).max()))
    err = float(np.abs(got.astype(np.float64) - ref).max()) / scale
    agree = float(np.mean(got.argmax(1) == ref.argmax(1)))
    limit = 0.02 if precision == "fp32" else 0.25
    expect(err <= limit, f"{precision}: max error {err:.4f} of the logit scale > {limit}")
    return {"max_rel_error": round(err, 5), "top1_agreement": agree}


def batches() -> dict[int, np.ndarray]:
    rng = np.random.default_rng(4)
    return {n: rng.normal(size=(n, 3, *INPUT_SIZE)).astype(np.float32) for n in (1, 4)}


def runner_for(record: Any, memory: str) -> Any:
    from edgevision.backends.tensorrt.runner import TrtRunner

    return TrtRunner(record.path, record=record, memory=memory, name=f"smoke:{memory}")


def step_infer(m: Machine, memory: str, where: str) -> dict[str, Any]:
    """fp32 and int8 engines at batch 1 and 4, on ``where``, against ONNX Runtime."""
    m.need("trt", f"memory_{memory.replace('-', '_')}")
    details: dict[str, Any] = {}
    for precision, onnx_file in (("fp32", "model.fp32.onnx"), ("int8", "model.int8.trt.onnx")):
        record = m.needs_step(f"build:{precision}")
        if where == "pipeline":
            details[precision] = pipeline_check(m, record, memory)
            continue
        for n, x in batches().items():
            got = run_where(runner_for(record, memory), x, where)
            details[f"{precision}@{n}"] = compare(got, reference(m.bundle(), onnx_file, x),
                                                  precision)  # fmt: skip
    return details


def run_where(runner: Any, x: np.ndarray, where: str) -> np.ndarray:
    """Activate here, infer on the main thread or a worker, deactivate on the worker too."""
    import concurrent.futures

    runner.activate()
    try:
        if where == "main":
            return runner.infer(x)["logits"]
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            out = pool.submit(runner.infer, x).result()["logits"]
            pool.submit(runner.deactivate).result()
            return out
    finally:
        runner.deactivate()


def pipeline_check(m: Machine, record: Any, memory: str) -> dict[str, Any]:
    """A real Pipeline (its own threads) over 12 image files; labels vs FP32 ONNX Runtime."""
    from edgevision.bundle import Bundle
    from edgevision.preprocess import preprocess
    from edgevision.runtime import Pipeline

    (cv2,) = m.need("cv2")
    folder = m.work / "frames"
    if not folder.is_dir():
        folder.mkdir()
        for i, f in enumerate(frames(12, seed=9)):
            cv2.imwrite(str(folder / f"{i:03d}.png"), f)
    bundle = Bundle.open(m.bundle())
    runner = runner_for(record, memory)
    try:
        results = list(Pipeline(bundle, str(folder / "*.png"), runner=runner, topk=1,
                                pin_cpus=False))  # fmt: skip
    finally:
        runner.deactivate()
    paths = sorted(folder.glob("*.png"))
    expect(len(results) == len(paths), f"{len(results)} results for {len(paths)} frames")
    x = np.concatenate([preprocess(cv2.imread(str(p)), bundle.spec) for p in paths])
    ref = reference(m.bundle(), "model.fp32.onnx", x).argmax(1)
    labels = [bundle.spec.labels[i] for i in ref]
    agree = float(np.mean([r.label == labels[r.frame_index] for r in results]))
    expect(agree >= 0.75, f"pipeline labels agree with FP32 ONNX Runtime on {agree:.0%}")
    return {"frames": len(results), "label_agreement": agree}


def step_leak(m: Machine) -> dict[str, Any]:
    """Activate/deactivate under pycuda, device memory sampled before and after."""
    memory = m.memory("pycuda")
    m.need("trt")
    record = m.needs_step("build:int8")
    x = batches()[1]
    run_where(runner_for(record, "pycuda"), x, "main")  # first-use allocations out of the count
    before = memory.mem_info()[0]
    for _ in range(m.cycles):
        run_where(runner_for(record, "pycuda"), x, "main")
    after = memory.mem_info()[0]
    lost_mib = (before - after) / 2**20
    budget = max(16.0, 0.25 * m.cycles)
    expect(lost_mib <= budget, f"{lost_mib:.1f} MiB less free device memory after "
                               f"{m.cycles} cycles (budget {budget:.0f} MiB)")  # fmt: skip
    return {"cycles": m.cycles, "free_before_mib": before >> 20, "free_after_mib": after >> 20,
            "lost_mib": round(lost_mib, 2)}  # fmt: skip


# -- steps: refusing engines ---------------------------------------------------------------------
def step_stale_version(m: Machine) -> dict[str, Any]:
    """An engine recorded for another TensorRT version is refused (StaleEngineError)."""
    from edgevision.backends.tensorrt.select import select_engine
    from edgevision.backends.tensorrt.staleness import StaleEngineError
    from edgevision.bundle import Bundle

    record = m.needs_step("build:int8")
    bundle = Bundle.open(record.path.parent)
    bundle.manifest["engines"][record.file]["trt_version"] = "9.9.9"  # in memory only
    try:
        select_engine(bundle, "int8")
    except StaleEngineError as exc:
        expect("TensorRT version: built for 9.9.9" in str(exc), f"other reason: {exc}")
        return {"error": str(exc).splitlines()[:3]}
    raise StepFailed("an engine recorded for TensorRT 9.9.9 was accepted")


def step_corrupted_engine(m: Machine) -> dict[str, Any]:
    """A corrupted engine is refused: by its recorded SHA-256, and by TensorRT itself."""
    from edgevision.backends.tensorrt.runner import TrtRunner
    from edgevision.backends.tensorrt.staleness import StaleEngineError
    from edgevision.errors import BackendError

    record = m.needs_step("build:int8")
    bad = m.work / "corrupt" / record.file
    bad.parent.mkdir(exist_ok=True)
    blob = bytearray(record.path.read_bytes())
    blob[:64] = bytes(64)  # the header TensorRT checks first
    bad.write_bytes(bytes(blob))
    details: dict[str, Any] = {}
    try:
        TrtRunner(bad, record=dataclasses.replace(record, path=bad)).activate()
    except StaleEngineError as exc:
        details["sha256"] = str(exc).splitlines()[0]
    else:
        raise StepFailed("a corrupted engine passed its SHA-256 check")
    runner = TrtRunner(bad)  # no record: TensorRT's own deserializer must refuse it
    try:
        runner.activate()
    except BackendError as exc:
        details["tensorrt"] = str(exc).splitlines()[0]
        return details
    runner.deactivate()
    raise StepFailed("TensorRT deserialized an engine whose header was zeroed")


# -- steps: what TensorRT chose ------------------------------------------------------------------
def inspect(m: Machine, record: Any) -> list[dict[str, Any]]:
    """The engine inspector's layer list (JSON; detailed: the build sets DETAILED)."""
    from edgevision.backends.tensorrt.trt_api import trt_logger

    trt, memory = m.need("trt", "gpu")
    with memory.in_context():
        runtime = trt.Runtime(trt_logger(trt))
        engine = runtime.deserialize_cuda_engine(record.path.read_bytes())
        expect(engine is not None, f"cannot deserialize {record.file}")
        inspector = engine.create_engine_inspector()
        info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
        del inspector, engine, runtime
    layers = info.get("Layers", [])
    expect(all(isinstance(layer, dict) for layer in layers),
           "the inspector gave layer names only: the engine was not built DETAILED")  # fmt: skip
    return layers


def step_inspect_int8(m: Machine) -> dict[str, Any]:
    """INT8 kernels were chosen for the quantized convolutions."""
    layers = inspect(m, m.needs_step("build:int8"))
    int8 = [layer.get("Name", "?") for layer in layers if "int8" in json.dumps(layer).lower()]
    expect(bool(int8), f"no INT8 layer among {len(layers)}")
    return {"layers": len(layers), "int8_layers": len(int8), "examples": int8[:5]}


def step_inspect_dla(m: Machine) -> dict[str, Any]:
    """On a device with DLA: an INT8 engine on DLA core 0 has layers placed on the DLA."""
    from edgevision.backends.tensorrt.build import build_engine
    from edgevision.backends.tensorrt.trt_api import trt_logger

    (trt, _gpu) = m.need("trt", "gpu")
    cores = int(trt.Builder(trt_logger(trt)).num_DLA_cores)
    if cores == 0:
        raise Skip(f"this device has no DLA core (TensorRT {trt.__version__})")
    record = build_engine(fresh_bundle(m, "bundle-dla"), dla_core=0, max_batch=1,
                          parity_images=[])  # fmt: skip
    layers = inspect(m, record)
    dla = [layer.get("Name", "?") for layer in layers if "dla" in json.dumps(layer).lower()]
    expect(bool(dla), f"no layer of the dla0 engine runs on the DLA ({len(layers)} layers)")
    return {"dla_cores": cores, "layers": len(layers), "dla_layers": len(dla)}


def step_latency(m: Machine) -> dict[str, Any]:
    """INT8 vs FP16 engine latency at batch 1, interleaved; INT8 must not be slower."""
    from edgevision.errors import BuildError

    int8 = m.needs_step("build:int8")
    try:
        fp16 = build(m, "fp16", parity_images=[])
    except BuildError as exc:
        if "ModelOpt" in str(exc):
            raise Skip(f"an FP16 engine here needs ModelOpt AutoCast: {exc.fix}") from None
        raise
    x = batches()[1]
    runners = {
        "int8": runner_for(int8, "cuda-python" if _has(m, "cuda-python") else "pycuda"),
        "fp16": runner_for(fp16, "cuda-python" if _has(m, "cuda-python") else "pycuda"),
    }
    times: dict[str, list[float]] = {k: [] for k in runners}
    with contextlib.ExitStack() as stack:
        for r in runners.values():
            stack.enter_context(r)
        for i in range(220):
            for key, r in runners.items():
                r.infer(x)
                if i >= 20:
                    times[key].append(r.last_inference_time() * 1e3)
    p50 = {k: float(np.percentile(v, 50)) for k, v in times.items()}
    ratio = p50["int8"] / p50["fp16"]
    expect(ratio <= 1.05, f"INT8 p50 {p50['int8']:.3f} ms is slower than FP16 {p50['fp16']:.3f}")
    return {"p50_ms": {k: round(v, 4) for k, v in p50.items()}, "int8_over_fp16": round(ratio, 3)}


def _has(m: Machine, memory: str) -> bool:
    try:
        m.memory(memory)
    except Skip:
        return False
    return True


# -- steps: CUDA without TensorRT ----------------------------------------------------------------
def run_python(args: list[str], cwd: Path, what: str) -> str:
    """Run ``python args`` with this interpreter; fail the step with its output's tail."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    try:
        done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=SUBPROCESS_TIMEOUT_S)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise StepFailed(f"{what} did not finish in {SUBPROCESS_TIMEOUT_S} s") from None
    tail = (done.stdout + done.stderr).strip().splitlines()[-8:]
    expect(done.returncode == 0, f"{what} exited {done.returncode}: " + " | ".join(tail))
    return "\n".join(tail)


def step_train_amp(m: Machine) -> dict[str, Any]:
    """`edgevision train` with AMP for one epoch on the GPU (tiny synthetic data)."""
    m.need("torch_cuda")
    from edgevision.data.synth import generate_dataset

    data = m.work / "signs"
    generate_dataset(data, per_class=6, size=(80, 60))
    out = run_python(["-m", "edgevision", "train", str(data), "--out", str(m.work / "run"),
                      "--epochs", "1", "--device", "cuda", "--amp", "--weights", "none",
                      "--size", "64", "--batch-size", "16", "--workers", "0", "--quiet"],
                     m.work, "edgevision train")  # fmt: skip
    return {"output": out.splitlines()[-3:]}


DDP_SCRIPT = """
import sys, torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
dist.init_process_group("nccl", init_method="tcp://127.0.0.1:" + sys.argv[1], rank=0, world_size=1)
torch.cuda.set_device(0)
model = DDP(torch.nn.Linear(16, 4).cuda(), device_ids=[0])
loss = model(torch.randn(8, 16, device="cuda")).square().mean()
loss.backward()
t = torch.ones(4, device="cuda")
dist.all_reduce(t)
assert t.sum().item() == 4.0
print("nccl", ".".join(map(str, torch.cuda.nccl.version())), "ok")
dist.destroy_process_group()
"""


def step_ddp_nccl(m: Machine) -> dict[str, Any]:
    """A one-process DDP step over NCCL (init, backward's all-reduce, an explicit all_reduce)."""
    (torch,) = m.need("torch_cuda")
    if not torch.distributed.is_nccl_available():
        raise Skip(f"torch {torch.__version__} was built without NCCL")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = run_python(["-c", DDP_SCRIPT, str(port)], m.work, "the NCCL DDP run")
    return {"output": out.splitlines()[-1:]}


def step_ort_cuda(m: Machine) -> dict[str, Any]:
    """ONNX Runtime's CUDA provider runs the bundle's FP32 model, like the CPU one."""
    (ort,) = m.need("ort_cuda")
    bundle = m.bundle()
    x = batches()[4]
    session = ort.InferenceSession(
        str(bundle / "model.fp32.onnx"), providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    expect(
        session.get_providers()[0] == "CUDAExecutionProvider",
        f"the session fell back to {session.get_providers()} (CUDA/cuDNN libraries missing?)",
    )
    got = session.run(None, {"input": x})[0]
    return compare(got, reference(bundle, "model.fp32.onnx", x), "fp32")


# -- the run ---------------------------------------------------------------------------------
def steps() -> list[tuple[str, Callable[[Machine], dict[str, Any]]]]:
    """Every step, in the order they run (later ones use what earlier ones built)."""
    out: list[tuple[str, Callable[[Machine], dict[str, Any]]]] = [("versions", step_versions)]
    out += [(f"device:{n}", lambda m, n=n: step_device(m, n)) for n in MEMORY_MODULES]
    out += [(f"build:{p}", lambda m, p=p: step_build(m, p)) for p in ("fp32", "int8")]
    out += [("timing-cache:reuse", step_timing_cache_reuse),
            ("timing-cache:corrupt", step_timing_cache_corrupt),
            ("parser:unsupported-op", step_parser_errors)]  # fmt: skip
    out += [(f"infer:{mem}:{where}", lambda m, mem=mem, w=where: step_infer(m, mem, w))
            for mem in MEMORY_MODULES for where in ("main", "thread", "pipeline")]  # fmt: skip
    out += [("leak:pycuda-cycles", step_leak),
            ("stale:other-tensorrt", step_stale_version),
            ("stale:corrupted-engine", step_corrupted_engine),
            ("inspect:int8-kernels", step_inspect_int8),
            ("inspect:dla", step_inspect_dla),
            ("latency:int8-vs-fp16", step_latency),
            ("cuda:train-amp", step_train_amp),
            ("cuda:ddp-nccl", step_ddp_nccl),
            ("cuda:ort-cuda-provider", step_ort_cuda)]  # fmt: skip
    return out


def run_step(m: Machine, name: str, fn: Callable[[Machine], dict[str, Any]]) -> StepResult:
    start = time.perf_counter()
    try:
        details = fn(m) or {}
        status, reason = "pass", ""
    except Skip as exc:
        details, status, reason = {}, "skip", str(exc)
    except StepFailed as exc:
        details, status, reason = {}, "fail", str(exc)
    except Exception as exc:  # the step could run and something broke: that is a finding
        details = {"traceback": traceback.format_exc().splitlines()[-12:]}
        status, reason = "fail", f"{type(exc).__name__}: {exc}".splitlines()[0]
    result = StepResult(name, status, reason, round(time.perf_counter() - start, 3), details)
    m.results[name] = result
    return result


# The memory prerequisites by attribute name (Machine.need takes method names).
for _name in MEMORY_MODULES:
    setattr(Machine, f"memory_{_name.replace('-', '_')}",
            lambda self, n=_name: self.memory(n))  # fmt: skip


def run_all(work: Path, only: list[str] | None, cycles: int) -> list[StepResult]:
    """Run the steps (those matching ``only``, a list of globs, when given)."""
    m = Machine(work, cycles)
    results = []
    for name, fn in steps():
        if only and not any(fnmatch.fnmatch(name, pattern) for pattern in only):
            continue
        results.append(run_step(m, name, fn))
    return results


def report(results: list[StepResult], seconds: float) -> dict[str, Any]:
    counts = {s: sum(r.status == s for r in results) for s in ("pass", "fail", "skip")}
    return {
        "tool": "device_smoke",
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(seconds, 2),
        "counts": counts,
        "steps": [asdict(r) for r in results],
    }


def print_table(results: list[StepResult], seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    colour = {"pass": "green", "fail": "red", "skip": "yellow"}
    table = Table(title=f"device smoke test ({seconds:.0f} s)")
    for column in ("step", "result", "s", "reason"):
        table.add_column(column, overflow="fold")
    for r in results:
        table.add_row(r.name, f"[{colour[r.status]}]{r.status}[/]", f"{r.seconds:.1f}", r.reason)
    Console(width=max(120, shutil.get_terminal_size().columns)).print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=Path("device_smoke.json"),
                        help="write the report here (default: device_smoke.json)")  # fmt: skip
    parser.add_argument(
        "--only",
        action="append",
        default=None,
        metavar="GLOB",
        help="run only the steps matching GLOB (repeatable), e.g. 'infer:*'",
    )
    parser.add_argument("--cycles", type=int, default=50, help="activate/deactivate cycles")
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: a temp)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from edgevision.fileio import atomic_write_json

    work = args.work or Path(tempfile.mkdtemp(prefix="edgevision-smoke-"))
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        results = run_all(work, args.only, args.cycles)
    finally:
        if args.work is None and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - start
    atomic_write_json(args.json, report(results, seconds))
    print_table(results, seconds)
    print(f"report: {args.json}" + (f"; work folder: {work}" if args.keep else ""))
    return 1 if any(r.status == "fail" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
