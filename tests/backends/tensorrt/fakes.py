"""Recording fakes of ``tensorrt`` (10.x and 11.x), cuda-python's runtime API and pycuda.

They follow the documented Python APIs and are strict about them: unknown attributes,
removed flags (``BuilderFlag.INT8`` on 11.x), precision flags on a strongly typed network,
wrong argument names or types, copies from non-pinned memory, unknown streams and a missing
pycuda context all fail loudly, so a test passes only if the code under test calls the API the
way NVIDIA documents it. Where the real library fails *silently*, the fake records it instead:
a pycuda Stream dropped outside a live context is a leak (``gpu.leaks``), as in pycuda, whose
destructor then skips cuStreamDestroy without a word; ``int(cudaStream_t)`` (deprecated for
``get_cuda_native_handle``) is logged in ``gpu.calls``.

Memory is real: device and pinned buffers are ctypes blocks, copies are ``memmove`` queued on
a stream and run at synchronize, and the fake engine's "kernel" reads its input from device
memory and writes its outputs there (by default it runs the embedded ONNX with ONNX Runtime).
"""

from __future__ import annotations

import base64
import ctypes
import enum
import json
import types
from collections.abc import Callable
from typing import Any

import numpy as np

SUPPORTED_OPS = {
    "Conv", "Relu", "GlobalAveragePool", "Flatten", "Gemm", "QuantizeLinear",
    "DequantizeLinear", "Add", "MatMul", "Reshape", "Softmax",
}  # fmt: skip


# -- one fake GPU shared by the memory modules and the engine ---------------------------------
class FakeGPU:
    """Device + pinned allocations, streams with queued work, a call log."""

    def __init__(self, name: str = "Orin", cc: tuple[int, int] = (8, 7), count: int = 1):
        self.name, self.cc, self.count = name, cc, count
        self.multiprocessors = 16  # AGX Orin 64 GB; an Orin Nano 8 GB has 8
        self.total_memory = 61 * 2**30 + 300 * 2**20
        self.cuda_python_error: str | None = None  # e.g. "cudaErrorInsufficientDriver"
        self.pycuda_init_error: str | None = None
        self.driver_version = 12060  # as cudaDriverGetVersion reports CUDA 12.6
        self.primary_retained = 0  # pycuda primary-context retains not released
        self.leaks: list[tuple[Any, ...]] = []  # what was dropped outside a live context
        self.blocks: dict[int, tuple[Any, int, str]] = {}  # address -> (buffer, size, kind)
        self.streams: dict[int, list[Callable[[], None]]] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.ctx_depth = 0  # pycuda context stack depth
        self.current: list[Any] = []  # the pycuda context stack
        self.kernel: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None
        self.fail_build = False
        self.dla_cores = 0
        self._next_stream = 0x5000

    # memory
    def alloc(self, nbytes: int, kind: str) -> int:
        # A ctypes block with free(), like pycuda's HostAllocation (an array's .base).
        gpu = self
        block_type = type(
            "HostAllocation",
            (ctypes.c_uint8 * max(nbytes, 1),),
            {"free": lambda blk: gpu.free(ctypes.addressof(blk), kind)},
        )
        buf = block_type()
        addr = ctypes.addressof(buf)
        self.blocks[addr] = (buf, nbytes, kind)
        self.calls.append(("alloc", kind, nbytes))
        return addr

    def free(self, addr: int, kind: str) -> None:
        block = self.blocks.pop(int(addr), None)
        if block is None or block[2] != kind:
            raise AssertionError(f"free of unknown {kind} block {addr:#x}")
        self.calls.append(("free", kind, block[1]))

    def region(self, addr: int, nbytes: int, kind: str) -> None:
        """Assert [addr, addr+nbytes) lies inside one block of ``kind``."""
        for start, (_buf, size, k) in self.blocks.items():
            if k == kind and start <= addr and addr + nbytes <= start + size:
                return
        raise AssertionError(f"{nbytes} bytes at {addr:#x} are not inside a {kind} block")

    # streams
    def new_stream(self) -> int:
        self._next_stream += 1
        self.streams[self._next_stream] = []
        return self._next_stream

    def enqueue(self, handle: int, what: tuple[Any, ...], fn: Callable[[], None]) -> None:
        if handle not in self.streams:
            raise AssertionError(f"unknown stream handle {handle!r}")
        self.calls.append(what)
        self.streams[handle].append(fn)

    def sync(self, handle: int) -> None:
        if handle not in self.streams:
            raise AssertionError(f"unknown stream handle {handle!r}")
        self.calls.append(("sync", handle))
        work, self.streams[handle] = self.streams[handle], []
        for fn in work:
            fn()

    def pending(self) -> int:
        return sum(len(w) for w in self.streams.values())

    def copy(self, dst: int, src: int, nbytes: int, kind: str, handle: int) -> None:
        if kind == "htod":
            self.region(src, nbytes, "pinned")
            self.region(dst, nbytes, "device")
        else:
            self.region(src, nbytes, "device")
            self.region(dst, nbytes, "pinned")
        self.enqueue(handle, (kind, nbytes, handle), lambda: ctypes.memmove(dst, src, nbytes))


# -- cuda-python (cuda.bindings.runtime / cuda.cudart) ----------------------------------------
class cudaError_t(enum.IntEnum):  # noqa: N801 - the binding's own name
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorInsufficientDriver = 35
    cudaErrorNoDevice = 100
    cudaErrorInvalidDevice = 101


class cudaMemcpyKind(enum.IntEnum):  # noqa: N801
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2


class cudaStream_t:  # noqa: N801
    gpu: FakeGPU | None = None

    def __init__(self, handle: int) -> None:
        self._handle = handle

    def __int__(self) -> int:
        if self.gpu is not None:
            self.gpu.calls.append(("int(cudaStream_t)",))  # deprecated: get_cuda_native_handle
        return self._handle


def make_cuda_utils() -> types.ModuleType:
    """``cuda.bindings.utils`` (cuda-bindings >= 12.9) with get_cuda_native_handle."""
    utils = types.ModuleType("cuda.bindings.utils")

    def get_cuda_native_handle(obj: Any) -> int:
        if not isinstance(obj, cudaStream_t):
            raise TypeError(f"not a CUDA Python object: {type(obj).__name__}")
        return obj._handle

    utils.get_cuda_native_handle = get_cuda_native_handle
    return utils


def make_cudart(gpu: FakeGPU) -> types.ModuleType:
    ok = cudaError_t.cudaSuccess
    rt = types.ModuleType("cuda.bindings.runtime")
    stream_type = type("cudaStream_t", (cudaStream_t,), {"gpu": gpu})
    rt.cudaError_t, rt.cudaMemcpyKind, rt.cudaStream_t = cudaError_t, cudaMemcpyKind, stream_type

    def stream_of(s: Any) -> int:
        if not isinstance(s, cudaStream_t):
            raise TypeError(f"stream must be a cudaStream_t, got {type(s).__name__}")
        return s._handle

    def driver_ok() -> Any:
        return cudaError_t[gpu.cuda_python_error] if gpu.cuda_python_error else ok

    def memcpy_async(dst: int, src: int, count: int, kind: cudaMemcpyKind, stream: Any):
        if not isinstance(kind, cudaMemcpyKind):
            raise TypeError("kind must be a cudaMemcpyKind")
        if not all(isinstance(v, int) for v in (dst, src, count)):
            raise TypeError("dst, src and count must be ints")
        direction = {cudaMemcpyKind.cudaMemcpyHostToDevice: "htod"}.get(kind, "dtoh")
        gpu.copy(dst, src, count, direction, stream_of(stream))
        return (ok,)

    def device_count() -> tuple[Any, Any]:
        err = driver_ok()
        return (err, None) if err != ok else (ok, gpu.count)

    def properties(i: int) -> tuple[Any, Any]:
        if i >= gpu.count:
            return cudaError_t.cudaErrorInvalidDevice, None
        return ok, types.SimpleNamespace(
            name=gpu.name.encode() + b"\x00" * 8, major=gpu.cc[0], minor=gpu.cc[1],
            multiProcessorCount=gpu.multiprocessors, totalGlobalMem=gpu.total_memory,
        )  # fmt: skip

    def mem_get_info() -> tuple[Any, int, int]:
        used = sum(size for _b, size, kind in gpu.blocks.values() if kind == "device")
        return ok, gpu.total_memory - used, gpu.total_memory

    rt.cudaGetErrorName = lambda err: (ok, err.name.encode())
    rt.cudaGetDeviceCount = device_count
    rt.cudaRuntimeGetVersion = lambda: (ok, 12090)
    rt.cudaDriverGetVersion = lambda: (ok, gpu.driver_version)
    rt.cudaSetDevice = lambda i: (ok,) if i < gpu.count else (cudaError_t.cudaErrorInvalidDevice,)
    rt.cudaGetDeviceProperties = properties
    rt.cudaMemGetInfo = mem_get_info
    rt.cudaStreamCreate = lambda: (ok, stream_type(gpu.new_stream()))
    rt.cudaStreamSynchronize = lambda s: (gpu.sync(stream_of(s)), (ok,))[1]
    rt.cudaStreamDestroy = lambda s: (gpu.streams.pop(stream_of(s)), (ok,))[1]
    rt.cudaMallocHost = lambda n: (ok, gpu.alloc(n, "pinned"))
    rt.cudaFreeHost = lambda p: (gpu.free(p, "pinned"), (ok,))[1]
    rt.cudaMalloc = lambda n: (ok, gpu.alloc(n, "device"))
    rt.cudaFree = lambda p: (gpu.free(p, "device"), (ok,))[1]
    rt.cudaMemcpyAsync = memcpy_async
    return rt


# -- pycuda.driver -----------------------------------------------------------------------------
def make_pycuda_driver(gpu: FakeGPU) -> types.ModuleType:
    drv = types.ModuleType("pycuda.driver")
    state = {"init": False}

    def need_ctx() -> None:
        if not state["init"]:
            raise AssertionError("pycuda.driver.init() was not called")
        if gpu.ctx_depth < 1:
            raise AssertionError("no pycuda context is current on this thread")
        if not gpu.current[-1].valid:
            raise AssertionError("the current pycuda context was detached")

    class Context:
        def __init__(self) -> None:
            self.valid = True
            gpu.primary_retained += 1

        def push(self) -> None:
            if not self.valid:
                raise AssertionError("push of a detached context")
            gpu.ctx_depth += 1
            gpu.current.append(self)
            gpu.calls.append(("ctx_push",))

        def detach(self) -> None:
            # A primary context's detach is cuDevicePrimaryCtxRelease; pycuda marks the
            # context dead, and objects made in it can no longer clean up.
            if not self.valid:
                raise AssertionError("detach of a detached context")
            self.valid = False
            gpu.primary_retained -= 1
            gpu.calls.append(("ctx_detach",))

        @staticmethod
        def pop() -> None:
            if gpu.ctx_depth < 1:
                raise AssertionError("Context.pop() with no current context")
            gpu.ctx_depth -= 1
            gpu.current.pop()
            gpu.calls.append(("ctx_pop",))

    def live_context() -> bool:
        return bool(gpu.current) and gpu.current[-1].valid

    class Device:
        def __init__(self, ordinal: int) -> None:
            if ordinal >= gpu.count:
                raise AssertionError(f"no device {ordinal}")

        @staticmethod
        def count() -> int:
            return gpu.count

        def name(self) -> str:
            return gpu.name

        def compute_capability(self) -> tuple[int, int]:
            return gpu.cc

        def total_memory(self) -> int:
            return gpu.total_memory

        def get_attribute(self, attr: Any) -> int:
            if attr is not device_attribute.MULTIPROCESSOR_COUNT:
                raise AssertionError(f"fake knows no device attribute {attr!r}")
            return gpu.multiprocessors

        def retain_primary_context(self) -> Context:
            return Context()

    device_attribute = enum.Enum("device_attribute", ["MULTIPROCESSOR_COUNT", "WARP_SIZE"])

    class DeviceAllocation:
        def __init__(self, addr: int) -> None:
            self.addr = addr

        def __int__(self) -> int:
            return self.addr

        def free(self) -> None:
            gpu.free(self.addr, "device")

    class Stream:
        def __init__(self) -> None:
            need_ctx()
            self.handle = gpu.new_stream()

        def synchronize(self) -> None:
            gpu.sync(self.handle)

        def __del__(self) -> None:
            # pycuda's ~stream(): cuStreamDestroy in the stream's context if that context is
            # still alive; after a detach it catches cannot_activate_dead_context and skips it.
            if live_context():
                gpu.streams.pop(self.handle, None)
                gpu.calls.append(("stream_destroy", self.handle))
            else:
                gpu.leaks.append(("stream", self.handle))

    def pagelocked_empty(shape: Any, dtype: Any) -> np.ndarray:
        need_ctx()
        if not isinstance(shape, int):
            raise AssertionError("the runner asks for flat pinned buffers")
        addr = gpu.alloc(shape * np.dtype(dtype).itemsize, "pinned")
        return np.frombuffer(gpu.blocks[addr][0], dtype=dtype, count=shape)

    def mem_alloc(nbytes: int) -> DeviceAllocation:
        need_ctx()
        return DeviceAllocation(gpu.alloc(nbytes, "device"))

    def htod(dest: Any, src: np.ndarray, stream: Stream) -> None:
        need_ctx()
        gpu.copy(int(dest), src.ctypes.data, src.nbytes, "htod", stream.handle)

    def dtoh(dest: np.ndarray, src: Any, stream: Stream) -> None:
        need_ctx()
        gpu.copy(dest.ctypes.data, int(src), dest.nbytes, "dtoh", stream.handle)

    def init(flags: int = 0) -> None:
        if gpu.pycuda_init_error:
            raise RuntimeError(f"cuInit failed: {gpu.pycuda_init_error}")
        state["init"] = True

    def mem_get_info() -> tuple[int, int]:
        need_ctx()
        used = sum(size for _b, size, kind in gpu.blocks.values() if kind == "device")
        return gpu.total_memory - used, gpu.total_memory

    drv.init, drv.Device, drv.Context, drv.Stream = init, Device, Context, Stream
    drv.device_attribute, drv.mem_get_info = device_attribute, mem_get_info
    drv.get_version = lambda: (12, 6, 0)
    drv.get_driver_version = lambda: gpu.driver_version
    drv.pagelocked_empty, drv.mem_alloc = pagelocked_empty, mem_alloc
    drv.memcpy_htod_async, drv.memcpy_dtoh_async = htod, dtoh
    return drv


# -- tensorrt ------------------------------------------------------------------------------------
class _Strict:
    """Rejects attributes the real class does not have (e.g. the removed max_workspace_size)."""

    _fields: tuple[str, ...] = ()

    def __setattr__(self, key: str, value: Any) -> None:
        if key not in self._fields and not key.startswith("_"):
            raise AttributeError(f"{type(self).__name__} has no attribute {key!r}")
        object.__setattr__(self, key, value)


def make_tensorrt(version: str, gpu: FakeGPU) -> types.ModuleType:
    major, minor = (int(v) for v in version.split(".")[:2])
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version

    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    class ILogger:
        def __init__(self) -> None:
            self._base_init = True

        def log(self, severity: Severity, msg: str) -> None:  # pragma: no cover
            pass

    ILogger.Severity = Severity
    for s in Severity:
        setattr(ILogger, s.name, s)

    def check_logger(logger: Any) -> None:
        if not isinstance(logger, ILogger) or not getattr(logger, "_base_init", False):
            raise TypeError("logger must be an ILogger whose __init__ ran")

    if major >= 11:
        flag_names = ["STRONGLY_TYPED"]
        builder_flags = ["DEBUG", "GPU_FALLBACK", "REFIT", "DISABLE_TIMING_CACHE", "TF32"]
    else:
        flag_names = ["EXPLICIT_BATCH", "STRONGLY_TYPED"]
        builder_flags = ["FP16", "INT8", "DEBUG", "GPU_FALLBACK", "REFIT",
                         "DISABLE_TIMING_CACHE", "TF32"]  # fmt: skip
    NetworkFlag = enum.IntEnum("NetworkDefinitionCreationFlag", flag_names, start=0)
    BuilderFlag = enum.IntEnum("BuilderFlag", builder_flags, start=0)
    MemoryPoolType = enum.IntEnum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM"], start=0)
    DeviceType = enum.IntEnum("DeviceType", ["GPU", "DLA"], start=0)
    TensorIOMode = enum.IntEnum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"], start=0)
    DataType = enum.IntEnum(
        "DataType", ["FLOAT", "HALF", "BF16", "INT8", "INT32", "INT64", "BOOL", "UINT8", "FP8"],
        start=0,
    )  # fmt: skip
    LayerInformationFormat = enum.IntEnum("LayerInformationFormat", ["ONELINE", "JSON"], start=0)
    ProfilingVerbosity = enum.IntEnum(
        "ProfilingVerbosity", ["LAYER_NAMES_ONLY", "NONE", "DETAILED"], start=0
    )
    ErrorCode = enum.IntEnum("ErrorCode", ["SUCCESS", "INVALID_NODE", "UNSUPPORTED_NODE"], start=0)
    ErrorCode.__str__ = lambda self: self.name
    np_types = {DataType.FLOAT: np.float32, DataType.HALF: np.float16,
                DataType.INT8: np.int8, DataType.INT32: np.int32}  # fmt: skip

    def nptype(trt_type: Any) -> Any:
        # tensorrt/__init__.py: BF16 and FP8 have no NumPy type, and this is what it raises.
        if trt_type in np_types:
            return np_types[trt_type]
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")

    def released(kind: str) -> None:
        # TensorRT objects free device memory when they go: with pycuda, that must happen
        # while its context is current (cuda-python's runtime API binds it by itself).
        gpu.calls.append(("release", kind, gpu.ctx_depth))

    class Tensor:
        def __init__(self, name: str, shape: tuple[int, ...]) -> None:
            self.name, self.shape, self.dtype = name, shape, DataType.FLOAT

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            self.inputs: list[Tensor] = []
            self.outputs: list[Tensor] = []
            self.onnx = b""

        num_inputs = property(lambda self: len(self.inputs))
        num_outputs = property(lambda self: len(self.outputs))

        def get_input(self, i: int) -> Tensor:
            return self.inputs[i]

        def get_output(self, i: int) -> Tensor:
            return self.outputs[i]

    class ParserError:
        def __init__(self, code: Any, desc: str, node: int, name: str, op: str) -> None:
            self._v = (code, desc, node, name, op)

        def code(self) -> Any:
            return self._v[0]

        def desc(self) -> str:
            return self._v[1]

        def node(self) -> int:
            return self._v[2]

        def node_name(self) -> str:
            return self._v[3]

        def node_operator(self) -> str:
            return self._v[4]

    class OnnxParser:
        def __init__(self, network: Network, logger: Any) -> None:
            check_logger(logger)
            self.network, self._errors = network, []

        num_errors = property(lambda self: len(self._errors))

        def get_error(self, index: int) -> ParserError:
            return self._errors[index]

        def parse(self, model: bytes, path: str | None = None) -> bool:
            import onnx

            if not isinstance(model, bytes | bytearray | memoryview):
                raise TypeError("parse() takes the serialized model as a buffer")
            proto = onnx.load_from_string(bytes(model))
            for i, node in enumerate(proto.graph.node):
                if node.op_type not in SUPPORTED_OPS:
                    self._errors.append(
                        ParserError(
                            ErrorCode.UNSUPPORTED_NODE,
                            f"No importer registered for op: {node.op_type}",
                            i,
                            node.name,
                            node.op_type,
                        )  # fmt: skip
                    )
            if self._errors:
                return False
            inits = {t.name for t in proto.graph.initializer}
            dims = lambda vi: tuple(  # noqa: E731
                d.dim_value if d.HasField("dim_value") else -1
                for d in vi.type.tensor_type.shape.dim
            )
            self.network.inputs = [Tensor(v.name, dims(v)) for v in proto.graph.input
                                   if v.name not in inits]  # fmt: skip
            self.network.outputs = [Tensor(v.name, dims(v)) for v in proto.graph.output]
            self.network.onnx = bytes(model)
            return True

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

        def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002
            lo, mid, hi = (tuple(int(d) for d in s) for s in (min, opt, max))
            if not (len(lo) == len(mid) == len(hi)) or any(
                not (a <= b <= c) for a, b, c in zip(lo, mid, hi, strict=True)
            ):
                raise ValueError(f"bad profile for {input}: {lo} {mid} {hi}")
            self.shapes[input] = (lo, mid, hi)

    class TimingCache:
        def __init__(self, entries: int, gpu_name: str) -> None:
            self.entries, self.gpu_name = entries, gpu_name

        def serialize(self) -> bytes:
            return b"FAKE-TC:" + json.dumps([self.entries, self.gpu_name]).encode()

    class BuilderConfig(_Strict):
        _fields = ("builder_optimization_level", "default_device_type", "DLA_core",
                   "profiling_verbosity")  # fmt: skip

        def __init__(self) -> None:
            self._flags: set[Any] = set()
            self._pools: dict[Any, int] = {}
            self._profiles: list[Profile] = []
            self._cache: TimingCache | None = None
            object.__setattr__(self, "builder_optimization_level", 3)
            object.__setattr__(self, "default_device_type", DeviceType.GPU)
            object.__setattr__(self, "DLA_core", -1)
            object.__setattr__(self, "profiling_verbosity", ProfilingVerbosity.LAYER_NAMES_ONLY)

        def __setattr__(self, key: str, value: Any) -> None:
            if key == "profiling_verbosity" and not isinstance(value, ProfilingVerbosity):
                raise TypeError("profiling_verbosity must be a ProfilingVerbosity")
            if key == "builder_optimization_level" and not 0 <= value <= 5:
                raise ValueError("optimization level must be 0..5")
            if key == "default_device_type" and not isinstance(value, DeviceType):
                raise TypeError("default_device_type must be a DeviceType")
            super().__setattr__(key, value)

        def set_flag(self, flag: Any) -> None:
            if not isinstance(flag, BuilderFlag):
                raise TypeError(f"set_flag takes a BuilderFlag, got {flag!r}")
            self._flags.add(flag)

        def get_flag(self, flag: Any) -> bool:
            return flag in self._flags

        def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None:
            if not isinstance(pool, MemoryPoolType) or not isinstance(pool_size, int):
                raise TypeError("set_memory_pool_limit(MemoryPoolType, int)")
            self._pools[pool] = pool_size

        def add_optimization_profile(self, profile: Profile) -> int:
            self._profiles.append(profile)
            return len(self._profiles) - 1

        def create_timing_cache(self, serialized_timing_cache: bytes) -> TimingCache | None:
            data = bytes(serialized_timing_cache)
            if not data:
                return TimingCache(0, gpu.name)
            if not data.startswith(b"FAKE-TC:"):
                return None
            entries, name = json.loads(data[8:])
            return TimingCache(entries, name)

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            if cache.gpu_name != gpu.name and not ignore_mismatch:
                return False
            self._cache = cache
            return True

        def get_timing_cache(self) -> TimingCache:
            return self._cache

    class Builder:
        def __init__(self, logger: Any) -> None:
            check_logger(logger)
            self.logger = logger

        num_DLA_cores = property(lambda self: gpu.dla_cores)

        def create_network(self, flags: int = 0) -> Network:
            if not isinstance(flags, int) or flags >> len(NetworkFlag):
                raise ValueError(f"bad network creation flags {flags!r}")
            return Network(flags)

        def create_builder_config(self) -> BuilderConfig:
            return BuilderConfig()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: BuilderConfig):
            if gpu.fail_build:
                self.logger.log(Severity.ERROR, "fake: out of workspace")
                return None
            if len(config._profiles) != 1:
                raise AssertionError("exactly one optimization profile expected")
            typed = major >= 11 or bool(network.flags & (1 << NetworkFlag.STRONGLY_TYPED))
            precision = {f.name for f in config._flags} & {"FP16", "INT8"}
            if typed and precision:
                # TensorRT refuses precision flags on a strongly typed network
                raise AssertionError(f"{sorted(precision)} set on a strongly typed network")
            if (major, minor) >= (10, 12) and precision:
                raise AssertionError(f"deprecated weak-typing flags {sorted(precision)} used")
            shapes = config._profiles[0].shapes
            for t in network.inputs:
                if t.name not in shapes:
                    raise AssertionError(f"no profile shape for input {t.name}")
                for d, lo, hi in zip(t.shape, shapes[t.name][0], shapes[t.name][2], strict=True):
                    if d != -1 and not (d == lo == hi):
                        raise AssertionError(f"profile {lo}..{hi} vs static dim {d}")
            if config._cache is not None:
                config._cache.entries += 1
            io = [
                {
                    "name": t.name,
                    "mode": "INPUT",
                    "shape": list(t.shape),
                    "profile": [list(s) for s in shapes[t.name]],
                }
                for t in network.inputs
            ]
            io += [{"name": t.name, "mode": "OUTPUT", "shape": list(t.shape)}
                   for t in network.outputs]  # fmt: skip
            for t in network.inputs + network.outputs:
                next(d for d in io if d["name"] == t.name)["dtype"] = t.dtype.name
            blob = {
                "trt": version, "gpu": gpu.name, "network_flags": network.flags,
                "flags": sorted(f.name for f in config._flags),
                "pools": {p.name: v for p, v in config._pools.items()},
                "opt_level": config.builder_optimization_level,
                "profiling_verbosity": config.profiling_verbosity.name,
                "device_type": config.default_device_type.name, "dla_core": config.DLA_core,
                "timing_cache": config._cache is not None, "io": io,
                "onnx": base64.b64encode(network.onnx).decode(),
            }  # fmt: skip
            return json.dumps(blob).encode()

    class Context:
        def __init__(self, engine: Engine) -> None:
            self.engine = engine
            self.shapes: dict[str, tuple[int, ...]] = {}
            self.addresses: dict[str, int] = {}

        def __del__(self) -> None:
            released("context")

        def set_input_shape(self, name: str, shape: Any) -> bool:
            t = self.engine.io[name]
            shape = tuple(int(d) for d in shape)
            lo, _opt, hi = t["profile"]
            if len(shape) != len(lo) or any(
                not (a <= s <= b) for s, a, b in zip(shape, lo, hi, strict=True)
            ):
                return False
            self.shapes[name] = shape
            return True

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            t = self.engine.io[name]
            if t["mode"] == "INPUT":
                return self.shapes.get(name, tuple(t["shape"]))
            batch = next(iter(self.shapes.values()), (-1,))[0]
            return tuple(batch if d == -1 else d for d in t["shape"])

        def set_tensor_address(self, name: str, memory: int) -> bool:
            if name not in self.engine.io or not isinstance(memory, int):
                raise TypeError("set_tensor_address(name: str, memory: int)")
            gpu.region(memory, 1, "device")
            self.addresses[name] = memory
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            if not isinstance(stream_handle, int):
                raise TypeError("stream_handle must be an int")
            missing = set(self.engine.io) - set(self.addresses)
            if missing or set(self.engine.inputs) - set(self.shapes):
                raise AssertionError(f"addresses/shapes not set: {missing}")
            feeds = {n: (self.addresses[n], self.shapes[n]) for n in self.engine.inputs}
            outs = {n: (self.addresses[n], self.get_tensor_shape(n)) for n in self.engine.outputs}
            gpu.enqueue(stream_handle, ("execute", stream_handle),
                        lambda: self.engine.run(feeds, outs))  # fmt: skip
            return True

    class Engine:
        def __init__(self, blob: dict[str, Any]) -> None:
            self.blob = blob
            self.io = {t["name"]: t for t in blob["io"]}
            self.names = [t["name"] for t in blob["io"]]
            self.inputs = [t["name"] for t in blob["io"] if t["mode"] == "INPUT"]
            self.outputs = [t["name"] for t in blob["io"] if t["mode"] == "OUTPUT"]

        num_io_tensors = property(lambda self: len(self.names))

        def __del__(self) -> None:
            released("engine")

        def get_tensor_name(self, index: int) -> str:
            return self.names[index]

        def get_tensor_mode(self, name: str) -> Any:
            return TensorIOMode[self.io[name]["mode"]]

        def get_tensor_dtype(self, name: str) -> Any:
            return DataType[self.io[name].get("dtype", "FLOAT")]

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return tuple(self.io[name]["shape"])

        def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple]:
            if profile_index != 0 or self.io[name]["mode"] != "INPUT":
                raise AssertionError("one profile, inputs only")
            return [tuple(s) for s in self.io[name]["profile"]]

        def create_execution_context(self) -> Context:
            return Context(self)

        def create_engine_inspector(self) -> Inspector:
            return Inspector(self)

        def run(self, feeds: dict, outs: dict) -> None:
            inputs = {}
            for name, (addr, shape) in feeds.items():
                n = int(np.prod(shape)) * 4
                inputs[name] = np.frombuffer(ctypes.string_at(addr, n), np.float32).reshape(shape)
            results = (gpu.kernel or self.onnx_kernel)(inputs)
            for name, (addr, shape) in outs.items():
                data = np.ascontiguousarray(results[name], np.float32)
                if data.shape != tuple(shape):
                    raise AssertionError(f"kernel output {data.shape} vs context {shape}")
                gpu.region(addr, data.nbytes, "device")
                ctypes.memmove(addr, data.ctypes.data, data.nbytes)

        def onnx_kernel(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            sess = ort.InferenceSession(base64.b64decode(self.blob["onnx"]), options,
                                        providers=["CPUExecutionProvider"])  # fmt: skip
            return dict(zip(self.outputs, sess.run(self.outputs, inputs), strict=True))

    class Inspector:
        """IEngineInspector: layer names only, unless the engine was built DETAILED (then one
        object per layer with its output format, in the shape of TensorRT's JSON)."""

        def __init__(self, engine: Engine) -> None:
            self.engine = engine

        def get_engine_information(self, format: Any) -> str:  # noqa: A002
            import onnx

            if format is not LayerInformationFormat.JSON:
                raise AssertionError("the fake inspector speaks JSON only")
            blob = self.engine.blob
            nodes = onnx.load_from_string(base64.b64decode(blob["onnx"])).graph.node
            names = [n.name or f"{n.op_type}_{i}" for i, n in enumerate(nodes)]
            if blob["profiling_verbosity"] != "DETAILED":
                return json.dumps({"Layers": names})
            int8 = "INT8" in blob["flags"] or any(n.op_type == "QuantizeLinear" for n in nodes)
            layers = [
                {"Name": name, "LayerType": n.op_type,
                 "Outputs": [{"Format/Datatype": "Int8 NC/32HW32" if int8 and n.op_type == "Conv"
                              else "Float"}]}
                for name, n in zip(names, nodes, strict=True)
            ]  # fmt: skip
            return json.dumps({"Layers": layers})

    class Runtime:
        def __init__(self, logger: Any) -> None:
            check_logger(logger)
            self.logger = logger

        def __del__(self) -> None:
            released("runtime")

        def deserialize_cuda_engine(self, serialized_engine: bytes) -> Engine | None:
            try:
                blob = json.loads(bytes(serialized_engine))
            except ValueError:
                self.logger.log(Severity.ERROR, "fake: engine blob is corrupt")
                return None
            if blob["trt"] != version or blob["gpu"] != gpu.name:
                self.logger.log(Severity.ERROR, "fake: engine built for another platform")
                return None
            return Engine(blob)

    trt.ILogger, trt.Logger = ILogger, ILogger
    trt.NetworkDefinitionCreationFlag, trt.BuilderFlag = NetworkFlag, BuilderFlag
    trt.MemoryPoolType, trt.DeviceType, trt.TensorIOMode = MemoryPoolType, DeviceType, TensorIOMode
    trt.DataType, trt.ErrorCode, trt.ProfilingVerbosity = DataType, ErrorCode, ProfilingVerbosity
    trt.nptype, trt.LayerInformationFormat = nptype, LayerInformationFormat
    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    return trt


def engine_blob(path: Any) -> dict[str, Any]:
    """What the fake builder put into an engine file."""
    with open(path, "rb") as f:
        return json.loads(f.read())


# -- ModelOpt AutoCast (modelopt.onnx.autocast) -----------------------------------------------
def make_autocast() -> tuple[dict[str, types.ModuleType], list[dict[str, Any]]]:
    """``modelopt.onnx.autocast.convert_to_mixed_precision``: records its arguments and marks
    the model it returns (doc_string), so a test sees that the parser got the converted one."""
    import onnx

    calls: list[dict[str, Any]] = []

    def convert_to_mixed_precision(onnx_path: str, low_precision_type: str = "fp16",
                                   keep_io_types: bool = False, **kwargs: Any) -> Any:  # fmt: skip
        if not isinstance(onnx_path, str):
            raise TypeError("onnx_path must be a str")
        calls.append({"onnx_path": onnx_path, "low_precision_type": low_precision_type,
                      "keep_io_types": keep_io_types, **kwargs})  # fmt: skip
        model = onnx.load(onnx_path)
        model.doc_string = "autocast:" + low_precision_type
        return model

    pkg, sub, autocast = (types.ModuleType(n) for n in
                          ("modelopt", "modelopt.onnx", "modelopt.onnx.autocast"))  # fmt: skip
    pkg.__path__, sub.__path__ = [], []
    pkg.onnx, sub.autocast = sub, autocast
    autocast.convert_to_mixed_precision = convert_to_mixed_precision
    return {"modelopt": pkg, "modelopt.onnx": sub, "modelopt.onnx.autocast": autocast}, calls
