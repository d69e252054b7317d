"""The Task interface and the registry of tasks.

A `Task` is a small, torch-free record: the spec section it owns, how many labels it needs, and
where its heavier parts live as ``"module:attribute"`` strings, imported on first use:

* ``trainer``: the torch side (model on a timm ``features_only`` backbone, loss and target
  encoding, datasets, evaluation during training, the run report), used by `edgevision train`
  and by the exporter;
* ``builder``: the hooks `edgevision build` takes (edgevision.tasks.building): output names,
  the user-ONNX contract, the evaluation metric, the export check, the float-by-default layers;
* ``data``: the torch-free dataset reader (``is_dataset(path)`` lets `train` infer the task).

The runtime-side pieces (postprocess, drawing, metrics) sit in the task's package beside them,
torch-free.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from edgevision.registry import Registry


@dataclass(frozen=True)
class Task:
    """One task: its name in ``ModelSpec.task`` and the pieces the stages look up."""

    name: str
    summary: str
    min_labels: int
    trainer: str  # "module:attribute" of the torch-side hooks (edgevision.tasks.*.train)
    builder: str = ""  # "module:attribute" of the build hooks (edgevision.tasks.*.build)
    options_key: str | None = None  # the spec section this task owns, e.g. "detection"
    options: type | None = None  # its dataclass, with from_dict / to_dict / validate
    is_dataset: str | None = None  # "module:function": does this folder hold this task's data?
    # "module:function" making the runtime's per-frame head (torch-free):
    # ``(spec, threshold=, tracker=, tracking=) -> head``; empty: the classifier's softmax
    runtime: str = ""

    def load(self, ref: str) -> Any:
        """Import a ``"module:attribute"`` reference of this task."""
        module, _, attr = ref.partition(":")
        return getattr(importlib.import_module(module), attr)

    def training(self) -> Any:
        """The torch-side hooks (imports torch)."""
        return self.load(self.trainer)

    def building(self) -> Any:
        """The build hooks (`edgevision.tasks.building.BuildHooks`)."""
        return self.load(self.builder)

    def holds_data(self, path: Any) -> bool:
        """True when ``path`` looks like a dataset of this task."""
        return bool(self.is_dataset) and bool(self.load(self.is_dataset)(path))


def _registry() -> Registry[Task]:
    from edgevision.tasks.detect.spec import DetectionOptions
    from edgevision.tasks.segment.spec import SegmentationOptions

    tasks: Registry[Task] = Registry("task")
    tasks.register(
        "classification",
        Task(
            name="classification",
            summary="one label per image",
            min_labels=2,
            trainer="edgevision.tasks.classify.train:TRAINER",
            builder="edgevision.tasks.classify.build:BUILD",
        ),
    )
    tasks.register(
        "detection",
        Task(
            name="detection",
            summary="boxes with labels and scores; NMS and tracking in the runtime",
            min_labels=1,
            trainer="edgevision.tasks.detect.train:TRAINER",
            builder="edgevision.tasks.detect.build:BUILD",
            options_key="detection",
            options=DetectionOptions,
            is_dataset="edgevision.data.detection:is_detection_dataset",
            runtime="edgevision.runtime.detect:runtime_head",
        ),
    )
    tasks.register(
        "segmentation",
        Task(
            name="segmentation",
            summary="a class per pixel; the mask mapped back onto the frame in the runtime",
            min_labels=2,
            trainer="edgevision.tasks.segment.train:TRAINER",
            builder="edgevision.tasks.segment.build:BUILD",
            options_key="segmentation",
            options=SegmentationOptions,
            is_dataset="edgevision.data.segmentation:is_segmentation_dataset",
            runtime="edgevision.runtime.segment:runtime_head",
        ),
    )
    return tasks


TASKS: Registry[Task] = _registry()


def get_task(name: str) -> Task:
    """The task registered as ``name``; an unknown name lists the valid ones."""
    return TASKS.get(name)


def infer_task(data: Any) -> str:
    """The task whose dataset layout ``data`` has (classification when none claims it)."""
    for name in TASKS:
        if get_task(name).holds_data(data):
            return name
    return "classification"
