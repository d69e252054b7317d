"""Device memory behind one small interface, with two implementations chosen at run time.

* ``cuda-python``: ``cuda.bindings.runtime`` (where NVIDIA's own TensorRT samples moved,
  ``samples/python/common_runtime.py``), or the older ``from cuda import cudart`` location.
* ``pycuda``: ``pycuda.driver`` (common on JetPack images).

The TensorRT runner needs only: device identity (name, compute capability), pinned host
buffers, device buffers, one stream, async copies both ways and a stream sync. Nothing here is
imported until `open_memory` is called.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from edgevision.errors import BackendError

ENV_MEMORY = "EDGEVISION_CUDA_MEMORY"  # force "cuda-python" or "pycuda"


@dataclass(frozen=True)
class DeviceInfo:
    """What an engine is tied to: the GPU's name and compute capability."""

    name: str
    major: int
    minor: int

    @property
    def compute_capability(self) -> str:
        """``"8.7"`` style."""
        return f"{self.major}.{self.minor}"


class CudaMemory(Protocol):
    """The device-memory operations the TensorRT runner uses."""

    name: str

    def in_context(self) -> contextlib.AbstractContextManager[None]: ...
    def device_count(self) -> int: ...
    def device_info(self, ordinal: int = 0) -> DeviceInfo: ...
    def create_stream(self) -> Any: ...
    def stream_handle(self, stream: Any) -> int: ...
    def synchronize(self, stream: Any) -> None: ...
    def destroy_stream(self, stream: Any) -> None: ...
    def alloc_pinned(self, nbytes: int) -> np.ndarray: ...
    def free_pinned(self, host: np.ndarray) -> None: ...
    def alloc_device(self, nbytes: int) -> Any: ...
    def device_ptr(self, dev: Any) -> int: ...
    def free_device(self, dev: Any) -> None: ...
    def copy_htod_async(self, dev: Any, host: np.ndarray, stream: Any) -> None: ...
    def copy_dtoh_async(self, host: np.ndarray, dev: Any, stream: Any) -> None: ...
    def close(self) -> None: ...


# -- cuda-python --------------------------------------------------------------------------
class CudaPythonMemory:
    """cuda-python runtime API (``cudart``): every call returns ``(err, *results)``."""

    name = "cuda-python"

    def __init__(self, cudart: Any, ordinal: int = 0) -> None:
        self.rt = cudart
        self._pinned: dict[int, int] = {}  # id(host array) -> host pointer
        if self.device_count() > ordinal:
            self._call(cudart.cudaSetDevice(ordinal), "cudaSetDevice")

    def _call(self, result: Any, what: str) -> Any:
        # Same contract as cuda_call() in NVIDIA's common_runtime.py: first item is the error.
        err, rest = result[0], result[1:]
        if err != self.rt.cudaError_t.cudaSuccess:
            name = self.rt.cudaGetErrorName(err)[1]
            raise BackendError(f"CUDA call {what} failed: {_text(name)}")
        return rest[0] if len(rest) == 1 else (rest or None)

    @contextlib.contextmanager
    def in_context(self) -> Iterator[None]:
        # The runtime API binds the device's primary context on every thread by itself.
        yield

    def device_count(self) -> int:
        err, count = self.rt.cudaGetDeviceCount()
        return int(count) if err == self.rt.cudaError_t.cudaSuccess else 0

    def device_info(self, ordinal: int = 0) -> DeviceInfo:
        props = self._call(self.rt.cudaGetDeviceProperties(ordinal), "cudaGetDeviceProperties")
        return DeviceInfo(_text(props.name), int(props.major), int(props.minor))

    def create_stream(self) -> Any:
        return self._call(self.rt.cudaStreamCreate(), "cudaStreamCreate")

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def synchronize(self, stream: Any) -> None:
        self._call(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def destroy_stream(self, stream: Any) -> None:
        self._call(self.rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def alloc_pinned(self, nbytes: int) -> np.ndarray:
        ptr = int(self._call(self.rt.cudaMallocHost(nbytes), "cudaMallocHost"))
        # A NumPy view of the pinned block, as PinnedHostMem.array does in common_runtime.py.
        view = ctypes.cast(ptr, ctypes.POINTER(ctypes.c_uint8))
        host = np.ctypeslib.as_array(view, (nbytes,))
        self._pinned[id(host)] = ptr
        return host

    def free_pinned(self, host: np.ndarray) -> None:
        ptr = self._pinned.pop(id(host), None)
        if ptr is not None:
            self._call(self.rt.cudaFreeHost(ptr), "cudaFreeHost")

    def alloc_device(self, nbytes: int) -> Any:
        return self._call(self.rt.cudaMalloc(nbytes), "cudaMalloc")

    def device_ptr(self, dev: Any) -> int:
        return int(dev)

    def free_device(self, dev: Any) -> None:
        self._call(self.rt.cudaFree(dev), "cudaFree")

    def copy_htod_async(self, dev: Any, host: np.ndarray, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        result = self.rt.cudaMemcpyAsync(dev, host.ctypes.data, host.nbytes, kind, stream)
        self._call(result, "cudaMemcpyAsync(HostToDevice)")

    def copy_dtoh_async(self, host: np.ndarray, dev: Any, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        result = self.rt.cudaMemcpyAsync(host.ctypes.data, dev, host.nbytes, kind, stream)
        self._call(result, "cudaMemcpyAsync(DeviceToHost)")

    def close(self) -> None:
        """Nothing to release: cuda-python uses the device's primary context."""


# -- pycuda -------------------------------------------------------------------------------
class PyCudaMemory:
    """pycuda's driver API, on the device's retained primary context."""

    name = "pycuda"

    def __init__(self, driver: Any, ordinal: int = 0) -> None:
        self.drv = driver
        driver.init()
        self._ctx = None
        if driver.Device.count() > ordinal:
            # The primary context, as pycuda.autoprimaryctx makes it (NVIDIA's efficientnet
            # sample imports that); retained here and released by close().
            self._ctx = driver.Device(ordinal).retain_primary_context()

    @contextlib.contextmanager
    def in_context(self) -> Iterator[None]:
        # pycuda's driver API needs the context current on the calling thread; pushing it
        # around each use lets activation, inference and release run on different threads.
        if self._ctx is None:
            raise BackendError("pycuda sees no CUDA device", "check the driver: nvidia-smi")
        self._ctx.push()
        try:
            yield
        finally:
            self.drv.Context.pop()

    def device_count(self) -> int:
        return int(self.drv.Device.count())

    def device_info(self, ordinal: int = 0) -> DeviceInfo:
        dev = self.drv.Device(ordinal)
        major, minor = dev.compute_capability()
        return DeviceInfo(str(dev.name()), int(major), int(minor))

    def create_stream(self) -> Any:
        return self.drv.Stream()

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def synchronize(self, stream: Any) -> None:
        stream.synchronize()

    def destroy_stream(self, stream: Any) -> None:
        """pycuda frees a Stream when it is garbage collected."""

    def alloc_pinned(self, nbytes: int) -> np.ndarray:
        return self.drv.pagelocked_empty(nbytes, np.uint8)

    def free_pinned(self, host: np.ndarray) -> None:
        base = getattr(host, "base", None)
        if base is not None and hasattr(base, "free"):
            base.free()

    def alloc_device(self, nbytes: int) -> Any:
        return self.drv.mem_alloc(nbytes)

    def device_ptr(self, dev: Any) -> int:
        return int(dev)

    def free_device(self, dev: Any) -> None:
        dev.free()

    def copy_htod_async(self, dev: Any, host: np.ndarray, stream: Any) -> None:
        self.drv.memcpy_htod_async(dev, host, stream)

    def copy_dtoh_async(self, host: np.ndarray, dev: Any, stream: Any) -> None:
        self.drv.memcpy_dtoh_async(host, dev, stream)

    def close(self) -> None:
        if self._ctx is not None:
            self._ctx.detach()
            self._ctx = None


# -- choosing one at run time -------------------------------------------------------------
def _load_cudart() -> Any:
    try:
        return importlib.import_module("cuda.bindings.runtime")
    except ImportError:
        # cuda-python < 12.6 exposed the runtime API as `from cuda import cudart`.
        return importlib.import_module("cuda.cudart")


def _open_cuda_python(ordinal: int) -> CudaMemory:
    return CudaPythonMemory(_load_cudart(), ordinal)


def _open_pycuda(ordinal: int) -> CudaMemory:
    return PyCudaMemory(importlib.import_module("pycuda.driver"), ordinal)


# Tried in this order unless $EDGEVISION_CUDA_MEMORY names one.
MEMORY_BACKENDS: dict[str, Callable[[int], CudaMemory]] = {
    "cuda-python": _open_cuda_python,
    "pycuda": _open_pycuda,
}


def open_memory(prefer: str | None = None, ordinal: int = 0) -> CudaMemory:
    """The first device-memory implementation that imports (``prefer`` or $EDGEVISION_CUDA_MEMORY
    picks one), or `BackendError` saying what to install."""
    prefer = prefer or os.environ.get(ENV_MEMORY) or None
    if prefer is not None and prefer not in MEMORY_BACKENDS:
        raise BackendError(
            f"unknown CUDA memory module {prefer!r}",
            f"use one of: {', '.join(MEMORY_BACKENDS)} (or unset ${ENV_MEMORY})",
        )
    names = [prefer] if prefer else list(MEMORY_BACKENDS)
    problems = []
    for name in names:
        try:
            return MEMORY_BACKENDS[name](ordinal)
        except ImportError as exc:
            problems.append(f"{name}: {exc}")
    raise BackendError(
        "no CUDA memory module is installed (" + "; ".join(problems) + ")",
        "install cuda-python (`pip install cuda-python`) or pycuda (JetPack: `pip install pycuda`)",
    )


def cuda_device_present(prefer: str | None = None) -> bool:
    """Whether a CUDA memory module imports and sees at least one device; never raises."""
    try:
        memory = open_memory(prefer)
    except Exception:  # a broken driver install raises its own types
        return False
    try:
        return memory.device_count() > 0
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            memory.close()


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.split(b"\x00", 1)[0].decode("utf-8", "replace").strip()
    return str(value).strip()
