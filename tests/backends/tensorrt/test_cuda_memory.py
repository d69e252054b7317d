"""The device-memory module: choosing an implementation, and each one's calls."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest

from edgevision.backends.tensorrt.cuda_memory import (
    CudaPythonMemory,
    PyCudaMemory,
    cuda_device_present,
    open_memory,
)
from edgevision.errors import BackendError


def test_cuda_python_is_preferred(cudart):
    memory = open_memory()
    assert isinstance(memory, CudaPythonMemory) and memory.rt is cudart


def test_old_cudart_location_is_found(old_cudart):
    assert open_memory().rt is old_cudart


def test_pycuda_when_cuda_python_is_absent(pycuda):
    memory = open_memory()
    assert isinstance(memory, PyCudaMemory) and memory.drv is pycuda


def test_environment_variable_picks_one(cudart, monkeypatch):
    monkeypatch.setenv("EDGEVISION_CUDA_MEMORY", "pycuda")
    with pytest.raises(BackendError, match="no CUDA memory module.*pycuda"):
        open_memory()  # pycuda is absent in this fixture, and nothing else is tried
    monkeypatch.setenv("EDGEVISION_CUDA_MEMORY", "cupy")
    with pytest.raises(BackendError, match="unknown CUDA memory module 'cupy'"):
        open_memory()


@pytest.mark.parametrize("fixture", ["cudart", "pycuda"])
def test_device_identity_and_a_round_trip(request, fixture, gpu):
    request.getfixturevalue(fixture)
    gpu.name = "NVIDIA H200"
    gpu.cc = (9, 0)
    gpu.multiprocessors, gpu.total_memory = 132, 143771 * 2**20
    memory = open_memory()
    assert memory.device_count() == 1
    info = memory.device_info(0)
    assert (info.name, info.compute_capability) == ("NVIDIA H200", "9.0")
    assert (info.multiprocessors, info.memory_gib) == (132, 140)
    free, total = memory.mem_info()
    assert total == gpu.total_memory and free == total
    with memory.in_context():
        stream = memory.create_stream()
        host_in, host_out = memory.alloc_pinned(16), memory.alloc_pinned(16)
        dev = memory.alloc_device(16)
        host_in[:] = np.arange(16, dtype=np.uint8)
        memory.copy_htod_async(dev, host_in, stream)
        memory.copy_dtoh_async(host_out, dev, stream)
        assert not host_out.any()  # nothing runs before the sync
        memory.synchronize(stream)
        assert host_out.tolist() == list(range(16))
        assert isinstance(memory.stream_handle(stream), int)
        memory.free_device(dev)
        memory.free_pinned(host_in)
        memory.free_pinned(host_out)
        memory.destroy_stream(stream)
        del stream  # pycuda destroys it here, in the live context
    memory.close()
    assert gpu.blocks == {} and gpu.ctx_depth == 0
    assert gpu.streams == {} and gpu.leaks == []


def test_copies_from_pageable_memory_are_caught(cudart):
    # The fake insists on pinned host memory, as the runner promises to use.
    memory = open_memory()
    stream, dev = memory.create_stream(), memory.alloc_device(16)
    with pytest.raises(AssertionError, match="not inside a pinned block"):
        memory.copy_htod_async(dev, np.zeros(16, np.uint8), stream)


def test_cuda_errors_become_backend_errors(cudart, gpu):
    memory = open_memory()
    with pytest.raises(BackendError, match="cudaGetDeviceProperties failed: cudaErrorInvalid"):
        memory.device_info(3)


def test_cuda_python_with_an_insufficient_driver_falls_back_to_pycuda(both_memory, gpu, caplog):
    """cuda-python 13 links the CUDA 13 runtime statically: on a CUDA 12 driver (JetPack 6) it
    imports, and cudaGetDeviceCount answers cudaErrorInsufficientDriver."""
    gpu.cuda_python_error = "cudaErrorInsufficientDriver"
    with caplog.at_level("WARNING", logger="edgevision.tensorrt"):
        memory = open_memory()
        open_memory()  # said once per process, not at every runner
    assert isinstance(memory, PyCudaMemory)
    (why,) = memory.skipped
    assert why.startswith("cuda-python: cudaGetDeviceCount returned cudaErrorInsufficientDriver")
    assert "the driver supports CUDA 12.6" in why and "cuda-python<13" in why
    (record,) = caplog.records
    assert "CUDA memory through pycuda" in record.message and why in record.message


def test_cuda_python_seeing_no_device_falls_back_to_pycuda(both_memory, gpu, monkeypatch):
    rt, _drv = both_memory
    monkeypatch.setattr(rt, "cudaGetDeviceCount", lambda: (rt.cudaError_t.cudaSuccess, 0))
    memory = open_memory()
    assert memory.name == "pycuda"
    assert memory.skipped == ("cuda-python: it sees 0 CUDA device(s), so no device 0",)


def test_no_module_can_use_the_gpu_says_why_for_each(both_memory, gpu):
    gpu.cuda_python_error = "cudaErrorInsufficientDriver"
    gpu.pycuda_init_error = "no CUDA-capable device is detected"
    with pytest.raises(BackendError, match="no CUDA memory module can use the GPU") as exc:
        open_memory()
    assert "cuda-python: cudaGetDeviceCount returned cudaErrorInsufficientDriver" in str(exc.value)
    assert "pycuda: cuInit / cuDeviceGetCount failed" in str(exc.value)
    assert "nvidia-smi" in exc.value.fix and "cuda-python>=12.6,<13" in exc.value.fix


def test_a_preferred_module_that_cannot_use_the_gpu_is_not_replaced(both_memory, gpu, monkeypatch):
    gpu.cuda_python_error = "cudaErrorNoDevice"
    monkeypatch.setenv("EDGEVISION_CUDA_MEMORY", "cuda-python")
    with pytest.raises(BackendError, match="cuda-python: cudaGetDeviceCount returned cudaErrorNo"):
        open_memory()


def test_pycuda_retains_the_primary_context_once_per_process(pycuda, gpu):
    memories = [open_memory() for _ in range(3)]
    for memory in memories:
        with memory.in_context():
            memory.alloc_device(8)  # needs a live context
        memory.close()
    assert gpu.primary_retained == 1 and ("ctx_detach",) not in gpu.calls
    with open_memory().in_context():  # still usable after every close()
        assert gpu.current[-1].valid


def test_stream_handle_uses_get_cuda_native_handle_where_it_exists(request, gpu):
    request.getfixturevalue("cudart")
    memory = open_memory()
    stream = memory.create_stream()
    assert memory.stream_handle(stream) == stream._handle
    assert ("int(cudaStream_t)",) not in gpu.calls


def test_stream_handle_with_the_old_cudart_layout(old_cudart, gpu):
    memory = open_memory()  # no cuda.bindings.utils there: int() is all there is
    stream = memory.create_stream()
    assert memory.stream_handle(stream) == stream._handle
    assert ("int(cudaStream_t)",) in gpu.calls


def test_device_presence(cudart, gpu):
    assert cuda_device_present()
    gpu.count = 0
    assert not cuda_device_present()


def test_nothing_installed(monkeypatch):
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart", "pycuda",
                 "pycuda.driver"):  # fmt: skip
        monkeypatch.setitem(sys.modules, name, None)
    assert not cuda_device_present()
    with pytest.raises(BackendError, match="no CUDA memory module is installed"):
        open_memory()


def test_real_cuda_python_calls_without_a_driver():
    """The real cuda-python bindings (installed here with torch) accept our calls' argument
    types; with no driver on this machine each call returns an error code, which we raise."""
    try:
        rt = importlib.import_module("cuda.bindings.runtime")
    except ImportError:
        pytest.skip("cuda-python is not installed")
    memory = CudaPythonMemory(rt)
    if memory.device_count() > 0:
        pytest.skip("a CUDA device is present: covered by the gpu tests")
    assert memory.unusable.startswith("cudaGetDeviceCount returned cudaError")
    for call in (
        lambda: memory.create_stream(),
        lambda: memory.alloc_pinned(64),
        lambda: memory.alloc_device(64),
        lambda: memory.copy_htod_async(0, np.zeros(8, np.uint8), rt.cudaStream_t()),
        lambda: memory.copy_dtoh_async(np.zeros(8, np.uint8), 0, rt.cudaStream_t()),
        lambda: memory.synchronize(rt.cudaStream_t()),
        lambda: memory.mem_info(),
        lambda: memory.device_info(0),
    ):
        with pytest.raises(BackendError, match=r"CUDA call \w+.* failed: cudaError"):
            call()
    assert memory.stream_handle(rt.cudaStream_t()) == 0
