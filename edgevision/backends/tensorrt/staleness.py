"""Engine records, and refusing an engine that was built for another machine or model.

A record is what an engine was built for (TensorRT version, GPU, compute capability,
multiprocessor count, memory size, precision, ONNX hash, batch range, …) plus the engine
file's own SHA-256. It lives in the bundle manifest under ``"engines"`` when the engine sits
in the bundle folder, or in a sidecar ``<engine>.json`` beside an engine kept in the engine
cache folder. Engines are never listed in the manifest's hashed ``"files"``: the bundle's own
hashes stay valid after a build.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgevision.backends.tensorrt.naming import RECORD_SUFFIX
from edgevision.errors import BackendError, BundleError
from edgevision.fileio import sha256_file

if TYPE_CHECKING:
    from edgevision.backends.tensorrt.cuda_memory import CudaMemory
    from edgevision.bundle import Bundle

BUILD_FIX = "run `edgevision engine {bundle}` on this device"

# What makes an engine unusable here, in the order a message lists them.
_IDENTITY = (
    ("trt_version", "TensorRT version"),
    ("gpu_name", "GPU"),
    ("compute_capability", "compute capability"),
    # Every Orin module is "Orin" at SM 8.7: these two tell an AGX Orin from an Orin Nano.
    ("multiprocessors", "multiprocessor count"),
    ("memory_gib", "GPU memory (GiB)"),
    ("onnx_sha256", "ONNX model hash"),
)
_OPTIONAL = {"timing_cache", "parity", "multiprocessors", "memory_gib"}
# What a rebuild with other options would change (same machine, same ONNX).
_SETTINGS = (
    ("min_batch", "min batch"),
    ("opt_batch", "opt batch"),
    ("max_batch", "max batch"),
    ("workspace_mb", "workspace (MiB)"),
    ("opt_level", "builder optimisation level"),
    ("fp16_fallback", "FP16 fallback"),
    ("device", "device"),
)


class StaleEngineError(BundleError):
    """An engine built for another TensorRT version, GPU or ONNX model, or a corrupted one."""


@dataclass(frozen=True)
class Environment:
    """This machine, as far as an engine is concerned."""

    trt_version: str
    gpu_name: str
    compute_capability: str
    multiprocessors: int | None = None
    memory_gib: int | None = None


def current_environment(trt: Any, memory: CudaMemory) -> Environment:
    """TensorRT version, GPU name, compute capability, multiprocessor count and memory size of
    this machine."""
    if memory.device_count() < 1:
        raise BackendError(
            f"no CUDA device is visible to {memory.name}",
            "TensorRT engines are built and run on an NVIDIA GPU; check nvidia-smi / tegrastats",
        )
    info = memory.device_info(0)
    return Environment(
        trt_version=str(trt.__version__),
        gpu_name=info.name,
        compute_capability=info.compute_capability,
        multiprocessors=info.multiprocessors,
        memory_gib=info.memory_gib,
    )


@dataclass(frozen=True)
class EngineRecord:
    """A built engine and what it was built for."""

    path: Path  # where the engine file is (absolute)
    artifact: str  # bundle artifact it was built from, e.g. "int8-trt"
    onnx_file: str
    onnx_sha256: str
    precision: str  # int8 | fp16 | fp32
    trt_version: str
    gpu_name: str
    compute_capability: str
    device: str  # "gpu" or "dla<N>"
    input_name: str
    min_batch: int
    opt_batch: int
    max_batch: int
    workspace_mb: int
    opt_level: int
    fp16_fallback: bool
    strongly_typed: bool
    sha256: str  # of the engine file
    size_bytes: int
    location: str  # "bundle" or "cache"
    built_at: str
    build_seconds: float
    timing_cache: str | None = None
    parity: dict[str, Any] | None = field(default=None)
    # None in a record written before they were recorded: such an engine counts as stale.
    multiprocessors: int | None = None
    memory_gib: int | None = None

    @property
    def file(self) -> str:
        """The engine's file name."""
        return self.path.name

    @property
    def environment(self) -> Environment:
        """The machine the engine was built for."""
        return Environment(
            trt_version=self.trt_version,
            gpu_name=self.gpu_name,
            compute_capability=self.compute_capability,
            multiprocessors=self.multiprocessors,
            memory_gib=self.memory_gib,
        )

    def to_dict(self, relative_to: Path | None = None) -> dict[str, Any]:
        """JSON-ready; ``path`` is relative when the engine is inside ``relative_to``."""
        d = asdict(self)
        path = self.path
        if relative_to is not None and path.parent == relative_to:
            path = Path(path.name)
        d["path"] = path.as_posix()
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], base: Path) -> EngineRecord:
        """Read a record; a relative ``path`` is resolved against ``base``."""
        known = {f.name for f in fields(cls)}
        missing = sorted(known - set(data) - _OPTIONAL)
        if missing:
            raise BundleError(
                f"engine record in {base} lacks {', '.join(missing)}",
                "rebuild the engine with `edgevision engine BUNDLE`",
            )
        values = {k: v for k, v in data.items() if k in known}
        path = Path(values["path"])
        values["path"] = path if path.is_absolute() else base / path
        return cls(**values)

    def with_parity(self, parity: dict[str, Any] | None) -> EngineRecord:
        return replace(self, parity=parity)


def identity_differences(record: EngineRecord, here: Environment, onnx_sha256: str) -> list[str]:
    """``"TensorRT version: built 10.3.0, here 10.7.0"`` lines; empty when it fits here."""
    now = {**asdict(here), "onnx_sha256": onnx_sha256}
    built = asdict(record)
    return [
        f"{label}: built for {_short(key, built[key])}, here {_short(key, now[key])}"
        for key, label in _IDENTITY
        if str(built[key]) != str(now[key])
    ]


def settings_differences(record: EngineRecord, wanted: dict[str, Any]) -> list[str]:
    """Build options that differ from ``wanted`` (same keys as the record)."""
    return [
        f"{label}: built with {getattr(record, key)}, asked for {wanted[key]}"
        for key, label in _SETTINGS
        if key in wanted and getattr(record, key) != wanted[key]
    ]


def file_problem(record: EngineRecord) -> str | None:
    """Why the engine file cannot be trusted (missing, or not the bytes that were built)."""
    if not record.path.is_file():
        return f"engine file {record.path} is missing"
    if sha256_file(record.path) != record.sha256:
        return (
            f"engine file {record.path} does not match its recorded SHA-256 "
            "(modified or corrupted after the build)"
        )
    return None


# -- where records live --------------------------------------------------------------------
def bundle_records(bundle: Bundle) -> list[EngineRecord]:
    """Engine records in the bundle manifest (engines stored inside the bundle folder)."""
    engines = bundle.manifest.get("engines", {})
    if not isinstance(engines, dict):
        raise BundleError(f"bundle {bundle.root}: manifest 'engines' is not an object")
    return [EngineRecord.from_dict(rec, bundle.root) for rec in engines.values()]


def cache_records(cache_dir: Path, onnx_file: str) -> list[EngineRecord]:
    """Sidecar records of engines for ``onnx_file`` in the engine cache folder."""
    if not cache_dir.is_dir():
        return []
    out = []
    for sidecar in sorted(cache_dir.glob(f"{onnx_file}.*.engine{RECORD_SUFFIX}")):
        try:
            data = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue  # a half-written or foreign file is not an engine we know
        out.append(EngineRecord.from_dict(data, cache_dir))
    return out


def write_sidecar(record: EngineRecord) -> Path:
    """Write ``<engine>.json`` beside an engine kept outside a bundle (atomically)."""
    from edgevision.fileio import atomic_write_json

    return atomic_write_json(
        record.path.with_name(record.path.name + RECORD_SUFFIX), record.to_dict()
    )


def describe(record: EngineRecord) -> str:
    """One line naming what an engine was built for."""
    sms = f" {record.multiprocessors} SMs" if record.multiprocessors else ""
    return (
        f"{record.file} (TensorRT {record.trt_version}, {record.gpu_name}{sms} "
        f"sm {record.compute_capability}, {record.precision}, ONNX {record.onnx_sha256[:8]})"
    )


def _short(key: str, value: Any) -> str:
    if value is None:
        return "(not recorded)"
    return str(value)[:8] if key == "onnx_sha256" else str(value)


def bundle_label(bundle: Bundle) -> str:
    """How a message names the bundle in the fix it suggests."""
    return os.fspath(bundle.root)
