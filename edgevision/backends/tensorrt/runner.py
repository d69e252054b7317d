"""TensorRT runner: the same Runner interface as ONNX Runtime, on a prebuilt engine.

Tensors are bound by name (TensorRT 10's I/O tensor API: ``num_io_tensors``,
``get_tensor_name``, ``get_tensor_mode``, ``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``). Buffers are allocated once for the engine's largest batch: pinned host
memory and device memory from `cuda_memory`, one CUDA stream, async copies both ways, one sync
per inference. `last_inference_time()` covers copy in, execute, copy out and the sync.

Not yet run on hardware; tested against a recording fake of tensorrt and of the two CUDA
memory modules.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevision.backends.base import Runner, TensorMeta
from edgevision.backends.tensorrt.cuda_memory import CudaMemory, cuda_device_present, open_memory
from edgevision.backends.tensorrt.staleness import EngineRecord, StaleEngineError, file_problem
from edgevision.backends.tensorrt.trt_api import import_tensorrt, trt_logger
from edgevision.errors import BackendError

if TYPE_CHECKING:
    from edgevision.bundle import Bundle

# An engine file, or its record (checked before the file is loaded).
EngineFile = str | os.PathLike[str] | EngineRecord
# That, or a callable returning it, called at activation (Polygraphy's runners take "a session
# or a callable returning one": the runner needs nothing of how the engine was found or built).
EngineSource = EngineFile | Callable[[], EngineFile]


@dataclass
class _Binding:
    """One I/O tensor: its buffers sized for the largest shape the engine accepts."""

    name: str
    is_input: bool
    dtype: np.dtype
    shape: tuple[int, ...]  # -1 where dynamic
    min_shape: tuple[int, ...]
    max_shape: tuple[int, ...]
    host: np.ndarray  # pinned, uint8, nbytes of max_shape
    device: Any


class TrtRunner(Runner):
    """Runs a serialized TensorRT engine file.

    ``engine`` is the engine file, its `EngineRecord` (from `select_engine` / `build_engine`),
    or a callable returning either, called at each activation. A record (``engine``, or
    ``record`` beside a path) lets activation check the engine's SHA-256 first. ``memory``
    forces ``"cuda-python"`` or ``"pycuda"`` (default: the first that imports, or
    ``$EDGEVISION_CUDA_MEMORY``).
    """

    def __init__(
        self,
        engine: EngineSource,
        record: EngineRecord | None = None,
        memory: str | None = None,
        name: str | None = None,
    ) -> None:
        self._source = engine
        self._given_record = record
        self.engine_path: Path | None = None
        self.record = record
        if not callable(engine):
            self._take(engine)
        label = os.path.basename(self.engine_path) if self.engine_path else "engine"
        super().__init__(name or f"tensorrt:{label}")
        self.memory_name = memory
        self._reset()

    def _take(self, engine: EngineFile) -> None:
        if isinstance(engine, EngineRecord):
            self.engine_path, self.record = engine.path, engine
        else:
            self.engine_path, self.record = Path(engine), self._given_record

    def _reset(self) -> None:
        self._trt: Any = None
        self._memory: CudaMemory | None = None
        self._runtime: Any = None
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = None
        self._bindings: list[_Binding] = []

    @classmethod
    def from_bundle(
        cls,
        bundle: Bundle,
        artifact: str | None = None,
        engine_cache: str | os.PathLike[str] | None = None,
        rebuild_if_stale: bool = False,
        precision: str | None = None,
        memory: str | None = None,
        **options: Any,
    ) -> TrtRunner:
        """A runner for the bundle's engine that fits this machine (see `select_engine`).

        ``precision`` None runs the engine `edgevision engine` deployed on this device (its
        measured choice), else INT8. The engine is chosen now, so that a missing or stale one
        is an error here, not at activation."""
        # The one reference up to the chooser, imported only when called: the runner module
        # itself needs nothing of how engines are chosen or built.
        from edgevision.backends.tensorrt.select import select_engine

        record = select_engine(bundle, precision, artifact, engine_cache, rebuild_if_stale)
        return cls(record, memory=memory, name=f"tensorrt:{record.precision}")

    @classmethod
    def is_available(cls) -> bool:
        """True only when tensorrt imports and a CUDA device is present."""
        try:
            import tensorrt  # noqa: F401
        except Exception:  # a broken install raises more than ImportError
            return False
        return cuda_device_present()

    # -- Runner ---------------------------------------------------------------------------
    def activate_impl(self) -> None:
        trt = import_tensorrt()
        if callable(self._source):
            self._take(self._source())
        if self.record is not None and (problem := file_problem(self.record)) is not None:
            raise StaleEngineError(problem, "rebuild: edgevision engine BUNDLE")
        if not self.engine_path.is_file():
            raise BackendError(f"TensorRT engine {self.engine_path} does not exist")
        memory = open_memory(self.memory_name)
        self._trt, self._memory = trt, memory
        try:
            with memory.in_context():
                self._load(trt, memory)
        except BaseException:
            self.deactivate_impl()
            raise

    def _load(self, trt: Any, memory: CudaMemory) -> None:
        logger = trt_logger(trt)
        logger.captured.messages.clear()
        # Kept until the engine is released: the runtime must outlive what it deserialized.
        self._runtime = trt.Runtime(logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self._engine is None:
            detail = "; ".join(logger.captured.errors()) or "no error logged"
            raise BackendError(
                f"TensorRT {trt.__version__} cannot load engine {self.engine_path}: {detail}",
                "engines only load with the TensorRT version and GPU they were built for; "
                "rebuild it here with `edgevision engine BUNDLE`",
            )
        self._context = self._engine.create_execution_context()
        self._stream = memory.create_stream()
        self._allocate(trt, memory)

    def _allocate(self, trt: Any, memory: CudaMemory) -> None:
        engine, context = self._engine, self._context
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        ranges = {n: _profile_range(engine, n) for n in inputs}
        # Output sizes follow from the inputs: size them at the largest input shapes.
        for n in inputs:
            self._set_shape(n, ranges[n][1])
        for n in names:
            dtype = _numpy_dtype(trt, engine, n)
            shape = tuple(int(d) for d in engine.get_tensor_shape(n))
            low, high = ranges.get(n) or (None, tuple(int(d) for d in context.get_tensor_shape(n)))
            if any(d < 0 for d in high):
                raise BackendError(
                    f"output {n!r} has a data-dependent shape {list(high)}; this runner sizes "
                    "outputs from the input shapes (classification heads)"
                )
            nbytes = int(np.prod(high)) * dtype.itemsize
            host = memory.alloc_pinned(nbytes)
            try:
                dev = memory.alloc_device(nbytes)
            except BaseException:
                memory.free_pinned(host)
                raise
            # Kept on self at once, so that a failure further on still frees them.
            binding = _Binding(n, n in ranges, dtype, shape, low or high, high, host, dev)
            self._bindings.append(binding)
            if not context.set_tensor_address(n, memory.device_ptr(dev)):
                raise BackendError(f"TensorRT refused the device address for tensor {n!r}")

    def input_metadata_impl(self) -> list[TensorMeta]:
        return [
            TensorMeta(b.name, b.dtype, tuple(None if d < 0 else d for d in b.shape))
            for b in self._bindings
            if b.is_input
        ]

    def output_names(self) -> list[str]:
        """Names of the engine's outputs, in order."""
        self._require_active()
        return [b.name for b in self._bindings if not b.is_input]

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        memory, stream = self._memory, self._stream
        with memory.in_context():
            for b in self._bindings:
                if b.is_input:
                    self._copy_in(b, np.ascontiguousarray(feed[b.name]))
            handle = memory.stream_handle(stream)
            if not self._context.execute_async_v3(stream_handle=handle):
                detail = "; ".join(self._logger_errors()) or "no error logged"
                raise BackendError(f"TensorRT execution failed on {self.engine_path}: {detail}")
            outputs = [self._copy_out(b) for b in self._bindings if not b.is_input]
            memory.synchronize(stream)
        return {b.name: view.view(b.dtype).reshape(shape).copy() for b, view, shape in outputs}

    def _copy_in(self, b: _Binding, array: np.ndarray) -> None:
        shape = tuple(array.shape)
        if any(s < lo or s > hi for s, lo, hi in zip(shape, b.min_shape, b.max_shape, strict=True)):
            raise BackendError(
                f"input {b.name!r} shape {list(shape)} is outside the engine's profile "
                f"{list(b.min_shape)}..{list(b.max_shape)}",
                "feed a batch within the engine's range, or rebuild it with a larger "
                "max_batch (edgevision engine BUNDLE --max-batch N)",
            )
        self._set_shape(b.name, shape)
        view = b.host[: array.nbytes]
        view[:] = array.reshape(-1).view(np.uint8)
        self._memory.copy_htod_async(b.device, view, self._stream)

    def _copy_out(self, b: _Binding) -> tuple[_Binding, np.ndarray, tuple[int, ...]]:
        shape = tuple(int(d) for d in self._context.get_tensor_shape(b.name))
        view = b.host[: int(np.prod(shape)) * b.dtype.itemsize]
        self._memory.copy_dtoh_async(view, b.device, self._stream)
        return b, view, shape

    def _set_shape(self, name: str, shape: tuple[int, ...]) -> None:
        if not self._context.set_input_shape(name, shape):
            raise BackendError(f"TensorRT refused shape {list(shape)} for input {name!r}")

    def _logger_errors(self) -> list[str]:
        return trt_logger(self._trt).captured.errors() if self._trt is not None else []

    def deactivate_impl(self) -> None:
        memory = self._memory
        if memory is not None:
            # Everything made in the CUDA context is released while it is current: pycuda
            # destroys a Stream (and TensorRT frees an engine's device memory) when the last
            # reference goes, and outside a live context that silently leaks.
            with memory.in_context():
                self._release(memory)
            memory.close()
        self._reset()

    def _release(self, memory: CudaMemory) -> None:
        for b in self._bindings:
            memory.free_device(b.device)
            memory.free_pinned(b.host)
        self._bindings = []
        if self._stream is not None:
            memory.destroy_stream(self._stream)
        # In reverse order of creation: stream, context, engine, runtime.
        self._stream = None
        self._context = None
        self._engine = None
        self._runtime = None


def _numpy_dtype(trt: Any, engine: Any, name: str) -> np.dtype:
    """The NumPy type of an I/O tensor; BF16, FP8, INT4, FP4 have none (`trt.nptype` raises
    TypeError for them), so such an engine is refused with what to change."""
    trt_type = engine.get_tensor_dtype(name)
    try:
        return np.dtype(trt.nptype(trt_type))
    except TypeError:
        kind = getattr(trt_type, "name", str(trt_type))
        raise BackendError(
            f"engine tensor {name!r} is {kind}, which has no NumPy type, so this runner cannot "
            "feed or read it",
            "export the model with float32 (or float16) inputs and outputs, casting to "
            f"{kind} inside the graph, and rebuild the engine",
        ) from None


def _profile_range(engine: Any, name: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(min, max) shape of an input under optimisation profile 0; its own shape if static."""
    shape = tuple(int(d) for d in engine.get_tensor_shape(name))
    if all(d >= 0 for d in shape):
        return shape, shape
    low, _opt, high = engine.get_tensor_profile_shape(name, 0)
    return tuple(int(d) for d in low), tuple(int(d) for d in high)
