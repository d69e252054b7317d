"""Shared fixtures: small data made in temporary folders, never downloaded."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgevision.spec import ModelSpec


@pytest.fixture
def spec() -> ModelSpec:
    return ModelSpec(labels=("a", "b", "c"), input_size=(32, 48))


@pytest.fixture
def bgr_image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(60, 80, 3), dtype=np.uint8)


@pytest.fixture
def image_file(tmp_path, bgr_image):
    path = tmp_path / "img.png"
    cv2.imwrite(str(path), bgr_image)
    return path
