"""What the runtime reads off a frame's class mask: each class's area, the free distance ahead
along the drivable class, and the colours the overlay paints the classes in.

numpy + OpenCV only (the runtime). Masks are uint8 ``(h, w)`` class ids, 255 for pixels without
a class (ignored in a ground truth, unseen by the model in a prediction).
"""

from __future__ import annotations

import colorsys

import numpy as np

from edgevision.errors import ConfigError, DataError
from edgevision.opencv import cv2
from edgevision.tasks.segment.spec import IGNORE_INDEX

BACKGROUND_COLOR = (128, 128, 128)  # BGR grey for class 0 (the overlay leaves it out by default)
_GOLDEN = 0.618033988749895  # hue step: consecutive classes land far apart on the hue circle


def _mask(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2 or m.dtype != np.uint8:
        raise DataError(
            f"a segmentation mask must be a 2-D uint8 array, got {m.dtype} of shape "
            f"{tuple(m.shape)}",
            "pass one (h, w) class map (segment.geometry.class_map / mask_to_frame)",
        )
    return m


def class_counts(mask: np.ndarray) -> np.ndarray:
    """How many pixels hold each value 0..255 (int64, 256 entries; OpenCV's histogram is
    ~6x faster than `np.bincount` on a camera frame)."""
    m = _mask(mask)
    if m.size == 0:
        return np.zeros(256, np.int64)
    if m.size >= 1 << 24:  # beyond float32's exact integers
        return np.bincount(m.ravel(), minlength=256).astype(np.int64)
    if not m.flags.c_contiguous:
        m = np.ascontiguousarray(m)
    hist = cv2.calcHist([m], [0], None, [256], [0, 256])
    return hist.reshape(256).astype(np.int64)


def area_fractions(mask: np.ndarray, n_classes: int, ignore: int = IGNORE_INDEX) -> np.ndarray:
    """Each class's share of the labelled (seen) pixels: float64 ``(n_classes,)``.

    Pixels equal to ``ignore`` are left out of the denominator; ids at or above ``n_classes``
    count as seen but belong to no class (the fractions then sum to less than 1). All zeros when
    no pixel is labelled.
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
        raise ConfigError(f"n_classes {n_classes!r} is not a positive integer", "pass len(labels)")
    counts = class_counts(mask)
    seen = int(counts.sum()) - (int(counts[ignore]) if 0 <= ignore <= 255 else 0)
    out = np.zeros(n_classes, np.float64)
    if seen <= 0:
        return out
    k = min(n_classes, 256)
    out[:k] = counts[:k]
    if 0 <= ignore < n_classes:
        out[ignore] = 0.0
    return out / seen


def free_distance(mask: np.ndarray, class_id: int) -> float:
    """How far ``class_id`` (the drivable class) reaches up the image's centre column.

    From the bottom row upward, the number of consecutive ``class_id`` pixels before the first
    that is not, over the image height: 0.0 when the bottom pixel is not ``class_id``, 1.0 when
    the whole column is. A pixel of 255 (unseen) ends the run like any other class.
    """
    m = _mask(mask)
    h, w = m.shape
    if h == 0 or w == 0:
        return 0.0
    column = m[::-1, w // 2]
    stop = np.flatnonzero(column != class_id)
    run = int(stop[0]) if stop.size else h
    return run / h


def palette(n: int) -> np.ndarray:
    """``n`` distinct, deterministic BGR colours as a uint8 ``(n, 3)`` array; class ``k`` gets
    row ``k``.

    Class 0 (background by convention; `draw.overlay` skips it by default) is a neutral grey;
    the others step round the hue circle by the golden ratio, alternating brightness and
    saturation so neighbouring ids stay apart even for many classes.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ConfigError(f"palette size {n!r} is not a non-negative integer", "pass len(labels)")
    out = np.zeros((int(n), 3), np.uint8)
    for k in range(int(n)):
        out[k] = BACKGROUND_COLOR if k == 0 else _color(k)
    return out


def _color(k: int) -> tuple[int, int, int]:
    hue = (k * _GOLDEN) % 1.0
    value = 0.95 if k % 2 else 0.75
    saturation = 0.9 if (k // 2) % 2 == 0 else 0.6
    r, g, b = colorsys.hsv_to_rgb(hue, saturation, value)
    return (round(255 * b), round(255 * g), round(255 * r))


__all__ = ["BACKGROUND_COLOR", "area_fractions", "class_counts", "free_distance", "palette"]
