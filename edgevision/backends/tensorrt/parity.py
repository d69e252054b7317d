"""Does the engine compute what the model does? Engine outputs vs FP32 ONNX Runtime.

`engine_parity` feeds both runners the same `preprocess` tensor per image and reports top-1
agreement and the absolute error of the first output; `build_engine` stores that report in
the engine's record. `calibration_images` finds the bundle's calibration images when they are
reachable on this machine (on the device they often are not; then there is no check).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevision.backends.ort.runner import OrtRunner
from edgevision.backends.tensorrt.runner import TrtRunner
from edgevision.errors import BuildError, DataError

if TYPE_CHECKING:
    from edgevision.backends.tensorrt.staleness import EngineRecord
    from edgevision.bundle import Bundle
    from edgevision.spec import ModelSpec

MAX_PARITY_IMAGES = 256  # what build_engine compares at most


def engine_parity(
    bundle: Bundle | str | os.PathLike[str],
    engine_record: EngineRecord,
    images: Sequence[str | os.PathLike[str] | np.ndarray],
) -> dict[str, Any]:
    """Compare the engine's outputs with FP32 ONNX Runtime on ``images`` (paths or BGR frames).

    Returns the number of images, top-1 agreement (fraction) and the max / mean absolute
    error of the first output. Both runners get the same `preprocess` tensor.
    """
    from edgevision.bundle import Bundle

    if not isinstance(bundle, Bundle):
        bundle = Bundle.open(bundle)
    if not images:
        raise DataError("engine_parity needs at least one image", "pass image paths or frames")
    reference = OrtRunner(bundle.path(bundle.artifact("fp32").file), threads=0, name="ort:fp32")
    engine = TrtRunner(engine_record)
    with reference, engine:
        pairs = [_outputs_pair(reference, engine, bundle.spec, img) for img in images]
    agree = sum(int(np.argmax(a) == np.argmax(b)) for a, b in pairs)
    errors = [np.abs(a.astype(np.float64) - b.astype(np.float64)) for a, b in pairs]
    return {
        "reference": "fp32 onnxruntime",
        "images": len(pairs),
        "top1_agreement": agree / len(pairs),
        "max_abs_error": float(max(e.max() for e in errors)),
        "mean_abs_error": float(np.mean([e.mean() for e in errors])),
    }


def calibration_images(bundle: Bundle) -> list[Path]:
    """The bundle's calibration images that exist on this machine (may be none).

    The bundle's ``calibration.json`` is read by the build stage's own parser
    (`edgevision.compile.calibration.read_manifest`); a missing or unreadable manifest means
    no images, not an error.
    """
    # Imported here: the build stage's package is not needed to load or run an engine.
    from edgevision.compile.calibration import read_manifest
    from edgevision.errors import CalibrationError

    manifest = bundle.path("calibration.json")
    try:
        _root, candidates = read_manifest(manifest)
    except CalibrationError:
        return []
    return [c.path for c in candidates if c.path.is_file()]


def _outputs_pair(
    reference: Any, engine: Any, spec: ModelSpec, image: str | os.PathLike[str] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    from edgevision.data.images import read_image
    from edgevision.preprocess import preprocess

    frame = image if isinstance(image, np.ndarray) else read_image(image)
    x = preprocess(frame, spec)
    ref = reference.infer(x)
    got = engine.infer(x)
    name = next((n for n in reference.output_names() if n in got), None)
    if name is None:
        raise BuildError(
            f"the engine's outputs {sorted(got)} do not match the ONNX outputs "
            f"{reference.output_names()}"
        )
    if ref[name].shape != got[name].shape:
        raise BuildError(
            f"output {name!r}: engine shape {list(got[name].shape)} vs ONNX {list(ref[name].shape)}"
        )
    return ref[name], got[name]
