"""Engine records: what differs, and malformed records."""

from __future__ import annotations

import pytest

from edgevision.backends.tensorrt import build as build_mod
from edgevision.backends.tensorrt.build import build_engine
from edgevision.backends.tensorrt.select import select_engine
from edgevision.backends.tensorrt.staleness import (
    EngineRecord,
    Environment,
    bundle_records,
    identity_differences,
    settings_differences,
)
from edgevision.bundle import Bundle
from edgevision.errors import BuildError, BundleError


def test_differences_are_named(trt, trt_bundle):
    record = build_engine(trt_bundle)
    here = Environment("10.7.0", "Thor", "11.0", 20, 122)
    diffs = identity_differences(record, here, "e" * 64)
    assert diffs == [
        f"TensorRT version: built for {trt.__version__}, here 10.7.0",
        "GPU: built for Orin, here Thor",
        "compute capability: built for 8.7, here 11.0",
        "multiprocessor count: built for 16, here 20",
        "GPU memory (GiB): built for 61, here 122",
        f"ONNX model hash: built for {record.onnx_sha256[:8]}, here eeeeeeee",
    ]
    assert identity_differences(record, record.environment, record.onnx_sha256) == []
    assert settings_differences(record, {"max_batch": 8, "device": "dla0"}) == [
        "device: built with gpu, asked for dla0"
    ]


def test_record_round_trip_and_missing_fields(trt, trt_bundle, tmp_path):
    record = build_engine(trt_bundle)
    data = record.to_dict(relative_to=trt_bundle)
    assert EngineRecord.from_dict(data, trt_bundle) == record
    del data["sha256"]
    with pytest.raises(BundleError, match="lacks sha256"):
        EngineRecord.from_dict(data, trt_bundle)


def test_a_record_without_the_module_identity_is_stale(trt, trt_bundle):
    """A record written before the SM count and memory were recorded reads, but does not
    fit: it could be an engine from any Orin module."""
    data = build_engine(trt_bundle).to_dict(relative_to=trt_bundle)
    del data["multiprocessors"], data["memory_gib"]
    old = EngineRecord.from_dict(data, trt_bundle)
    here = Environment(old.trt_version, "Orin", "8.7", 16, 61)
    assert identity_differences(old, here, old.onnx_sha256) == [
        "multiprocessor count: built for (not recorded), here 16",
        "GPU memory (GiB): built for (not recorded), here 61",
    ]


def test_malformed_engines_section(trt, trt_bundle):
    bundle = Bundle.open(trt_bundle)
    bundle.manifest["engines"] = ["not", "a", "mapping"]
    with pytest.raises(BundleError, match="'engines' is not an object"):
        bundle_records(bundle)


def test_fitting_engine_wins_over_a_newer_stale_one(make_trt, cudart, trt_bundle):
    make_trt("10.3.0")
    old = build_engine(trt_bundle)
    make_trt("11.2.0")
    build_engine(trt_bundle)  # newer, but for another TensorRT
    make_trt("10.3.0")
    assert select_engine(Bundle.open(trt_bundle)) == old


def test_unwritable_cache_folder_is_a_clear_error(trt, trt_bundle, monkeypatch):
    def nowhere(path, data):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(build_mod, "atomic_write_bytes", nowhere)
    with pytest.raises(BuildError, match="cannot write the engine to the cache folder") as exc:
        build_engine(trt_bundle)
    assert "EDGEVISION_ENGINE_CACHE" in exc.value.fix


def test_timing_cache_that_cannot_be_saved_does_not_fail_the_build(
    trt, trt_bundle, tmp_path, monkeypatch
):
    real = build_mod.atomic_write_bytes

    def no_timing_cache(path, data):
        if path.name == "timing.cache":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, data)

    monkeypatch.setattr(build_mod, "atomic_write_bytes", no_timing_cache)
    record = build_engine(trt_bundle, timing_cache=tmp_path / "timing.cache")
    assert record.path.is_file() and not (tmp_path / "timing.cache").exists()
