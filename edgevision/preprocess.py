"""The one pixel-preparation path: a BGR uint8 frame in, the model's input tensor out.

Training (after augmentation), calibration, evaluation and the runtime all call `preprocess`,
so the tensor a model is trained on and the one it sees in the vehicle are the same bits.
numpy + OpenCV only: this runs on the device.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgevision.errors import DataError
from edgevision.opencv import cv2
from edgevision.spec import ModelSpec

_INTERP = {
    "nearest": cv2.INTER_NEAREST,
    "linear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "cubic": cv2.INTER_CUBIC,
}


def as_bgr(frame: np.ndarray) -> np.ndarray:
    """Coerce a decoded image to HxWx3 uint8 BGR (grey and BGRA are converted)."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
        kind = getattr(frame, "dtype", type(frame).__name__)
        raise DataError(f"a frame must be a uint8 numpy array, got {kind}", "decode with OpenCV")
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return frame
    raise DataError(f"a frame must be HxW, HxWx3 or HxWx4, got shape {frame.shape}")


def resize(frame: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Resize/crop/pad a BGR frame to the spec's input size (still uint8)."""
    h, w = frame.shape[:2]
    th, tw = spec.input_size
    interp = _INTERP[spec.interpolation]
    if h == 0 or w == 0:
        raise DataError(f"a frame has an empty shape {frame.shape}")
    if spec.resize == "stretch":
        return cv2.resize(frame, (tw, th), interpolation=interp)
    if spec.resize == "letterbox":
        scale = min(th / h, tw / w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        small = cv2.resize(frame, (nw, nh), interpolation=interp)
        out = np.full((th, tw, 3), spec.pad_value, dtype=np.uint8)
        top, left = (th - nh) // 2, (tw - nw) // 2
        out[top : top + nh, left : left + nw] = small
        return out
    # center_crop: shorter side to size / crop_ratio, then the centre.
    scale = max(th, tw) / spec.crop_ratio / min(h, w)
    nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
    big = cv2.resize(frame, (nw, nh), interpolation=interp)
    top, left = (nh - th) // 2, (nw - tw) // 2
    return big[top : top + th, left : left + tw]


def _normalizer(spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    mean = np.asarray(spec.mean, dtype=np.float32) * np.float32(255.0)
    inv_std = np.float32(1.0) / (np.asarray(spec.std, dtype=np.float32) * np.float32(255.0))
    return mean, inv_std


def preprocess(frame: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """One BGR uint8 frame → float32 tensor of shape ``spec.input_shape(1)``.

    Computes ``(float32(pixel) - mean * 255) * (1 / (std * 255))`` per channel; the channel
    swap and the NCHW transpose happen on the uint8 view, and the arithmetic writes straight
    into the output (no float temporaries): ~3x faster than the naive numpy chain on a
    camera frame, with the same bits.
    """
    img = resize(as_bgr(frame), spec)
    if spec.channel_order == "RGB":
        img = img[:, :, ::-1]
    mean, inv_std = _normalizer(spec)
    if spec.layout == "NCHW":
        img = img.transpose(2, 0, 1)
        mean, inv_std = mean[:, None, None], inv_std[:, None, None]
    out = np.empty((1, *img.shape), dtype=np.float32)
    np.subtract(img, mean, out=out[0], dtype=np.float32)
    np.multiply(out[0], inv_std, out=out[0])
    return out


def preprocess_batch(frames: Sequence[np.ndarray], spec: ModelSpec) -> np.ndarray:
    """Several frames → one float32 batch (N, …) in the spec's layout."""
    if len(frames) == 0:
        raise DataError("preprocess_batch got no frames", "pass at least one frame")
    return np.concatenate([preprocess(f, spec) for f in frames], axis=0)
