"""What `build` starts from: a checkpoint from `edgevision train`, or an ONNX file plus a spec."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgevision.errors import BuildError, SpecError
from edgevision.fileio import sha256_file
from edgevision.spec import ModelSpec

if TYPE_CHECKING:
    import torch

    from edgevision.data.split import Split

SPLIT_FILE = "split.json"
MIN_OPSET = 13  # per-axis Q/DQ (per-channel weights) needs opset 13


@dataclass
class ModelSource:
    """A loaded build input.

    ``kind`` is ``"checkpoint"`` (``model`` is the torch module in eval mode, ``split`` the
    training run's split when ``RUN/split.json`` exists) or ``"onnx"`` (``onnx_path`` is the
    user's model, ``model`` is None).
    """

    kind: str
    path: Path
    spec: ModelSpec
    model: torch.nn.Module | None = None
    onnx_path: Path | None = None
    split: Split | None = None
    backbone: str | None = None
    notes: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """What the manifest says about the input (lets the torch reference find it again)."""
        rec: dict[str, Any] = {"kind": self.kind, "path": str(self.path.resolve())}
        rec["sha256"] = sha256_file(self.path)
        if self.backbone:
            rec["backbone"] = self.backbone
        return rec


def is_bundle(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a bundle folder: a manifest.json that edgevision wrote.

    A folder that merely holds some other ``manifest.json`` is not one, so `build --out` never
    takes it for its own.
    """
    from edgevision.bundle import MANIFEST

    manifest = Path(path, MANIFEST)
    if not manifest.is_file() or manifest.is_symlink():
        return False
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and {"schema_version", "spec", "files"} <= doc.keys()


def load_source(
    path: str | os.PathLike[str], spec_path: str | os.PathLike[str] | None = None
) -> ModelSource:
    """Load a RUN folder / checkpoint file, or an ``.onnx`` file (which needs ``spec_path``)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return _load_onnx(path, spec_path)
    return _load_checkpoint(path, spec_path)


def build_hooks(spec: ModelSpec) -> Any:
    """The build hooks of the spec's task (`edgevision.tasks.building.BuildHooks`)."""
    from edgevision.tasks import get_task

    task = get_task(spec.task)
    if not task.builder:
        raise BuildError(
            f"{spec.task} models cannot be built into a bundle by this edgevision",
            "the run folder keeps the trained model and its report (metrics.json)",
        )
    return task.building()


def _load_checkpoint(path: Path, spec_path: str | os.PathLike[str] | None) -> ModelSource:
    from edgevision.train.checkpoint import load_checkpoint

    if not path.exists():
        raise BuildError(
            f"build input {path} does not exist",
            "give a RUN folder from `edgevision train`, a checkpoint .pt, or an .onnx with --spec",
        )
    ckpt = load_checkpoint(path)
    hooks = build_hooks(ckpt.spec)
    if spec_path is not None:
        given = ModelSpec.load(spec_path, num_outputs=ckpt.spec.num_classes)
        if given != ckpt.spec:
            raise SpecError(
                f"--spec {spec_path} differs from the spec stored in checkpoint {ckpt.path}",
                "drop --spec: a checkpoint carries the spec it was trained with",
            )
    split_file = ckpt.path.parent / SPLIT_FILE
    split = hooks.load_split(split_file) if split_file.is_file() else None
    notes = [] if split else [f"no {SPLIT_FILE} beside {ckpt.path}: give --calib and --eval"]
    return ModelSource(
        "checkpoint",
        ckpt.path,
        ckpt.spec,
        model=ckpt.model,
        split=split,
        backbone=ckpt.backbone,
        notes=notes,
    )


def _load_onnx(path: Path, spec_path: str | os.PathLike[str] | None) -> ModelSource:
    if not path.is_file():
        raise BuildError(f"ONNX model {path} does not exist")
    if spec_path is None:
        raise SpecError(
            f"an ONNX input ({path}) needs its ModelSpec",
            "pass --spec SPEC.json (labels, input size, normalisation) written for this model",
        )
    # The spec names the task, and the task the contract the ONNX must follow.
    spec, _, notes = build_hooks(ModelSpec.load(spec_path)).read_onnx(path, spec_path)
    return ModelSource("onnx", path, spec, onnx_path=path, notes=list(notes))


def dynamic_dims_note(path: Path, shape: tuple[int | None, ...], spec: ModelSpec) -> list[str]:
    """The warning for an ONNX input whose H/W (or C) are dynamic: fixed to the spec's size."""
    if not any(d is None for d in shape[1:]):
        return []
    return [
        f"ONNX input of {path.name} has dynamic dims {_shape_text(shape)}: fixed to the spec's "
        f"{_shape_text(spec.input_shape('batch'))} (input_size {spec.input_size[0]}x"
        f"{spec.input_size[1]}), the size calibration and the runtime use"
    ]


def _shape_text(shape: tuple[int | str | None, ...]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def load_user_onnx(
    path: Path, what: str = "ONNX model", fix: str = "export the model again (opset 17)"
) -> Any:
    """A user's ONNX file as an ``onnx.ModelProto`` (external data not loaded), refused with
    `BuildError` when it is missing, empty, unreadable, graph-less or older than `MIN_OPSET`.
    ``what`` names the file in the messages, ``fix`` says how to make a good one."""
    import onnx

    if not path.is_file():
        raise BuildError(f"{what} {path} does not exist or is not a file", fix)
    if path.stat().st_size == 0:
        raise BuildError(
            f"{what} {path} is empty (0 bytes)",
            "the export or copy did not finish: export the model again",
        )
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise BuildError(f"{path} is not a readable ONNX model: {exc}", fix) from None
    if not model.HasField("graph") or model.ir_version == 0:
        raise BuildError(f"{path} is not a readable ONNX model (no graph or IR version in it)", fix)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        raise BuildError(
            f"{what} {path} has opset {opset}; per-channel Q/DQ needs opset >= {MIN_OPSET}",
            "re-export the model with opset 17",
        )
    return model


def onnx_io(path: Path) -> tuple[int, tuple[int | None, ...]]:
    """The class count of an ONNX classifier's single output and its single input's shape."""
    model = load_user_onnx(path)
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        names = [o.name for o in model.graph.output]
        raise BuildError(
            f"ONNX model {path} has {len(inputs)} inputs and {len(model.graph.output)} outputs "
            f"({', '.join(names)})",
            'its outputs look like a detector\'s: set "task": "detection" in the spec'
            if {"boxes", "scores"} <= set(names)
            else "a classifier takes one image input and one logits output; a detector's spec "
            'says "task": "detection" (outputs boxes and scores)',
        )
    out_dims = _dims(model.graph.output[0])
    if len(out_dims) != 2 or not isinstance(out_dims[1], int):
        raise BuildError(
            f"ONNX model {path} output has shape {list(out_dims)}; expected [batch, classes]",
            "export the classifier's logits as its only output",
        )
    return out_dims[1], _dims(inputs[0])


def _dims(value_info: Any) -> tuple[int | None, ...]:
    dims = value_info.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)


def check_input_shape(path: Path, shape: tuple[int | None, ...], spec: ModelSpec) -> None:
    """Raise `SpecError` when the model's fixed input dims disagree with the spec."""
    want = spec.input_shape("batch")
    if len(shape) != len(want) or any(
        isinstance(s, int) and isinstance(w, int) and s != w
        for s, w in zip(shape[1:], want[1:], strict=True)
    ):
        raise SpecError(
            f"ONNX model {path} takes input {list(shape)} but the spec says "
            f"{list(want)} ({spec.layout}, input_size {list(spec.input_size)})",
            "give the spec written for this model, or fix its input_size/layout",
        )
