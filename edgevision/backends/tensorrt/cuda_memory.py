"""Device memory behind one small interface, with two implementations chosen at run time.

* ``cuda-python``: ``cuda.bindings.runtime`` (where NVIDIA's own TensorRT samples moved,
  ``samples/python/common_runtime.py``), or the older ``from cuda import cudart`` location.
* ``pycuda``: ``pycuda.driver`` (common on JetPack images).

The TensorRT runner needs only: device identity (name, compute capability, multiprocessor
count, memory size), pinned host buffers, device buffers, one stream, async copies both ways and
a stream sync. Nothing here is imported until `open_memory` is called.

`open_memory` takes the first module that imports *and* can use the device: cuda-python 13
links the CUDA 13 runtime statically, so on a CUDA 12 driver (JetPack 6) it imports fine but
``cudaGetDeviceCount`` answers ``cudaErrorInsufficientDriver``; pycuda (built against the
system CUDA) is then tried, and the memory object says which was used and why the first failed.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from edgevision.errors import BackendError

ENV_MEMORY = "EDGEVISION_CUDA_MEMORY"  # force "cuda-python" or "pycuda"
_LOG = logging.getLogger("edgevision.tensorrt")


@dataclass(frozen=True)
class DeviceInfo:
    """What an engine is tied to: the GPU's name, compute capability, multiprocessor count and
    memory size (every Orin module says "Orin" at SM 8.7; the last two tell them apart)."""

    name: str
    major: int
    minor: int
    multiprocessors: int = 0
    total_memory: int = 0  # bytes

    @property
    def compute_capability(self) -> str:
        """``"8.7"`` style."""
        return f"{self.major}.{self.minor}"

    @property
    def memory_gib(self) -> int:
        """Total memory in whole GiB (rounded, so a changed carve-out of a few MiB on a Jetson
        does not make its engines stale)."""
        return round(self.total_memory / 2**30)


class CudaMemory(Protocol):
    """The device-memory operations the TensorRT runner uses."""

    name: str
    unusable: str | None  # why this module cannot use the device (None: it can)
    skipped: tuple[str, ...]  # set by open_memory: the modules tried first, and why they failed

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
    def mem_info(self) -> tuple[int, int]: ...
    def versions(self) -> dict[str, str]: ...
    def close(self) -> None: ...


# -- cuda-python --------------------------------------------------------------------------
class CudaPythonMemory:
    """cuda-python runtime API (``cudart``): every call returns ``(err, *results)``."""

    name = "cuda-python"

    def __init__(self, cudart: Any, ordinal: int = 0) -> None:
        self.rt = cudart
        self.skipped: tuple[str, ...] = ()
        self._pinned: dict[int, int] = {}  # id(host array) -> host pointer
        self._native_handle = _native_handle_function()
        self.unusable = self._probe(ordinal)
        if self.unusable is None:
            self._call(cudart.cudaSetDevice(ordinal), "cudaSetDevice")

    def _probe(self, ordinal: int) -> str | None:
        err, count = self.rt.cudaGetDeviceCount()
        if err != self.rt.cudaError_t.cudaSuccess:
            insufficient = getattr(self.rt.cudaError_t, "cudaErrorInsufficientDriver", None)
            name = _text(self.rt.cudaGetErrorName(err)[1])
            return f"cudaGetDeviceCount returned {name}" + (
                self._driver_hint() if err == insufficient else ""
            )
        if int(count) <= ordinal:
            return f"it sees {int(count)} CUDA device(s), so no device {ordinal}"
        return None

    def _driver_hint(self) -> str:
        v = self.versions()
        if v.get("driver", "none") == "none":
            return " (no NVIDIA driver is loaded on this machine)"
        return (
            f" (cuda-python {v.get('cuda-python', '?')} brings the CUDA {v.get('runtime', '?')} "
            f"runtime, the driver supports CUDA {v.get('driver', '?')}: with a CUDA 12 driver "
            "(JetPack 6) use cuda-python<13)"
        )

    def versions(self) -> dict[str, str]:
        """cuda-python's own version and the CUDA runtime / driver versions it reports."""
        out = {"cuda-python": _package_version("cuda-bindings", "cuda-python")}
        for key, call in (("runtime", "cudaRuntimeGetVersion"), ("driver", "cudaDriverGetVersion")):
            fn = getattr(self.rt, call, None)
            result = fn() if fn is not None else None
            if result is not None and result[0] == self.rt.cudaError_t.cudaSuccess:
                out[key] = _cuda_version_text(int(result[1]))
        return out

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
        return DeviceInfo(
            _text(props.name), int(props.major), int(props.minor),
            int(props.multiProcessorCount), int(props.totalGlobalMem),
        )  # fmt: skip

    def mem_info(self) -> tuple[int, int]:
        """(free, total) bytes of device memory, as ``cudaMemGetInfo`` reports them."""
        free, total = self._call(self.rt.cudaMemGetInfo(), "cudaMemGetInfo")
        return int(free), int(total)

    def create_stream(self) -> Any:
        return self._call(self.rt.cudaStreamCreate(), "cudaStreamCreate")

    def stream_handle(self, stream: Any) -> int:
        # cuda.bindings.utils.get_cuda_native_handle where it exists (cuda-bindings >= 12.9):
        # int(cudaStream_t) is the deprecated way to get the address.
        return int(self._native_handle(stream))

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
_PRIMARY: dict[tuple[int, int], tuple[Any, Any]] = {}  # (id(driver), ordinal) -> (driver, ctx)
_PRIMARY_LOCK = threading.Lock()


def _primary_context(driver: Any, ordinal: int) -> Any:
    """The device's primary context, retained once per process and never released.

    As pycuda.autoprimaryctx does (NVIDIA's efficientnet sample imports that). Releasing it
    per runner would be wrong twice: the last release destroys the primary context under
    anything else using it, and a detached pycuda context makes the destructors of objects
    made in it (streams) skip their cuStreamDestroy without a word.
    """
    key = (id(driver), ordinal)
    with _PRIMARY_LOCK:
        entry = _PRIMARY.get(key)
        if entry is None or entry[0] is not driver:
            entry = (driver, driver.Device(ordinal).retain_primary_context())
            _PRIMARY[key] = entry
        return entry[1]


class PyCudaMemory:
    """pycuda's driver API, on the device's primary context (one per process)."""

    name = "pycuda"

    def __init__(self, driver: Any, ordinal: int = 0) -> None:
        self.drv = driver
        self.skipped: tuple[str, ...] = ()
        self._ctx = None
        self.unusable = self._probe(ordinal)
        if self.unusable is None:
            self._ctx = _primary_context(driver, ordinal)

    def _probe(self, ordinal: int) -> str | None:
        try:
            self.drv.init()
            count = int(self.drv.Device.count())
        except Exception as exc:  # pycuda.driver.Error and its subclasses: cuInit failed
            return f"cuInit / cuDeviceGetCount failed: {exc}"
        if count <= ordinal:
            return f"it sees {count} CUDA device(s), so no device {ordinal}"
        return None

    def versions(self) -> dict[str, str]:
        """pycuda's version and the CUDA version it was built for / the driver supports."""
        out = {"pycuda": _package_version("pycuda")}
        with contextlib.suppress(Exception):
            out["runtime"] = ".".join(str(v) for v in self.drv.get_version()[:2])
        with contextlib.suppress(Exception):
            out["driver"] = _cuda_version_text(int(self.drv.get_driver_version()))
        return out

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
        sms = dev.get_attribute(self.drv.device_attribute.MULTIPROCESSOR_COUNT)
        memory = int(dev.total_memory())
        return DeviceInfo(str(dev.name()), int(major), int(minor), int(sms), memory)

    def mem_info(self) -> tuple[int, int]:
        """(free, total) bytes of device memory (``cuMemGetInfo``, in the primary context)."""
        with self.in_context():
            free, total = self.drv.mem_get_info()
        return int(free), int(total)

    def create_stream(self) -> Any:
        return self.drv.Stream()

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def synchronize(self, stream: Any) -> None:
        stream.synchronize()

    def destroy_stream(self, stream: Any) -> None:
        """pycuda destroys a Stream when its last reference goes: the caller must drop it
        inside `in_context` (outside, pycuda skips cuStreamDestroy and says nothing)."""

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
        """Nothing to release: the primary context stays retained for the process."""
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


INSTALL_FIX = (
    "install cuda-python that matches the driver (CUDA 12 / JetPack 6: `pip install "
    "'cuda-python>=12.6,<13'`; CUDA 13 / JetPack 7: `pip install 'cuda-python>=13,<14'`) or "
    "pycuda (`pip install pycuda`, built against the CUDA on the device)"
)


def open_memory(prefer: str | None = None, ordinal: int = 0) -> CudaMemory:
    """The first device-memory module that imports and can use device ``ordinal``
    (``prefer`` or $EDGEVISION_CUDA_MEMORY picks one), or `BackendError` saying why none can.

    A module that imports but sees no device, or whose driver calls fail, is passed over for
    the next one; the one returned lists those in ``.skipped`` (and a warning says so).
    """
    prefer = prefer or os.environ.get(ENV_MEMORY) or None
    if prefer is not None and prefer not in MEMORY_BACKENDS:
        raise BackendError(
            f"unknown CUDA memory module {prefer!r}",
            f"use one of: {', '.join(MEMORY_BACKENDS)} (or unset ${ENV_MEMORY})",
        )
    names = [prefer] if prefer else list(MEMORY_BACKENDS)
    problems: list[str] = []  # in the order tried
    any_imported = False
    for name in names:
        try:
            memory = MEMORY_BACKENDS[name](ordinal)
        except ImportError as exc:
            problems.append(f"{name}: not installed ({exc})")
            continue
        except Exception as exc:  # a broken install raises its own types (OSError, ...)
            any_imported = True
            problems.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        any_imported = True
        if memory.unusable is None:
            memory.skipped = tuple(problems)
            _warn_once(name, problems)
            return memory
        problems.append(f"{name}: {memory.unusable}")
        with contextlib.suppress(Exception):
            memory.close()
    if not any_imported:
        raise BackendError(
            "no CUDA memory module is installed (" + "; ".join(problems) + ")", INSTALL_FIX
        )
    raise BackendError(
        "no CUDA memory module can use the GPU (" + "; ".join(problems) + ")",
        "check the driver with nvidia-smi (tegrastats on a Jetson); " + INSTALL_FIX,
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


_WARNED: set[str] = set()


def _warn_once(name: str, problems: list[str]) -> None:
    """Say once per process that a module before ``name`` imported but could not be used."""
    failed = [p for p in problems if ": not installed (" not in p]
    message = f"CUDA memory through {name}; passed over: " + "; ".join(failed)
    if failed and message not in _WARNED:
        _WARNED.add(message)
        _LOG.warning("%s", message)


def _native_handle_function() -> Callable[[Any], int]:
    try:
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:  # cuda-python < 12.9, or the old `cuda.cudart` layout
        return int
    return get_cuda_native_handle


def _package_version(*names: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    for name in names:
        with contextlib.suppress(PackageNotFoundError):
            return version(name)
    return "?"


def _cuda_version_text(value: int) -> str:
    """``12060`` (as cudaDriverGetVersion reports it) → ``"12.6"``."""
    return f"{value // 1000}.{value % 1000 // 10}" if value > 0 else "none"


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.split(b"\x00", 1)[0].decode("utf-8", "replace").strip()
    return str(value).strip()
