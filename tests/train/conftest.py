"""Tiny datasets and configs for training tests: 3 colour classes, a few 40x48 images each."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edgevision.train.config import TrainConfig

COLOURS = {"blue": (255, 0, 0), "green": (0, 200, 0), "red": (0, 0, 255)}


def make_folder(root: Path, per_class: int = 6, seed: int = 0) -> Path:
    """An ImageFolder of coloured discs on noise: easy enough to learn in a few steps."""
    rng = np.random.default_rng(seed)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            img = rng.integers(0, 80, (40, 48, 3), dtype=np.uint8)
            centre = (int(rng.integers(16, 32)), int(rng.integers(14, 26)))
            cv2.circle(img, centre, int(rng.integers(8, 13)), colour, -1)
            cv2.imwrite(str(root / name / f"{i:03d}.png"), img)
    return root


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    return make_folder(tmp_path / "data")


@pytest.fixture
def tiny_config(tmp_path, tiny_data):
    """A factory: a fast config on the tiny data (timm's 0.1M-parameter test_efficientnet)."""

    def make(**changes) -> TrainConfig:
        base = {
            "data": str(tiny_data),
            "out": str(tmp_path / "run"),
            "backbone": "test_efficientnet",
            "weights": None,
            "size": 32,
            "batch_size": 4,
            "epochs": 2,
            "threads": 1,
            "quiet": True,
            "augment": "light",
            "split": (0.5, 0.25, 0.25),
        }
        return TrainConfig(**{**base, **changes})

    return make
