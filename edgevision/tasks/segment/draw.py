"""Drawing a class mask on a BGR frame: what the video sink shows and the report's examples.

Torch-free (NumPy and OpenCV only), for the runtime. Every function returns a drawn copy and
leaves its input alone. A class id the palette has no colour for is left undrawn rather than
stopping a live video.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from edgevision.errors import ConfigError
from edgevision.opencv import cv2
from edgevision.tasks.segment.spec import IGNORE_INDEX

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _colors(palette: Any) -> np.ndarray:
    p = np.asarray(palette)
    if p.ndim != 2 or p.shape[1] != 3 or p.shape[0] > 256:
        raise ConfigError(
            f"a palette of shape {p.shape} cannot colour a mask",
            "pass segment.postprocess.palette(len(labels)): (n, 3) BGR",
        )
    return np.clip(p, 0, 255).astype(np.uint8)


def _canvas(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ConfigError(
            f"an image of shape {img.shape} ({img.dtype}) cannot be drawn on",
            "pass an (H, W, 3) uint8 BGR image",
        )
    return img.copy()


def overlay(
    frame_bgr: np.ndarray,
    mask: np.ndarray,
    palette: Any,
    alpha: float = 0.45,
    skip: Collection[int] = (0,),
) -> np.ndarray:
    """A copy of ``frame_bgr`` with each pixel blended towards its class's colour.

    ``mask`` is the frame's uint8 ``(H, W)`` class map (`geometry.mask_to_frame`), ``palette``
    the ``(n, 3)`` BGR colours (`postprocess.palette`); ``alpha`` is the colour's weight.
    Pixels of the classes in ``skip`` (the background by default), of 255 (unseen) and of ids
    without a palette entry keep the frame's own colour.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ConfigError(f"overlay alpha {alpha} is not in [0, 1]", "e.g. alpha=0.45")
    out = _canvas(frame_bgr)
    m = np.asarray(mask)
    if m.shape != out.shape[:2] or m.dtype != np.uint8:
        raise ConfigError(
            f"a mask of shape {m.shape} ({m.dtype}) cannot be drawn on a frame of {out.shape[:2]}",
            "map the class map onto the frame first (segment.geometry.mask_to_frame)",
        )
    colors = _colors(palette)
    lut = np.zeros((3, 256), np.uint8)  # one table per channel
    lut[:, : len(colors)] = colors.T
    draw = np.zeros(256, np.uint8)
    draw[: len(colors)] = 1
    for k in skip:
        if 0 <= int(k) < 256:
            draw[int(k)] = 0
    draw[IGNORE_INDEX] = 0
    if not m.flags.c_contiguous:
        m = np.ascontiguousarray(m)
    where = cv2.LUT(m, draw)  # OpenCV's table look-ups: ~10x numpy's fancy indexing
    if not cv2.countNonZero(where):
        return out
    painted = cv2.merge([cv2.LUT(m, lut[c]) for c in range(3)])
    blended = cv2.addWeighted(out, 1.0 - float(alpha), painted, float(alpha), 0.0)
    cv2.copyTo(blended, where, out)
    return out


def draw_legend(
    img: np.ndarray,
    labels: Sequence[str],
    palette: Any,
    areas: Mapping[str, float] | Sequence[float] | np.ndarray | None = None,
    max_rows: int = 12,
) -> np.ndarray:
    """A copy of ``img`` with a legend in its top-right corner: a colour swatch and the name of
    each class, with its area in percent when ``areas`` is given.

    ``areas`` is ``{label: fraction}`` (a `SegmentationFrame`'s ``areas``) or one fraction per
    label; with it, only classes present are listed, largest first. At most ``max_rows`` rows.
    """
    out = _canvas(img)
    colors = _colors(palette)
    names = [str(x) for x in labels]
    if areas is None:
        rows = [(k, names[k]) for k in range(len(names))]
    else:
        if isinstance(areas, Mapping):
            share = [float(areas.get(name, 0.0)) for name in names]
        else:
            share = [float(v) for v in np.asarray(areas, dtype=np.float64).reshape(-1)]
            if len(share) != len(names):
                raise ConfigError(
                    f"{len(share)} areas for {len(names)} labels", "pass one area per label"
                )
        order = sorted((k for k in range(len(names)) if share[k] > 0), key=lambda k: -share[k])
        rows = [(k, f"{names[k]} {100 * share[k]:.1f}%") for k in order]
    rows = rows[: max(0, int(max_rows))]
    if not rows:
        return out
    height, width = out.shape[:2]
    scale = float(np.clip(min(height, width) / 900, 0.35, 1.0))
    sizes = [cv2.getTextSize(text, _FONT, scale, 1) for _, text in rows]
    line = max(h + base for (_, h), base in sizes) + 4
    swatch = line - 4
    box_w = max(w for (w, _), _ in sizes) + swatch + 12
    x0 = max(0, width - box_w - 4)
    y = 4
    cv2.rectangle(out, (x0, y), (x0 + box_w, y + line * len(rows) + 4), (0, 0, 0), cv2.FILLED)
    for (k, text), ((_, h), _) in zip(rows, sizes, strict=True):
        color = tuple(int(c) for c in colors[k]) if k < len(colors) else (255, 255, 255)
        top = y + 4
        cv2.rectangle(out, (x0 + 4, top), (x0 + 4 + swatch, top + swatch), color, cv2.FILLED)
        origin = (x0 + swatch + 8, top + h + 1)
        cv2.putText(out, text, origin, _FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)
        y += line
    return out


__all__ = ["draw_legend", "overlay"]
