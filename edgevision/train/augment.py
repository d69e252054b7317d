"""Training augmentations on the uint8 BGR image, before `preprocess` (numpy + OpenCV).

Augmenting before `preprocess` keeps one pixel path: the network always sees
``preprocess(image, spec)``, only the image changes. Every op draws from the generator it is
given, so a sample's augmentation is a function of (seed, epoch, index) alone — reproducible
with any number of workers or ranks.

A horizontal flip turns one road sign into another ("turn left" ↔ "turn right"), so it is
off unless asked for (``hflip=True``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edgevision.opencv import cv2
from edgevision.registry import Registry

Op = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class RandomCrop:
    """A random sub-window of ``scale`` of the area, aspect ratio jittered by ``ratio``."""

    scale: tuple[float, float] = (0.7, 1.0)
    ratio: tuple[float, float] = (0.8, 1.25)

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = img.shape[:2]
        area = h * w * rng.uniform(*self.scale)
        aspect = math.exp(rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
        ch = min(h, max(1, round(math.sqrt(area / aspect))))
        cw = min(w, max(1, round(math.sqrt(area * aspect))))
        top = int(rng.integers(0, h - ch + 1))
        left = int(rng.integers(0, w - cw + 1))
        return img[top : top + ch, left : left + cw]


@dataclass(frozen=True)
class RandomRotate:
    """Rotation by up to ``degrees`` either way (a camera that is not quite level)."""

    degrees: float = 10.0

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = img.shape[:2]
        angle = rng.uniform(-self.degrees, self.degrees)
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        return cv2.warpAffine(img, matrix, (w, h), borderMode=cv2.BORDER_REFLECT_101)


@dataclass(frozen=True)
class ColorJitter:
    """Brightness, contrast and saturation scaled by up to ±``strength`` (dusk, glare)."""

    strength: float = 0.25

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        b, c, s = (1.0 + rng.uniform(-self.strength, self.strength) for _ in range(3))
        x = img.astype(np.float32)
        grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)[..., None]
        x = grey + (x - grey) * s  # saturation: blend with the grey image
        x = (x - grey.mean()) * c + grey.mean()  # contrast around the mean brightness
        return np.clip(x * b, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class RandomBlur:
    """Gaussian blur with probability ``p`` (focus, motion at speed)."""

    p: float = 0.2
    max_sigma: float = 1.2

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() >= self.p:
            return img
        return cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, self.max_sigma))


@dataclass(frozen=True)
class HorizontalFlip:
    """Mirror with probability ``p``: only for classes that are symmetric under a flip."""

    p: float = 0.5

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return cv2.flip(img, 1) if rng.random() < self.p else img


# preset name → ops applied in order.
PRESETS: Registry[tuple[Op, ...]] = Registry("augmentation preset")
PRESETS.register("none", ())
PRESETS.register("light", (RandomCrop(scale=(0.85, 1.0)), ColorJitter(0.15)))
PRESETS.register("default", (RandomCrop(), RandomRotate(10.0), ColorJitter(0.25)))
PRESETS.register(
    "strong",
    (RandomCrop(scale=(0.5, 1.0)), RandomRotate(15.0), ColorJitter(0.4), RandomBlur(0.3)),
)


class Augmenter:
    """The ops of a preset (plus an optional flip), applied to one BGR uint8 image."""

    def __init__(self, preset: str = "default", hflip: bool = False) -> None:
        self.ops: tuple[Op, ...] = PRESETS.get(preset) + ((HorizontalFlip(),) if hflip else ())

    def __bool__(self) -> bool:
        return bool(self.ops)

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for op in self.ops:
            img = op(img, rng)
        return np.ascontiguousarray(img)
