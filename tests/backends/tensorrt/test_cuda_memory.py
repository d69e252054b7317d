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
    memory = open_memory()
    assert memory.device_count() == 1
    info = memory.device_info(0)
    assert (info.name, info.compute_capability) == ("NVIDIA H200", "9.0")
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
    memory.close()
    assert gpu.blocks == {} and gpu.ctx_depth == 0


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
    for call in (
        lambda: memory.create_stream(),
        lambda: memory.alloc_pinned(64),
        lambda: memory.alloc_device(64),
        lambda: memory.copy_htod_async(0, np.zeros(8, np.uint8), rt.cudaStream_t()),
        lambda: memory.copy_dtoh_async(np.zeros(8, np.uint8), 0, rt.cudaStream_t()),
        lambda: memory.synchronize(rt.cudaStream_t()),
    ):
        with pytest.raises(BackendError, match=r"CUDA call \w+.* failed: cudaError"):
            call()
    assert memory.stream_handle(rt.cudaStream_t()) == 0
