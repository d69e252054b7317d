"""Step 3a: calibrate once — compute every tensor's range with ONNX Runtime, cache it on disk.

The ranges (ORT ``TensorsData``) are computed with ``create_calibrator`` / ``collect_data`` /
``compute_data`` and saved as ORT's calibration-cache JSON plus an ``edgevision_key``: the
model's SHA-256, the calibration manifest's hash, the method and its options, the preprocessing
fields of the spec and the ORT version. The file is named by the key's hash and its stored key
is compared in full on load, so any change recalibrates; nothing is silently reused. Both
targets are then quantized from this one file (``quantize_static(calibration_cache_path=…)``).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from edgevision.compile.calibration import CalibrationSet
from edgevision.compile.progress import Tracker, silent
from edgevision.errors import CalibrationError
from edgevision.fileio import atomic_write_text, sha256_bytes, sha256_file
from edgevision.registry import Registry
from edgevision.spec import ModelSpec

if TYPE_CHECKING:
    from onnxruntime.quantization import TensorsData

T = TypeVar("T")
log = logging.getLogger(__name__)

CACHE_FORMAT = 1
WEIGHT_STATS_FORMAT = 2  # 2: no H for layers past rounding.MAX_GPTQ_K
WEIGHT_STATS_IMAGES = 64  # E[x xᵀ] of a layer's input settles long before its ranges do
CACHE_ENV = "EDGEVISION_CACHE"
PREPROCESSING_FIELDS = (
    "input_size",
    "channel_order",
    "resize",
    "crop_ratio",
    "interpolation",
    "mean",
    "std",
    "layout",
    "pad_value",
)


@dataclass(frozen=True)
class Method:
    """A calibration method: ORT's ``CalibrationMethod`` member and its calibrator options.

    Ranges are kept asymmetric here; the TensorRT target symmetrises them when it quantizes
    (``ActivationSymmetric``), so one calibration serves both targets.
    """

    ort_name: str
    options: dict[str, Any] = field(default_factory=dict)


METHODS: Registry[Method] = Registry("calibration method")
METHODS.register("minmax", Method("MinMax", {"symmetric": False}))
METHODS.register(
    "entropy", Method("Entropy", {"symmetric": False, "num_bins": 128, "num_quantized_bins": 128})
)
METHODS.register(
    "percentile",
    Method("Percentile", {"symmetric": False, "num_bins": 2048, "percentile": 99.999}),
)


@dataclass(frozen=True)
class CalibrationRanges:
    """Computed (or cached) ranges: ``cache_path`` is an ORT calibration-cache JSON file."""

    method: str
    key: dict[str, Any]
    cache_path: Path
    from_cache: bool
    tensor_count: int
    # per-layer input statistics for the weight rounding (`rounding.weight_statistics`)
    weights_path: Path | None = None

    @property
    def ort_method(self) -> Any:
        from onnxruntime.quantization import CalibrationMethod

        return CalibrationMethod[METHODS.get(self.method).ort_name]

    def tensors_data(self) -> TensorsData:
        """The ranges as ORT's ``TensorsData``."""
        from onnxruntime.quantization.calibrate import load_tensors_data

        return load_tensors_data(self.cache_path)


def default_cache_dir() -> Path:
    """``$EDGEVISION_CACHE/calibration``, else ``~/.cache/edgevision/calibration``."""
    base = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "edgevision"
    return Path(base) / "calibration"


def cache_key(
    model_path: str | os.PathLike[str], calib: CalibrationSet, method: str, spec: ModelSpec
) -> dict[str, Any]:
    """Everything the ranges depend on."""
    import onnxruntime

    spec_dict = spec.to_dict()
    return {
        "format": CACHE_FORMAT,
        "model_sha256": sha256_file(model_path),
        "calibration_manifest_sha256": calib.manifest_sha256,
        "method": method,
        "method_options": METHODS.get(method).options,
        "preprocessing": {k: spec_dict[k] for k in PREPROCESSING_FIELDS},
        "onnxruntime": onnxruntime.__version__,
    }


def calibrate(
    model_path: str | os.PathLike[str],
    calib: CalibrationSet,
    spec: ModelSpec,
    method: str = "minmax",
    cache_dir: str | os.PathLike[str] | None = None,
    threads: int = 0,
    batch_size: int = 16,
    track: Tracker = silent,
    weights: bool = True,
) -> CalibrationRanges:
    """Ranges of every quantizable tensor of ``model_path`` (pre-processed FP32 ONNX).

    Reuses the cache entry whose key matches exactly; otherwise runs the calibrator on
    ``calib.tensors`` in batches and writes the cache atomically. With ``weights``, also the
    per-layer input statistics the default weight rounding needs (on the first
    ``WEIGHT_STATS_IMAGES`` images; cached beside the ranges).
    """
    METHODS.get(method)  # unknown names fail before any work
    key = cache_key(model_path, calib, method, spec)
    path = Path(cache_dir or default_cache_dir()) / f"{sha256_bytes(_canonical(key))[:32]}.json"
    cached = _load_cached(path, key)
    stats = _weight_statistics(path, model_path, calib, threads, track) if weights else None
    if cached is not None:
        log.info("calibration ranges reused from %s", path)
        return CalibrationRanges(method, key, path, True, cached, stats)
    data = _compute(Path(model_path), calib, method, threads, batch_size, track)
    _save(path, key, data)
    return CalibrationRanges(method, key, path, False, len(data.data), stats)


def _weight_statistics(
    ranges_path: Path, model_path: Any, calib: CalibrationSet, threads: int, track: Tracker
) -> Path:
    """The weight-rounding statistics beside the ranges (same key, so same invalidation)."""
    from edgevision.compile.rounding import save_statistics, weight_statistics

    out = ranges_path.with_name(ranges_path.stem + f".weights{WEIGHT_STATS_FORMAT}.npz")
    if not out.is_file():
        images = calib.tensors[:WEIGHT_STATS_IMAGES]
        out.parent.mkdir(parents=True, exist_ok=True)
        save_statistics(out, weight_statistics(model_path, images, threads, track=track))
    return out


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def read_keyed_cache(
    path: Path, key: dict[str, Any], parse: Callable[[dict[str, Any]], T], what: str
) -> T | None:
    """``parse`` of a JSON cache file whose stored ``edgevision_key`` equals ``key`` exactly.

    None when the file is absent or was written for another key (so any change recomputes), or
    when it cannot be read (logged; the caller recomputes and overwrites it).
    """
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return parse(raw) if raw.get("edgevision_key") == key else None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s cache %s is unreadable (%s); recomputing", what, path, exc)
        return None


def _load_cached(path: Path, key: dict[str, Any]) -> int | None:
    def tensor_count(raw: dict[str, Any]) -> int:
        from onnxruntime.quantization.calibrate import TensorsData

        return len(TensorsData.from_dict(raw).data)

    return read_keyed_cache(path, key, tensor_count, "calibration")


def _save(path: Path, key: dict[str, Any], data: TensorsData) -> None:
    from onnxruntime.quantization.calibrate import CalibrationCacheEncoder

    payload = data.to_dict() | {"smooth_quant": False, "edgevision_key": key}
    atomic_write_text(path, json.dumps(payload, cls=CalibrationCacheEncoder))


def quantizable_op_types() -> list[str]:
    """The op types ``quantize_static`` quantizes by default (so calibrated tensors match)."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


class _BatchReader:
    """A CalibrationDataReader over one batch (ORT calls ``get_next`` until None)."""

    def __init__(self, name: str, batch: np.ndarray) -> None:
        self._items = [{name: batch}]

    def get_next(self) -> dict[str, np.ndarray] | None:
        return self._items.pop() if self._items else None


def _compute(
    model_path: Path,
    calib: CalibrationSet,
    method: str,
    threads: int,
    batch_size: int,
    track: Tracker,
) -> TensorsData:
    from onnxruntime.quantization import CalibrationMethod, create_calibrator

    spec_method = METHODS.get(method)
    name, fixed = _input_batch(model_path)
    step = fixed or batch_size
    batches = [calib.tensors[i : i + step] for i in range(0, len(calib), step)]
    if fixed:
        batches = [b for b in batches if len(b) == fixed]
    if not batches:
        raise CalibrationError(
            f"no calibration batch to run through {model_path}",
            f"give at least {max(1, fixed or 1)} preprocessed images",
        )
    with tempfile.TemporaryDirectory(prefix="edgevision-calib-") as tmp:
        calibrator = create_calibrator(
            model_path,
            quantizable_op_types(),
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=CalibrationMethod[spec_method.ort_name],
            extra_options=dict(spec_method.options),
        )
        if threads:
            _limit_threads(calibrator, threads)
        # ORT's histogram collectors print() their settings; keep the terminal for progress bars.
        with contextlib.redirect_stdout(io.StringIO()):
            for batch in track(batches, len(batches), f"calibrate ({method})"):
                calibrator.collect_data(_BatchReader(name, np.ascontiguousarray(batch)))
            data = calibrator.compute_data()
    bad = [k for k, v in data.data.items() if not np.all(np.isfinite(v.range_value))]
    if bad:
        raise CalibrationError(
            f"calibration produced non-finite ranges for {len(bad)} tensor(s), e.g. {bad[0]}",
            "check the calibration images and the model for NaN/inf outputs",
        )
    return data


def _limit_threads(calibrator: Any, threads: int) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # Same as ORT's own calibrator session: no graph optimisation, so no observed tensor is fused.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = threads
    calibrator.infer_session = ort.InferenceSession(
        calibrator.augmented_model_path, options, providers=calibrator.execution_providers
    )


def _input_batch(model_path: Path) -> tuple[str, int | None]:
    """The model's input name, and its batch size when fixed (None when dynamic)."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    first = next(i for i in model.graph.input if i.name not in inits)
    dim = first.type.tensor_type.shape.dim[0]
    return first.name, dim.dim_value if dim.HasField("dim_value") else None
