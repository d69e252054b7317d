"""ModelSpec: what travels with a model from training to the vehicle.

Written by `train`, copied into a bundle's manifest, read by the runtime. `preprocess()` is driven
by it alone, so training and deployment cannot disagree about channel order, resizing or
normalisation.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgevision.errors import SpecError
from edgevision.fileio import check_version, read_json
from edgevision.tasks import TASKS, get_task

SCHEMA_VERSION = 2  # version 1 (before the task layer) is read as a classification spec
CHANNEL_ORDERS = ("RGB", "BGR")
RESIZE_MODES = ("stretch", "letterbox", "center_crop")
INTERPOLATIONS = ("nearest", "linear", "area", "cubic")
LAYOUTS = ("NCHW", "NHWC")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_MAX_SIDE = 4096


@dataclass(frozen=True)
class ModelSpec:
    """The model's contract with the pixels it is fed.

    ``mean``/``std`` apply to pixels scaled to [0, 1], in the model's channel order.
    ``crop_ratio`` is used by ``center_crop``: the shorter side is resized to
    ``size / crop_ratio`` and the centre ``size`` is cut out (timm's convention).
    """

    labels: tuple[str, ...]
    input_size: tuple[int, int] = (224, 224)  # (height, width)
    task: str = "classification"
    channel_order: str = "RGB"
    resize: str = "stretch"
    crop_ratio: float = 0.875
    interpolation: str = "linear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    layout: str = "NCHW"
    pad_value: int = 0
    detection: Any = None  # DetectionOptions when task == "detection" (made with defaults)
    segmentation: Any = None  # SegmentationOptions when task == "segmentation"
    schema_version: int = field(default=SCHEMA_VERSION)

    def __post_init__(self) -> None:
        task = get_task(self.task) if self.task in TASKS else None
        if task is not None and task.options_key is not None:  # the task's own section
            value = getattr(self, task.options_key)
            if not isinstance(value, task.options):
                value = task.options() if value is None else task.options.from_dict(value)
                object.__setattr__(self, task.options_key, value)
        object.__setattr__(self, "labels", tuple(str(x) for x in self.labels))
        object.__setattr__(self, "input_size", tuple(int(x) for x in self.input_size))
        object.__setattr__(self, "mean", tuple(float(x) for x in self.mean))
        object.__setattr__(self, "std", tuple(float(x) for x in self.std))
        self.validate()

    @property
    def num_classes(self) -> int:
        """How many class labels the model predicts."""
        return len(self.labels)

    @property
    def height(self) -> int:
        return self.input_size[0]

    @property
    def width(self) -> int:
        return self.input_size[1]

    def input_shape(self, batch: int | str = 1) -> tuple[int | str, ...]:
        """The model input's shape for ``batch`` images, in the spec's layout."""
        h, w = self.input_size
        return (batch, 3, h, w) if self.layout == "NCHW" else (batch, h, w, 3)

    def validate(self) -> None:
        """Raise `SpecError` naming the first bad field and the fix."""
        check_version(
            self.schema_version,
            SCHEMA_VERSION,
            "ModelSpec",
            SpecError,
            "rebuild the model or bundle with this edgevision version",
        )
        _choice("task", self.task, tuple(TASKS.names()))
        task = get_task(self.task)
        for name in TASK_SECTIONS:
            if name != task.options_key and getattr(self, name) is not None:
                raise SpecError(
                    f"ModelSpec has a {name!r} section but its task is {self.task!r}",
                    "remove the section, or set task to the one it belongs to",
                )
        section = getattr(self, task.options_key) if task.options_key else None
        if hasattr(section, "check_labels"):  # fields that name a label must name one
            section.check_labels(self.labels)
        _choice("channel_order", self.channel_order, CHANNEL_ORDERS)
        _choice("resize", self.resize, RESIZE_MODES)
        _choice("interpolation", self.interpolation, INTERPOLATIONS)
        _choice("layout", self.layout, LAYOUTS)
        if len(self.labels) < task.min_labels:
            raise SpecError(
                f"ModelSpec labels has {len(self.labels)} class(es): {list(self.labels)}",
                f"a {self.task} model needs at least {task.min_labels} label(s)",
            )
        if len(set(self.labels)) != len(self.labels) or any(not x for x in self.labels):
            raise SpecError(
                f"ModelSpec labels must be unique and non-empty: {list(self.labels)}",
                "rename the duplicate or empty labels",
            )
        if len(self.input_size) != 2 or not all(8 <= s <= _MAX_SIDE for s in self.input_size):
            raise SpecError(
                f"ModelSpec input_size {list(self.input_size)} is out of range",
                f"give [height, width], each between 8 and {_MAX_SIDE}",
            )
        if not (0.0 < self.crop_ratio <= 1.0):
            raise SpecError(
                f"ModelSpec crop_ratio {self.crop_ratio} is out of range",
                "use a value in (0, 1], e.g. 0.875",
            )
        for name, values, low in (("mean", self.mean, -10.0), ("std", self.std, 1e-6)):
            if len(values) != 3 or not all(math.isfinite(v) and low <= v <= 10.0 for v in values):
                raise SpecError(
                    f"ModelSpec {name} {list(values)} is invalid",
                    f"give 3 finite values for pixels scaled to [0, 1]; std must be > 0 "
                    f"(ImageNet: mean {list(IMAGENET_MEAN)}, std {list(IMAGENET_STD)})",
                )
        if not (0 <= self.pad_value <= 255):
            raise SpecError(f"ModelSpec pad_value {self.pad_value} is out of range", "use 0..255")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (lists, not tuples)."""
        d = asdict(self)
        for key in ("labels", "input_size", "mean", "std"):
            d[key] = list(d[key])
        for name in TASK_SECTIONS:  # a task's section only where the task has one
            section = getattr(self, name)
            if section is None:
                del d[name]
            else:
                d[name] = section.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: Any, num_outputs: int | None = None) -> ModelSpec:
        """Strictly load a spec; ``num_outputs`` (a model's class count) must match the labels."""
        if not isinstance(data, dict):
            raise SpecError(f"ModelSpec must be a JSON object, got {type(data).__name__}")
        data = _upgrade(data)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known - {"num_classes"})
        if unknown:
            raise SpecError(
                f"ModelSpec has unknown field(s): {', '.join(unknown)}",
                f"valid fields are: {', '.join(sorted(known))}",
            )
        if "labels" not in data:
            raise SpecError("ModelSpec is missing the field 'labels'", "list the class labels")
        if not isinstance(data["labels"], list):
            raise SpecError("ModelSpec labels must be a list of strings")
        declared = data.get("num_classes")
        if declared is not None and declared != len(data["labels"]):
            raise SpecError(
                f"ModelSpec num_classes is {declared} but labels has {len(data['labels'])} entries",
                "make the label list match the model's class count",
            )
        kwargs = {k: v for k, v in data.items() if k in known}
        try:
            spec = cls(**kwargs)
        except SpecError:
            raise
        except (TypeError, ValueError) as exc:
            raise SpecError(f"ModelSpec has a value of the wrong type: {exc}") from None
        if num_outputs is not None and num_outputs != spec.num_classes:
            raise SpecError(
                f"the model predicts {num_outputs} classes but the ModelSpec has "
                f"{spec.num_classes} labels",
                "use the spec that was written with this model",
            )
        return spec

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the spec as JSON (atomically)."""
        from edgevision.fileio import atomic_write_text

        return atomic_write_text(path, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str], num_outputs: int | None = None) -> ModelSpec:
        """Read a spec JSON file strictly."""
        data = read_json(path, "ModelSpec file", SpecError)
        return cls.from_dict(data, num_outputs=num_outputs)


TASK_SECTIONS = ("detection", "segmentation")  # ModelSpec fields owned by one task each


def _upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A spec dict of any readable version as the current version (version 1: classification)."""
    version = data.get("schema_version")
    if version == 1 and not isinstance(version, bool):
        if data.get("task", "classification") != "classification":
            raise SpecError(
                f"ModelSpec schema_version 1 has task {data.get('task')!r}; version 1 specs are "
                "classification only",
                f"write the spec with schema_version {SCHEMA_VERSION}",
            )
        extra = sorted(set(data) & set(TASK_SECTIONS))
        if extra:
            raise SpecError(
                f"ModelSpec schema_version 1 has a {extra[0]!r} section (new in version 2)",
                f"write the spec with schema_version {SCHEMA_VERSION}",
            )
        return {**data, "schema_version": SCHEMA_VERSION}
    check_version(
        version,
        SCHEMA_VERSION,
        "ModelSpec",
        SpecError,
        f"write the spec with schema_version {SCHEMA_VERSION} (or 1 for a classifier), or "
        "rebuild with this edgevision",
    )
    return data


def _choice(name: str, value: Any, options: tuple[str, ...]) -> None:
    if value not in options:
        raise SpecError(
            f"ModelSpec {name} {value!r} is not valid", f"use one of: {', '.join(options)}"
        )
