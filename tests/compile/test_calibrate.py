"""Calibrate once, cache the ranges keyed by everything they depend on, never reuse silently."""

import json
from dataclasses import replace

import numpy as np
import pytest

from edgevision.compile.calibrate import METHODS, calibrate
from edgevision.compile.calibration import collect_calibration
from edgevision.compile.quantize import prepare_for_quantization
from edgevision.errors import RegistryError
from tests.compile.conftest import TINY_SPEC, write_images
from tests.helpers import tiny_classifier_onnx


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A pre-processed tiny ONNX classifier and two different calibration sets for it."""
    root = tmp_path_factory.mktemp("tiny")
    prep = prepare_for_quantization(tiny_classifier_onnx(root / "m.onnx"), root / "prep.onnx")
    write_images(root / "one", 16, seed=1)
    write_images(root / "two", 16, seed=2)
    one = collect_calibration(root / "one", TINY_SPEC)
    two = collect_calibration(root / "two", TINY_SPEC)
    return prep, one, two


def test_cache_hit_only_when_everything_matches(tiny, tmp_path):
    prep, one, two = tiny
    first = calibrate(prep, one, TINY_SPEC, "minmax", cache_dir=tmp_path, threads=1)
    assert not first.from_cache and first.tensor_count > 0
    assert first.cache_path.parent == tmp_path
    again = calibrate(prep, one, TINY_SPEC, "minmax", cache_dir=tmp_path, threads=1)
    assert again.from_cache and again.cache_path == first.cache_path
    assert again.tensors_data().data.keys() == first.tensors_data().data.keys()
    changed = {
        "method": calibrate(prep, one, TINY_SPEC, "entropy", cache_dir=tmp_path),
        "manifest": calibrate(prep, two, TINY_SPEC, "minmax", cache_dir=tmp_path),
        "preprocessing": calibrate(
            prep, one, replace(TINY_SPEC, mean=(0.5, 0.5, 0.5)), "minmax", cache_dir=tmp_path
        ),
    }
    for what, ranges in changed.items():
        assert not ranges.from_cache, what
        assert ranges.cache_path != first.cache_path, what
    # Labels do not change pixels: same ranges.
    relabelled = replace(TINY_SPEC, labels=("x", "y", "z"))
    assert calibrate(prep, one, relabelled, "minmax", cache_dir=tmp_path).from_cache
    assert not list(tmp_path.glob("*.tmp"))  # written atomically


def test_model_change_recalibrates(tiny, tmp_path):
    prep, one, _ = tiny
    other = tiny_classifier_onnx(tmp_path / "other.onnx", seed=5)
    other_prep = prepare_for_quantization(other, tmp_path / "other.prep.onnx")
    a = calibrate(prep, one, TINY_SPEC, cache_dir=tmp_path / "c")
    b = calibrate(other_prep, one, TINY_SPEC, cache_dir=tmp_path / "c")
    assert not b.from_cache and a.key["model_sha256"] != b.key["model_sha256"]


def test_a_cache_file_with_another_key_is_not_reused(tiny, tmp_path):
    prep, one, _ = tiny
    first = calibrate(prep, one, TINY_SPEC, cache_dir=tmp_path)
    raw = json.loads(first.cache_path.read_text())
    raw["edgevision_key"]["method"] = "percentile"
    first.cache_path.write_text(json.dumps(raw))
    assert not calibrate(prep, one, TINY_SPEC, cache_dir=tmp_path).from_cache
    first.cache_path.write_text("{truncated")
    assert not calibrate(prep, one, TINY_SPEC, cache_dir=tmp_path).from_cache
    assert calibrate(prep, one, TINY_SPEC, cache_dir=tmp_path).from_cache


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_gives_finite_ranges(tiny, tmp_path, method):
    prep, one, _ = tiny
    ranges = calibrate(prep, one, TINY_SPEC, method, cache_dir=tmp_path, batch_size=4)
    data = ranges.tensors_data()
    assert data.calibration_method.name.lower() == method
    for tensor in data.data.values():
        low, high = tensor.range_value
        assert np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(low <= high)
    assert "input" in data.data


def test_unknown_method(tiny, tmp_path):
    prep, one, _ = tiny
    with pytest.raises(RegistryError, match="minmax"):
        calibrate(prep, one, TINY_SPEC, "kl", cache_dir=tmp_path)
