"""The one kind of file written into a bundle after the build: engines the tensorrt target
records under manifest "engines" (and a timing cache those records name). Nothing else."""

from __future__ import annotations

import shutil

import pytest

from edgevision.backends.tensorrt.build import build_engine
from edgevision.backends.tensorrt.runner import TrtRunner
from edgevision.bundle import Bundle
from edgevision.errors import BundleError


def test_an_engine_built_into_the_bundle_keeps_it_verified(trt, trt_bundle):
    record = build_engine(trt_bundle)
    assert record.location == "bundle" and (trt_bundle / record.file).is_file()
    assert record.file in Bundle.open(trt_bundle).manifest["engines"]


def test_a_timing_cache_kept_in_the_bundle_is_allowed(trt, trt_bundle):
    cache = trt_bundle / "timing.cache"
    record = build_engine(trt_bundle, timing_cache=cache)
    assert cache.is_file() and record.timing_cache == str(cache)
    Bundle.open(trt_bundle)


def test_an_engine_copied_in_without_its_record_is_refused(trt, trt_bundle, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(trt_bundle, other)
    record = build_engine(other)
    shutil.copyfile(record.path, trt_bundle / record.file)
    with pytest.raises(BundleError, match=f"holds {record.file}, which manifest.json"):
        Bundle.open(trt_bundle)


def test_an_engine_replaced_by_a_link_is_refused(trt, trt_bundle, tmp_path):
    record = build_engine(trt_bundle)
    outside = tmp_path / record.file
    shutil.move(record.path, outside)
    (trt_bundle / record.file).symlink_to(outside)
    with pytest.raises(BundleError, match=f"{record.file} is a symbolic link"):
        TrtRunner.from_bundle(Bundle.open(trt_bundle))
