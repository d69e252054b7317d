"""Fixtures: fake ``tensorrt`` (10.3, 10.16 and 11.x), fake cuda-python / pycuda / ModelOpt
AutoCast, a bundle with an ``int8-trt`` artifact. Each fake is put into ``sys.modules`` for one
test only."""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

import pytest

from edgevision.backends.tensorrt import cuda_memory, trt_api
from edgevision.backends.tensorrt.naming import ENV_ENGINE_CACHE
from tests.backends.tensorrt.bundles import make_trt_bundle
from tests.backends.tensorrt.fakes import (
    FakeGPU,
    make_autocast,
    make_cuda_utils,
    make_cudart,
    make_pycuda_driver,
    make_tensorrt,
)

# JetPack 6's weakly typed 10.3, a strongly typed 10.x (>= 10.12), and 11.
TRT_VERSIONS = ("10.3.0", "10.16.0", "11.2.0")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No engine cache in the real home folder; one TensorRT logger per fake module; no
    primary context or warning kept from another test; no real ModelOpt."""
    monkeypatch.setenv(ENV_ENGINE_CACHE, str(tmp_path / "engine-cache"))
    monkeypatch.delenv("EDGEVISION_CUDA_MEMORY", raising=False)
    monkeypatch.setattr(trt_api, "_LOGGERS", {})
    monkeypatch.setattr(cuda_memory, "_PRIMARY", {})
    monkeypatch.setattr(cuda_memory, "_WARNED", set())
    for name in ("modelopt", "modelopt.onnx", "modelopt.onnx.autocast"):
        monkeypatch.setitem(sys.modules, name, None)


@pytest.fixture
def gpu() -> FakeGPU:
    return FakeGPU()


@pytest.fixture
def make_trt(monkeypatch, gpu):
    """Install a fake tensorrt of a given version; returns the module."""

    def install(version: str = "10.3.0") -> types.ModuleType:
        module = make_tensorrt(version, gpu)
        monkeypatch.setitem(sys.modules, "tensorrt", module)
        return module

    return install


@pytest.fixture
def cudart(monkeypatch, gpu) -> types.ModuleType:
    """Fake cuda-python at ``cuda.bindings.runtime``; pycuda absent."""
    rt = make_cudart(gpu)
    cuda = types.ModuleType("cuda")
    cuda.__path__ = []
    bindings = types.ModuleType("cuda.bindings")
    bindings.__path__ = []
    bindings.runtime, bindings.utils = rt, make_cuda_utils()
    for name, mod in (("cuda", cuda), ("cuda.bindings", bindings), ("cuda.bindings.runtime", rt),
                      ("cuda.bindings.utils", bindings.utils)):  # fmt: skip
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    return rt


@pytest.fixture
def old_cudart(monkeypatch, gpu) -> types.ModuleType:
    """Fake cuda-python at the older ``from cuda import cudart`` location only."""
    rt = make_cudart(gpu)
    cuda = types.ModuleType("cuda")
    cuda.__path__ = []
    cuda.cudart = rt
    monkeypatch.setitem(sys.modules, "cuda", cuda)
    monkeypatch.setitem(sys.modules, "cuda.cudart", rt)
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings.utils", None)
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    return rt


@pytest.fixture
def pycuda(monkeypatch, gpu) -> types.ModuleType:
    """Fake pycuda.driver; cuda-python absent."""
    drv = make_pycuda_driver(gpu)
    pkg = types.ModuleType("pycuda")
    pkg.__path__ = []
    pkg.driver = drv
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.bindings.utils",
                 "cuda.cudart"):  # fmt: skip
        monkeypatch.setitem(sys.modules, name, None)
    return drv


@pytest.fixture
def both_memory(monkeypatch, gpu, cudart) -> tuple[types.ModuleType, types.ModuleType]:
    """Fake cuda-python and fake pycuda, both installed (cuda-python is tried first)."""
    drv = make_pycuda_driver(gpu)
    pkg = types.ModuleType("pycuda")
    pkg.__path__ = []
    pkg.driver = drv
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
    return cudart, drv


@pytest.fixture
def autocast(monkeypatch):
    """Fake ModelOpt AutoCast; returns its call log."""
    module, calls = make_autocast()
    for name, mod in module.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return calls


@pytest.fixture(params=TRT_VERSIONS)
def trt(request, make_trt, cudart):
    """Fake tensorrt, once per major version, with fake cuda-python memory."""
    return make_trt(request.param)


@pytest.fixture
def trt_bundle(tmp_path) -> Path:
    """fp32 + int8-trt (a copy of the fp32 model: the fake parser does not care about Q/DQ,
    and the fake engine runs whatever ONNX it was built from)."""
    return make_trt_bundle(tmp_path)


@pytest.fixture
def copy_bundle(tmp_path):
    """Copy a bundle folder (to model "the same bundle on another device")."""

    def copy(src: Path, name: str) -> Path:
        return Path(shutil.copytree(src, tmp_path / name))

    return copy
