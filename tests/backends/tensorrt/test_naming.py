"""Engine names and the engine cache folder."""

from __future__ import annotations

from pathlib import Path

from edgevision.backends.tensorrt.naming import (
    default_engine_cache,
    engine_file_name,
    resolve_engine_cache,
    slug,
    timing_cache_name,
)
from edgevision.backends.tensorrt.staleness import Environment

AGX_ORIN = Environment("10.3.0", "Orin (nvgpu)", "8.7", 16, 61)
ORIN_NANO = Environment("10.3.0", "Orin (nvgpu)", "8.7", 8, 7)


def test_engine_name_carries_everything_it_is_tied_to():
    name = engine_file_name("model.int8.trt.onnx", AGX_ORIN, "int8", "ab12cd34ef" * 6)
    assert name == "model.int8.trt.onnx.10.3.0.orin-nvgpu-16sm-61g.sm87.int8.gpu.ab12cd34.engine"
    dla = engine_file_name("model.fp32.onnx", ORIN_NANO, "fp16", "0" * 64, 1)
    assert dla == "model.fp32.onnx.10.3.0.orin-nvgpu-8sm-7g.sm87.fp16.dla1.00000000.engine"


def test_orin_modules_get_different_names():
    # Same name, same SM 8.7, same TensorRT: only the SM count and memory tell them apart.
    names = {engine_file_name("m.onnx", env, "int8", "0" * 64) for env in (AGX_ORIN, ORIN_NANO)}
    assert len(names) == 2


def test_slug_and_timing_cache_name():
    assert slug("NVIDIA H200 NVL") == "nvidia-h200-nvl" and slug("???") == "unknown"
    h200 = Environment("11.2.0", "NVIDIA H200", "9.0", 132, 140)
    assert timing_cache_name(h200) == "timing.11.2.0.nvidia-h200-132sm-140g.sm90.cache"
    unknown = Environment("11.2.0", "NVIDIA H200", "9.0")  # parts not known are left out
    assert timing_cache_name(unknown) == "timing.11.2.0.nvidia-h200.sm90.cache"


def test_cache_folder_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEVISION_ENGINE_CACHE", str(tmp_path / "x"))
    assert default_engine_cache() == tmp_path / "x"
    monkeypatch.delenv("EDGEVISION_ENGINE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_engine_cache() == tmp_path / "xdg" / "edgevision" / "engines"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_engine_cache() == Path.home() / ".cache" / "edgevision" / "engines"
    assert resolve_engine_cache(tmp_path / "y") == tmp_path / "y"
