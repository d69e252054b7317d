"""What a segmentation model's ModelSpec carries beyond the pixels: its output and its classes.

Torch-free. The graph ends in one tensor, of one of two kinds (``output``):

* ``"logits"``: ``logits`` ``[batch, classes, h, w]`` float at a reduced resolution (the
  decoder's stride, e.g. 1/8 of the input); the runtime takes the argmax and scales the class
  map to the frame;
* ``"classmap"``: ``classes`` ``[batch, H, W]`` uint8 at the model input's resolution (the
  logits upsampled bilinearly and the argmax taken in the graph); the runtime only maps it to
  the frame.

Labels are the class names in class-id order; ``ignore_index`` (255) marks pixels without a
label in the dataset's masks (never a class). ``drivable`` names the class whose free distance
ahead the runtime reports (None: not reported).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from edgevision.errors import SpecError
from edgevision.tasks.spec_section import read_section

LOGITS = "logits"
CLASSES = "classes"
OUTPUT_KINDS = {
    "logits": (LOGITS, "[batch, classes, h, w] float: per-class logits at a reduced resolution"),
    "classmap": (CLASSES, "[batch, H, W] uint8: the class id of every model-input pixel"),
}
IGNORE_INDEX = 255
MAX_CLASSES = 255  # ids 0..254; 255 is the ignore value


@dataclass(frozen=True)
class SegmentationOptions:
    """A segmentation model's output contract and what its runtime reports."""

    output: str = "logits"  # "logits" or "classmap" (see the module docstring)
    ignore_index: int = IGNORE_INDEX
    drivable: str | None = None  # the label whose free distance ahead is reported

    def __post_init__(self) -> None:
        self.validate()

    @property
    def output_name(self) -> str:
        """The graph output's name for this kind."""
        return OUTPUT_KINDS[self.output][0]

    @property
    def outputs(self) -> tuple[str]:
        return (self.output_name,)

    def validate(self) -> None:
        """Raise `SpecError` naming the first bad field and the fix."""
        if self.output not in OUTPUT_KINDS:
            raise SpecError(
                f"ModelSpec segmentation.output {self.output!r} is not valid",
                "use 'logits' ([batch, classes, h, w] float) or 'classmap' "
                "([batch, H, W] uint8 class ids)",
            )
        if self.ignore_index != IGNORE_INDEX:
            raise SpecError(
                f"ModelSpec segmentation.ignore_index {self.ignore_index!r} is not supported",
                f"mark unlabelled mask pixels with {IGNORE_INDEX}",
            )
        if self.drivable is not None and (not isinstance(self.drivable, str) or not self.drivable):
            raise SpecError(
                f"ModelSpec segmentation.drivable {self.drivable!r} is not a label name",
                "name one of the labels (e.g. 'road'), or null",
            )

    def check_labels(self, labels: tuple[str, ...]) -> None:
        """The fields that refer to labels must name one; at most `MAX_CLASSES` classes."""
        if len(labels) > MAX_CLASSES:
            raise SpecError(
                f"ModelSpec has {len(labels)} labels; a segmentation mask holds ids 0..254",
                f"use at most {MAX_CLASSES} classes",
            )
        if self.drivable is not None and self.drivable not in labels:
            raise SpecError(
                f"ModelSpec segmentation.drivable {self.drivable!r} is not one of the labels "
                f"{list(labels)}",
                "name one of the labels, or null",
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> SegmentationOptions:
        """Strictly read the ``segmentation`` section of a spec."""
        return read_section(cls, data, "segmentation", '{"output": "logits", "drivable": "road"}')
