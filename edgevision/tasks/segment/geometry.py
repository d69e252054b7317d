"""Class maps between the model input and the original frame, for every resize mode.

`preprocess.resize` stretches, letterboxes or centre-crops a frame to the spec's input size;
`edgevision.tasks.detect.geometry.box_transform` is that mapping as ``input = frame * s + d``
per axis in continuous pixel-edge coordinates. Both directions here sample through it, nearest
neighbour at pixel centres:

* `mask_to_frame`: a class map over the model input, at the input's resolution or a reduced
  one (a decoder's stride, e.g. H/8 x W/8: one map cell covers ``input / map`` pixels per axis),
  onto the original frame; frame pixels the model never saw (cut away by a centre crop) are
  255. It runs per frame in the runtime: the sampled rows and columns are computed once per
  (map, frame) geometry and cached, and the map is gathered columns first, then rows (a
  C-contiguous result, ~0.1 ms for a 640 x 480 frame).
* `mask_to_input`: a ground-truth mask into the model input the way the image went (letterbox
  bars are 255, ignored).

`class_map` turns one image's graph output (logits or class ids) into a uint8 class map.
numpy only (OpenCV is not needed): this runs on the device.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from edgevision.errors import ConfigError, DataError
from edgevision.spec import ModelSpec
from edgevision.tasks.detect.geometry import BoxTransform, box_transform
from edgevision.tasks.segment.spec import IGNORE_INDEX, OUTPUT_KINDS

_MAX_ID = 254  # ids 0..254 are classes; 255 marks ignore / unseen


def class_map(output: np.ndarray, kind: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """One image's graph output → its uint8 ``(h, w)`` class map.

    ``kind`` is the spec's ``segmentation.output``: ``"logits"`` takes a ``[C, h, w]`` array
    and returns its argmax over ``C`` -- with ``size`` (height, width; the model input's) after
    upsampling the logits bilinearly to it (half-pixel centres, as training's
    ``F.interpolate(align_corners=False)``): a stride-8 argmax scaled up by nearest neighbour
    loses thin classes (lane markings: 52 -> 40 IoU on the synthetic scenes), the upsampled
    logits keep what training measured. ``"classmap"`` takes the ``[H, W]`` class ids as they
    are (uint8 is returned without a copy; other integer types are converted). A batch
    dimension must be removed first (``outputs[name][0]``). A shape or kind that does not fit
    is a `ConfigError`: the model and its spec disagree.
    """
    if kind not in OUTPUT_KINDS:
        raise ConfigError(
            f"segmentation output kind {kind!r} is not known",
            f"use one of {sorted(OUTPUT_KINDS)} (the spec's segmentation.output)",
        )
    out = np.asarray(output)
    if kind == "logits":
        if out.ndim != 3 or 0 in out.shape:
            raise ConfigError(
                f"segmentation logits of one image must be [classes, h, w], got shape "
                f"{tuple(out.shape)}",
                "pass outputs['logits'][0]; a wrong rank means the model and its spec disagree",
            )
        if out.shape[0] > _MAX_ID + 1:
            raise ConfigError(
                f"segmentation logits have {out.shape[0]} classes; a class map holds ids 0..254",
                "use at most 255 classes",
            )
        if size is not None and tuple(out.shape[1:]) != tuple(size):
            return _argmax_channels(_upsample(out, size))
        return np.argmax(out, axis=0).astype(np.uint8)
    if out.ndim != 2 or 0 in out.shape:
        raise ConfigError(
            f"a segmentation class map of one image must be [H, W], got shape {tuple(out.shape)}",
            "pass outputs['classes'][0]; a wrong rank means the model and its spec disagree",
        )
    if out.dtype == np.uint8:
        return out
    if not np.issubdtype(out.dtype, np.integer):
        raise ConfigError(
            f"a segmentation class map must hold integer class ids, got {out.dtype}",
            "end the graph in ArgMax + Cast(uint8), or set segmentation.output to 'logits'",
        )
    if out.min() < 0 or out.max() > IGNORE_INDEX:
        raise ConfigError(
            f"a segmentation class map holds ids {int(out.min())}..{int(out.max())}, "
            "outside 0..255",
            "the graph's class ids must fit uint8",
        )
    return out.astype(np.uint8)


def mask_to_frame(class_map: np.ndarray, spec: ModelSpec, frame_w: int, frame_h: int) -> np.ndarray:
    """A class map over the model input → a uint8 ``(frame_h, frame_w)`` mask of the frame.

    The map may be at the input's resolution or a reduced one (the scale per axis is input
    size / map size); every frame pixel takes the class of the map cell its centre lands on
    through ``spec.resize`` (nearest). Frame pixels outside what the model saw (the sides a
    ``center_crop`` cut away) are 255.
    """
    cmap = _as_map(class_map, "class map")
    w, h = _frame_size(frame_w, frame_h)
    mh, mw = cmap.shape
    t = box_transform(spec, w, h)
    rows, cols, outside = _frame_index(t.sy, t.dy, t.input_h, mh, h, t.sx, t.dx, t.input_w, mw, w)
    if outside:  # the index past the last row / column is the pad of 255
        cmap = _padded(cmap)
    return cmap[:, cols][rows]  # columns first: the row gather then writes C order


def mask_to_input(mask: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """A ground-truth mask of the frame → a uint8 ``spec.input_size`` mask of the model input.

    The mask moves exactly as `preprocess.resize` moves the image (nearest neighbour at pixel
    centres, so class ids are never blended); input pixels with no frame pixel under them
    (letterbox bars) are 255, ignored.
    """
    m = _as_map(mask, "mask")
    h, w = m.shape
    t = box_transform(spec, w, h)
    rows, cols, outside = _input_index(t)
    if outside:
        m = _padded(m)
    return m[:, cols][rows]


def _padded(m: np.ndarray) -> np.ndarray:
    """``m`` with an extra last row and column of 255 (where unseen pixels sample)."""
    out = np.full((m.shape[0] + 1, m.shape[1] + 1), IGNORE_INDEX, np.uint8)
    out[:-1, :-1] = m
    return out


def _as_map(arr: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(arr)
    if a.ndim != 2 or 0 in a.shape:
        raise DataError(
            f"a segmentation {what} must be a 2-D (h, w) array of class ids, got shape "
            f"{tuple(a.shape)}",
            "pass one single-channel map (read PNG masks with IMREAD_UNCHANGED)",
        )
    if a.dtype == np.uint8:
        return a
    if not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
        raise DataError(
            f"a segmentation {what} must hold integer class ids, got {a.dtype}",
            "pass a uint8 map (255 = ignore)",
        )
    if a.size and (a.min() < 0 or a.max() > IGNORE_INDEX):
        raise DataError(
            f"a segmentation {what} holds ids {int(a.min())}..{int(a.max())}, outside 0..255",
            "class ids are 0..254, 255 marks unlabelled pixels",
        )
    return a.astype(np.uint8)


def _frame_size(frame_w: int, frame_h: int) -> tuple[int, int]:
    w, h = int(frame_w), int(frame_h)
    if w <= 0 or h <= 0 or w != frame_w or h != frame_h:
        raise DataError(
            f"frame size {frame_w} x {frame_h} is not a positive whole number of pixels",
            "pass the frame's width and height (frame.shape[1], frame.shape[0])",
        )
    return w, h


def _sample(n_out: int, scale: float, offset: float, n_src: int) -> tuple[np.ndarray, bool]:
    """For each of ``n_out`` pixels, the source cell its centre lands on through
    ``src = (out_centre - offset) * scale``; ``n_src`` (the pad) where it lands outside."""
    pos = (np.arange(n_out, dtype=np.float64) + 0.5 - offset) * scale
    idx = np.floor(pos).astype(np.intp)
    bad = (idx < 0) | (idx >= n_src)
    if bad.any():
        idx[bad] = n_src  # the pad row / column after the last
    idx.flags.writeable = False  # cached and shared
    return idx, bool(bad.any())


@lru_cache(maxsize=64)
def _frame_index(
    sy: float,
    dy: float,
    input_h: int,
    map_h: int,
    frame_h: int,
    sx: float,
    dx: float,
    input_w: int,
    map_w: int,
    frame_w: int,
) -> tuple[np.ndarray, np.ndarray, bool]:
    # frame centre f → input u = f * s + d → map cell u * map / input; as `_sample`:
    # map = (f - (-d / s)) * (s * map / input)
    rows, out_r = _sample(frame_h, sy * map_h / input_h, -dy / sy, map_h)
    cols, out_c = _sample(frame_w, sx * map_w / input_w, -dx / sx, map_w)
    return rows, cols, out_r or out_c


@lru_cache(maxsize=64)
def _input_index(t: BoxTransform) -> tuple[np.ndarray, np.ndarray, bool]:
    # input centre u → frame f = (u - d) / s
    rows, out_r = _sample(t.input_h, 1.0 / t.sy, t.dy, t.frame_h)
    cols, out_c = _sample(t.input_w, 1.0 / t.sx, t.dx, t.frame_w)
    return rows, cols, out_r or out_c


__all__ = ["class_map", "mask_to_frame", "mask_to_input"]


def _upsample(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``[C, h, w]`` logits → ``[H, W, C]`` float32, bilinear with half-pixel centres."""
    from edgevision.opencv import cv2

    hwc = np.ascontiguousarray(logits.transpose(1, 2, 0), dtype=np.float32)
    out = cv2.resize(hwc, (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)
    return out[:, :, None] if out.ndim == 2 else out


def _argmax_channels(hwc: np.ndarray) -> np.ndarray:
    """The argmax over the last axis as uint8 (the first maximum wins, as ``np.argmax``); a
    compare per class is faster than ``np.argmax`` over a short last axis."""
    best = hwc[:, :, 0].copy()
    ids = np.zeros(best.shape, dtype=np.uint8)
    for c in range(1, hwc.shape[2]):
        channel = hwc[:, :, c]
        ids[channel > best] = c
        np.maximum(best, channel, out=best)
    return ids
