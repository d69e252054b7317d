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

    Returns the number of images, the top-1 agreement (fraction; a detector: the class of its
    best candidate) and the max / mean absolute error of the first output, and of every output
    by name under ``outputs`` (a detector: ``boxes`` in pixels, ``scores``). Both runners get
    the same `preprocess` tensor.
    """
    from edgevision.bundle import Bundle

    if not isinstance(bundle, Bundle):
        bundle = Bundle.open(bundle)
    if not images:
        raise DataError("engine_parity needs at least one image", "pass image paths or frames")
    reference = OrtRunner(bundle.path(bundle.artifact("fp32").file), threads=0, name="ort:fp32")
    engine = TrtRunner(engine_record)
    with reference, engine:
        names = list(reference.output_names())
        pairs = [_outputs_pair(reference, engine, bundle.spec, img, names) for img in images]
    # the class output: a classifier's logits; a detector's scores, of its best candidate
    cls = next((n for n in ("logits", "scores") if n in pairs[0][0]), names[0])
    agree = sum(int(_top_class(a[cls]) == _top_class(b[cls])) for a, b in pairs)
    per_output = {}
    for name in names:
        errors = [np.abs(a[name].astype(np.float64) - b[name].astype(np.float64)) for a, b in pairs]
        per_output[name] = {
            "max_abs_error": float(max(e.max() for e in errors)),
            "mean_abs_error": float(np.mean([e.mean() for e in errors])),
        }
    return {
        "reference": "fp32 onnxruntime",
        "images": len(pairs),
        "top1_agreement": agree / len(pairs),
        **per_output[names[0]],  # the first output's, as engines have always recorded
        "outputs": per_output,
    }


def _top_class(out: np.ndarray) -> int:
    """The class an output says: argmax of logits [1, C]; of a detector's scores [1, K, C],
    the class of the candidate with the highest score."""
    flat = out.reshape(-1, out.shape[-1])
    return int(np.unravel_index(np.argmax(flat), flat.shape)[1])


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
    reference: Any,
    engine: Any,
    spec: ModelSpec,
    image: str | os.PathLike[str] | np.ndarray,
    names: list[str],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    from edgevision.data.images import read_image
    from edgevision.preprocess import preprocess

    frame = image if isinstance(image, np.ndarray) else read_image(image)
    x = preprocess(frame, spec)
    ref = reference.infer(x)
    got = engine.infer(x)
    missing = [n for n in names if n not in got]
    if missing:
        raise BuildError(
            f"the engine's outputs {sorted(got)} do not match the ONNX outputs {names}"
        )
    for name in names:
        if ref[name].shape != got[name].shape:
            raise BuildError(
                f"output {name!r}: engine shape {list(got[name].shape)} vs ONNX "
                f"{list(ref[name].shape)}"
            )
    return {n: ref[n] for n in names}, {n: got[n] for n in names}
