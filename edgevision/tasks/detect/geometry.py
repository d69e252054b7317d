"""Where a pixel of the original frame lands in the model input, for every resize mode.

`preprocess.resize` stretches, letterboxes or centre-crops a frame to the spec's input size. The
same mapping moves ground-truth boxes into the model input (training, evaluation) and moves the
detector's boxes back onto the original frame (the runtime). Coordinates are continuous pixel
edges: ``x = 0`` is the left edge of the first column and ``x = w`` the right edge of the last,
which is how ``cv2.resize`` maps a whole image. numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgevision.spec import ModelSpec


@dataclass(frozen=True)
class BoxTransform:
    """``input = frame * scale + offset`` per axis, then clipped to the input size."""

    sx: float
    sy: float
    dx: float
    dy: float
    input_w: int
    input_h: int
    frame_w: int
    frame_h: int

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """Frame-pixel ``xyxy`` boxes → model-input pixels, clipped to the input."""
        b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        out = b * np.float32([self.sx, self.sy, self.sx, self.sy])
        out += np.float32([self.dx, self.dy, self.dx, self.dy])
        return _clip(out, self.input_w, self.input_h)

    def to_frame(self, boxes: np.ndarray) -> np.ndarray:
        """Model-input ``xyxy`` boxes → original-frame pixels, clipped to the frame."""
        b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        out = b - np.float32([self.dx, self.dy, self.dx, self.dy])
        out /= np.float32([self.sx, self.sy, self.sx, self.sy])
        return _clip(out, self.frame_w, self.frame_h)


def box_transform(spec: ModelSpec, frame_w: int, frame_h: int) -> BoxTransform:
    """The mapping `preprocess.resize` applies to a ``frame_w`` x ``frame_h`` frame."""
    th, tw = spec.input_size
    w, h = int(frame_w), int(frame_h)
    if spec.resize == "stretch":
        return BoxTransform(tw / w, th / h, 0.0, 0.0, tw, th, w, h)
    if spec.resize == "letterbox":
        scale = min(th / h, tw / w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        top, left = (th - nh) // 2, (tw - nw) // 2
        return BoxTransform(nw / w, nh / h, float(left), float(top), tw, th, w, h)
    scale = max(th, tw) / spec.crop_ratio / min(h, w)  # center_crop, as in preprocess.resize
    nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
    top, left = (nh - th) // 2, (nw - tw) // 2
    return BoxTransform(nw / w, nh / h, -float(left), -float(top), tw, th, w, h)


def _clip(boxes: np.ndarray, w: int, h: int) -> np.ndarray:
    np.clip(boxes[:, 0::2], 0, w, out=boxes[:, 0::2])
    np.clip(boxes[:, 1::2], 0, h, out=boxes[:, 1::2])
    return boxes


def valid_boxes(boxes: np.ndarray, min_size: float = 1.0) -> np.ndarray:
    """A mask of boxes at least ``min_size`` pixels wide and high (after clipping)."""
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return ((b[:, 2] - b[:, 0]) >= min_size) & ((b[:, 3] - b[:, 1]) >= min_size)
