"""Calibration advisor: range changes on growing prefixes, where they settle, the advice."""

from dataclasses import replace

import numpy as np
import pytest

from edgevision.compile.advise import _advice, advise_calibration_size, prefix_sizes, range_changes
from edgevision.compile.calibration import CalibrationSet
from edgevision.errors import ConfigError
from edgevision.spec import ModelSpec
from tests.helpers import tiny_classifier_onnx


def test_prefix_sizes():
    assert prefix_sizes(100) == [16, 32, 64, 100]
    assert prefix_sizes(64) == [16, 32, 64]
    assert prefix_sizes(16) == [16] and prefix_sizes(10) == [10]


def test_settles_where_every_later_change_is_small():
    snaps = [
        {"a": (0.0, 1.0), "b": (-1.0, 1.0)},
        {"a": (0.0, 2.0), "b": (-1.0, 1.0)},  # a's max moved 1.0 of width 2: 50%
        {"a": (0.0, 2.02), "b": (-1.0, 1.0)},  # 1%
        {"a": (0.0, 2.03), "b": (-1.0, 1.01), "c": (5.0, 5.0)},  # < 1%; c has no width
    ]
    assert range_changes(snaps[0], snaps[1]) == {"a": 0.5, "b": 0.0}
    advice = _advice(128, 0.05, [16, 32, 64, 128], snaps, 16)
    assert advice.changes[0] is None and advice.changes[1] == 0.5
    assert advice.moved_most[1] == "a" and advice.settled_at == 32
    assert advice.recommended == 64 and advice.enough
    assert "settled at 32 of 128 images" in advice.message()
    assert "64 recommended, the set is large enough" in advice.message()
    # The same ranges with a late jump: still moving at N, so twice as many images.
    late = [*snaps[:3], {"a": (0.0, 3.0), "b": (-1.0, 1.0)}]
    moving = _advice(128, 0.05, [16, 32, 64, 128], late, 16)
    assert moving.settled_at is None and moving.recommended == 256 and not moving.enough
    assert "still move at 128 images" in moving.message() and "--calib-size 256" in moving.message()
    assert "too few" in _advice(16, 0.05, [16], snaps[:1], 16).message()


def test_never_recommends_more_images_than_the_source_holds():
    snaps = [{"a": (0.0, 1.0)}, {"a": (0.0, 2.0)}, {"a": (0.0, 2.0)}]  # settles at 512
    advice = _advice(546, 0.05, [256, 512, 546], snaps, 256)
    assert advice.settled_at == 512 and advice.recommended == 1024
    text = replace(advice, available=546).message()  # the whole source is in the set
    assert "--calib-size 1024" not in text
    assert "holds only 546 images: use add 478 more" not in text
    assert "the calibration source holds only 546 images: add 478 more images" in text
    # A larger --calib-size helps, but not enough; or is all it takes.
    assert (
        "use --calib-size 800 and add 224 more images" in replace(advice, available=800).message()
    )
    assert "use more images: --calib-size 1024" in replace(advice, available=5000).message()


def _calib(tensors: np.ndarray, tmp_path) -> CalibrationSet:
    return CalibrationSet(tmp_path, "synthetic", [], tensors.astype(np.float32))


def test_advise_on_a_model(tmp_path):
    spec = ModelSpec(labels=("a", "b", "c"), input_size=(32, 48))
    model = tiny_classifier_onnx(tmp_path / "m.onnx")
    rng = np.random.default_rng(0)
    # Four patterns repeated: the first 16 images already hold every value there will be.
    steady = np.tile(rng.uniform(-1, 1, (4, 3, 32, 48)), (16, 1, 1, 1))
    advice = advise_calibration_size(model, _calib(steady, tmp_path), spec, cache_dir=tmp_path)
    assert advice.prefixes == [16, 32, 64] and advice.settled_at == 16
    assert advice.recommended == 32 and advice.enough and not advice.from_cache
    assert advice.changes[1:] == [0.0, 0.0] and advice.moved_most == [None, None, None]
    again = advise_calibration_size(model, _calib(steady, tmp_path), spec, cache_dir=tmp_path)
    assert again.from_cache and again.settled_at == 16
    # One bright outlier image among the last: ranges still move at 64.
    outlier = steady.copy()
    outlier[50] *= 10
    # (The cache keys on the images' hashes; these in-memory sets have none: another folder.)
    late = advise_calibration_size(model, _calib(outlier, tmp_path), spec, cache_dir=tmp_path / "2")
    assert not late.from_cache and late.settled_at is None and late.recommended == 128
    assert late.changes[-1] > 0.5 and late.moved_most[-1] is not None
    with pytest.raises(ConfigError, match="tolerance"):
        advise_calibration_size(model, _calib(steady, tmp_path), spec, tolerance=2.0)
