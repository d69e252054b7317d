"""A segmentation bundle in the runtime: output → class map → mask on the frame → areas.

Torch-free (numpy + OpenCV). Per frame, `SegmentationHead` turns the graph's one output into a
class map (`edgevision.tasks.segment.geometry.class_map`: the argmax of ``logits``, or the
graph's own ``classes``), maps it onto the original frame through the inverse of the bundle's
resize (`mask_to_frame`: pixels a centre crop cut away are 255) and reads off what the `Result`
carries: ``mask`` (the frame's class ids), each class's share of the seen pixels (``areas``)
and, when the spec names a drivable class, how far it reaches up the frame's centre line
(``free_distance``). ``label``/``score`` are the largest class but the background (class 0).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgevision.errors import ConfigError
from edgevision.spec import ModelSpec


@dataclass
class SegmentationFrame:
    """What one frame's class mask adds to its `Result`.

    ``mask`` is uint8 at the frame's resolution (255 where the model saw nothing); ``areas``
    maps every label, in class-id order, to its fraction of the seen pixels (rounded to 1e-4);
    ``free_distance`` is a fraction of the frame height, None unless the spec names a drivable
    class; ``timings`` holds ``"argmax"`` and ``"upsample"`` in ms.
    """

    mask: np.ndarray = field(repr=False)
    areas: dict[str, float]
    free_distance: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    min_area: float = 0.0  # `best` needs at least this fraction

    def _ranked(self) -> list[tuple[str, float]]:
        foreground = list(self.areas.items())[1:]  # class 0 is the background
        ranked = sorted(foreground, key=lambda kv: -kv[1])
        return [(name, share) for name, share in ranked if share > 0]

    @property
    def best(self) -> tuple[str, float] | None:
        """The largest non-background class's (label, fraction), None when no such class
        covers any pixel (or less than the head's threshold)."""
        ranked = self._ranked()
        if not ranked or ranked[0][1] < self.min_area:
            return None
        return ranked[0]

    def topk(self, k: int) -> list[tuple[str, float]]:
        """The ``k`` largest non-background classes present, with their fractions."""
        return self._ranked()[:k]

    def to_event(self) -> dict[str, Any]:
        """The JSON-ready summary of the frame: ``{"areas": {...}, "free_distance": ...}``."""
        return {"areas": dict(self.areas), "free_distance": self.free_distance}

    @property
    def summary(self) -> dict[str, Any]:
        """Same as `to_event`."""
        return self.to_event()

    def result_fields(self) -> dict[str, Any]:
        """What this frame adds to its `Result` (``mask``, ``segmentation``, ``known``)."""
        return {"mask": self.mask, "segmentation": self.to_event(), "known": self.best is not None}


class SegmentationHead:
    """Turn one segmentation bundle's output into the frame's mask and areas, frame after frame.

    ``threshold`` (optional, in [0, 1]) is the area fraction the largest non-background class
    needs for the frame to be ``known``; by default any pixel of it is enough.
    """

    stages = ("argmax", "upsample")  # the pipeline's "postprocess.<stage>" timings

    def __init__(self, spec: ModelSpec, threshold: float | None = None) -> None:
        from edgevision.tasks.segment.spec import SegmentationOptions

        options = spec.segmentation
        if not isinstance(options, SegmentationOptions):
            raise ConfigError(
                f"spec of task {spec.task!r} has no segmentation section",
                "run a segmentation bundle (its spec's task is 'segmentation')",
            )
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ConfigError(
                f"--threshold {threshold} is not an area fraction", "use a value in [0, 1]"
            )
        self.spec = spec
        self.labels = spec.labels
        self.kind = options.output
        self.output_name = options.output_name
        self.min_area = 0.0 if threshold is None else float(threshold)
        self.drivable = None if options.drivable is None else spec.labels.index(options.drivable)

    def reset(self) -> None:
        """Nothing to forget: every frame stands alone."""

    def __call__(
        self, outputs: dict[str, np.ndarray], frame_size: tuple[int, int], t: float = 0.0
    ) -> SegmentationFrame:
        """One frame's outputs (batch 1) → `SegmentationFrame`; ``frame_size`` is (w, h).

        ``t`` (the stream time) is unused: accepted for the pipeline's head interface.
        """
        from edgevision.tasks.segment.geometry import class_map, mask_to_frame
        from edgevision.tasks.segment.postprocess import area_fractions, free_distance

        try:
            output = outputs[self.output_name]
        except KeyError:
            raise ConfigError(
                f"the model's outputs {sorted(outputs)} lack {self.output_name!r} "
                f"(segmentation.output {self.kind!r})",
                "rebuild the bundle: its spec and model disagree",
            ) from None
        output = np.asarray(output)
        rank = 4 if self.kind == "logits" else 3
        if output.ndim != rank or output.shape[0] < 1:
            shape = "[batch, classes, h, w]" if rank == 4 else "[batch, H, W]"
            raise ConfigError(
                f"the model's {self.output_name!r} output has shape {tuple(output.shape)}; "
                f"expected {shape}",
                "rebuild the bundle: its spec and model disagree",
            )
        if self.kind == "logits" and output.shape[1] != len(self.labels):
            raise ConfigError(
                f"the model's logits have {output.shape[1]} classes but the spec has "
                f"{len(self.labels)} labels",
                "rebuild the bundle: its spec and model disagree",
            )
        w, h = frame_size
        t0 = time.perf_counter()
        cmap = class_map(output[0], self.kind, self.spec.input_size)
        t1 = time.perf_counter()
        mask = mask_to_frame(cmap, self.spec, w, h)
        t2 = time.perf_counter()
        shares = area_fractions(mask, len(self.labels))
        areas = {name: round(float(s), 4) for name, s in zip(self.labels, shares, strict=True)}
        free = None if self.drivable is None else round(free_distance(mask, self.drivable), 4)
        timings = {"argmax": (t1 - t0) * 1000.0, "upsample": (t2 - t1) * 1000.0}
        return SegmentationFrame(mask, areas, free, timings, self.min_area)


def runtime_head(
    spec: ModelSpec,
    threshold: float | None = None,
    tracker: Any = None,
    tracking: bool = True,
    nms: str = "agnostic",
) -> SegmentationHead:
    """The segmentation task's runtime head (`Task.runtime`); a segmenter has no boxes or
    tracks, so ``tracker``, ``tracking`` and ``nms`` are ignored."""
    return SegmentationHead(spec, threshold)
