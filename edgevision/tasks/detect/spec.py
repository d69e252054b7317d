"""What a detector's ModelSpec carries beyond the pixels: its outputs and how to read them.

Torch-free. The graph ends in two tensors with a fixed candidate count ``K`` (no data-dependent
shapes, so TensorRT 10.3 on JetPack 6 builds it well and INT8 keeps the scores apart from the
pixel-scale boxes):

* ``boxes``  ``[batch, K, 4]``  ``x0, y0, x1, y1`` in model-input pixels, decoded in the graph;
* ``scores`` ``[batch, K, classes]`` per-class confidences in ``[0, 1]`` (sigmoid).

Non-maximum suppression, the score threshold and ``max_detections`` are the runtime's job.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from edgevision.errors import SpecError
from edgevision.tasks.spec_section import read_section

BOXES = "boxes"
SCORES = "scores"
OUTPUTS = {
    BOXES: "[batch, K, 4] float: x0, y0, x1, y1 in model-input pixels",
    SCORES: "[batch, K, classes] float: per-class confidence in [0, 1]",
}
MAX_CANDIDATES = 10_000


@dataclass(frozen=True)
class DetectionOptions:
    """A detector's output contract and the defaults its runtime applies."""

    candidates: int = 100  # K: top-K candidates the graph keeps (fixed shape)
    score_threshold: float = 0.3
    iou_threshold: float = 0.6  # class-aware NMS
    max_detections: int = 100
    box_format: str = "xyxy"
    outputs: tuple[str, str] = (BOXES, SCORES)

    def __post_init__(self) -> None:
        object.__setattr__(self, "outputs", tuple(str(x) for x in self.outputs))
        self.validate()

    def validate(self) -> None:
        """Raise `SpecError` naming the first bad field and the fix."""
        checks = (
            (
                "candidates",
                self.candidates,
                _whole(self.candidates, 1, MAX_CANDIDATES),
                f"a whole number in 1..{MAX_CANDIDATES}, e.g. 100",
            ),
            (
                "score_threshold",
                self.score_threshold,
                _unit(self.score_threshold),
                "a value in [0, 1], e.g. 0.3",
            ),
            (
                "iou_threshold",
                self.iou_threshold,
                _unit(self.iou_threshold),
                "a value in [0, 1], e.g. 0.6",
            ),
            (
                "max_detections",
                self.max_detections,
                _whole(self.max_detections, 1, MAX_CANDIDATES),
                f"a whole number in 1..{MAX_CANDIDATES}, e.g. 100",
            ),
        )
        for name, value, ok, fix in checks:
            if not ok:
                raise SpecError(
                    f"ModelSpec detection.{name} {value!r} is out of range", f"use {fix}"
                )
        if self.box_format != "xyxy":
            raise SpecError(
                f"ModelSpec detection.box_format {self.box_format!r} is not supported",
                "export boxes as x0, y0, x1, y1 in model-input pixels ('xyxy')",
            )
        if self.outputs != (BOXES, SCORES):
            raise SpecError(
                f"ModelSpec detection.outputs {list(self.outputs)} is not the detection contract",
                f"name the outputs {BOXES!r} ({OUTPUTS[BOXES]}) and {SCORES!r} ({OUTPUTS[SCORES]})",
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["outputs"] = list(d["outputs"])
        return d

    @classmethod
    def from_dict(cls, data: Any) -> DetectionOptions:
        """Strictly read the ``detection`` section of a spec."""
        return read_section(cls, data, "detection", '{"candidates": 100, "score_threshold": 0.3}')


def _whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _unit(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0.0 <= value <= 1.0
    )
