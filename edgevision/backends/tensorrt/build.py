"""Build a TensorRT engine from a bundle, on the device that will run it.

The steps, each taking what the previous one made (the shape of Polygraphy's loaders,
``NetworkFromOnnx`` → ``CreateConfig`` → ``EngineBytesFromNetwork`` → ``SaveEngine``):
`network_from_onnx` → `create_config` → `engine_bytes` → `save_engine`. `build_engine` composes
them, reuses an up-to-date engine, and checks parity (`parity.engine_parity`) when it can.

INT8 is explicit quantization: TensorRT reads the scales from the Q/DQ nodes of
``model.int8.trt.onnx`` (no calibrator: deprecated in TensorRT 10.1, removed in 11).

* TensorRT 10.3 .. 10.11 (JetPack 6 has 10.3): a weakly typed network with ``BuilderFlag.INT8``
  (plus ``BuilderFlag.FP16`` for the layers left in float when ``fp16_fallback``);
  ``precision="fp16"`` sets ``FP16`` on the FP32 model.
* TensorRT >= 10.12 and 11: a strongly typed network (10.12 deprecated the precision flags,
  11 removed them; NVIDIA's explicit-quantization guide says to use strong typing), so the
  types in the ONNX decide. FP16 (``precision="fp16"``, or ``fp16_fallback`` for the float
  layers of the Q/DQ model) comes from converting the ONNX with ModelOpt AutoCast first
  (`autocast.fp16_onnx`), keeping float32 inputs and outputs.
* DLA (``dla_core``): a fixed batch (min = opt = max) and INT8 or FP16 only, as NVIDIA's DLA
  restrictions say; anything else would be an engine labelled ``dla0`` running on the GPU.

Engines are written atomically beside the bundle (or into the engine cache folder when the
bundle folder is read-only) and recorded with what they were built for; see `staleness`.

None of this has run on a GPU yet: it is written against NVIDIA's documented Python API and
tested against a recording fake of it (tests/backends/tensorrt/conftest.py).
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevision.backends.tensorrt.cuda_memory import open_memory
from edgevision.backends.tensorrt.naming import (
    engine_file_name,
    resolve_engine_cache,
    timing_cache_name,
)
from edgevision.backends.tensorrt.parity import (
    MAX_PARITY_IMAGES,
    calibration_images,
    engine_parity,
)
from edgevision.backends.tensorrt.staleness import (
    EngineRecord,
    Environment,
    StaleEngineError,
    bundle_records,
    cache_records,
    current_environment,
    file_problem,
    identity_differences,
    settings_differences,
    write_sidecar,
)
from edgevision.backends.tensorrt.trt_api import import_tensorrt, strongly_typed, trt_logger
from edgevision.errors import BuildError
from edgevision.fileio import atomic_write_bytes, sha256_bytes, sha256_file

if TYPE_CHECKING:
    from edgevision.bundle import Artifact, Bundle
    from edgevision.spec import ModelSpec

_LOG = logging.getLogger(__name__)

# Which bundle artifact each precision is built from.
PRECISION_ARTIFACT = {"int8": "int8-trt", "fp16": "fp32", "fp32": "fp32"}
_READ_ONLY_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS}


@dataclass(frozen=True)
class BuildOptions:
    """What an engine is built with (checked before TensorRT is touched)."""

    precision: str = "int8"
    workspace_mb: int = 1024
    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 8
    dla_core: int | None = None
    fp16_fallback: bool = False
    opt_level: int = 3

    def check(self) -> None:
        """Raise `BuildError` naming the first bad option."""
        if self.precision not in PRECISION_ARTIFACT:
            raise BuildError(
                f"unknown TensorRT precision {self.precision!r}",
                f"use one of: {', '.join(PRECISION_ARTIFACT)}",
            )
        if not (1 <= self.min_batch <= self.opt_batch <= self.max_batch):
            raise BuildError(
                f"batch range min={self.min_batch} opt={self.opt_batch} max={self.max_batch} "
                "is not ordered",
                "give 1 <= min_batch <= opt_batch <= max_batch",
            )
        if self.workspace_mb < 1:
            raise BuildError(f"workspace_mb {self.workspace_mb} must be at least 1")
        if not (0 <= self.opt_level <= 5):
            raise BuildError(
                f"builder optimisation level {self.opt_level} is out of range",
                "use 0..5 (TensorRT's default is 3)",
            )
        if self.dla_core is not None and self.dla_core < 0:
            raise BuildError(f"dla_core {self.dla_core} must be >= 0, or None for the GPU")
        if self.fp16_fallback and self.precision != "int8":
            raise BuildError(
                f"fp16_fallback applies to precision int8, not {self.precision}",
                "drop fp16_fallback, or use precision='fp16' for an FP16 engine",
            )
        if self.dla_core is not None:
            self._check_dla()

    def _check_dla(self) -> None:
        # NVIDIA's DLA restrictions: no dynamic dimensions (the profile's min, opt and max
        # must be equal) and FP16/INT8 compute only. With GPU_FALLBACK set, TensorRT would
        # otherwise quietly put the network on the GPU.
        if not (self.min_batch == self.opt_batch == self.max_batch):
            raise BuildError(
                f"DLA core {self.dla_core} needs a fixed batch, but the profile is "
                f"min={self.min_batch} opt={self.opt_batch} max={self.max_batch}",
                f"give min_batch = opt_batch = max_batch (e.g. all {self.opt_batch}; CLI: "
                f"--max-batch {self.opt_batch}), or leave dla_core unset to build for the GPU",
            )
        if self.precision == "fp32":
            raise BuildError(
                f"DLA core {self.dla_core} runs FP16 and INT8 only, not precision fp32",
                "use precision='int8' or 'fp16', or leave dla_core unset to build for the GPU",
            )

    @property
    def device(self) -> str:
        return "gpu" if self.dla_core is None else f"dla{self.dla_core}"

    def settings(self) -> dict[str, Any]:
        """The options as an engine record stores them."""
        d = asdict(self)
        del d["dla_core"], d["precision"]
        return {**d, "device": self.device}


@dataclass(frozen=True)
class SerializedEngine:
    """What `serialize_engine` made: the engine bytes and what the record needs to know."""

    blob: bytes
    input_name: str
    strongly_typed: bool
    seconds: float
    timing_cache: Path


# -- the public entry point -------------------------------------------------------------------
def build_engine(
    bundle_path: str | os.PathLike[str],
    precision: str = "int8",
    workspace_mb: int = 1024,
    min_batch: int = 1,
    opt_batch: int = 1,
    max_batch: int = 8,
    dla_core: int | None = None,
    fp16_fallback: bool | None = None,
    opt_level: int = 3,
    timing_cache: str | os.PathLike[str] | None = None,
    engine_cache: str | os.PathLike[str] | None = None,
    rebuild_if_stale: bool = False,
    *,
    parity_images: Sequence[str | os.PathLike[str] | np.ndarray] | None = None,
) -> EngineRecord:
    """Build (or reuse) this device's engine for ``bundle_path`` and record it.

    ``precision`` int8 builds ``model.int8.trt.onnx`` (Q/DQ), fp16/fp32 build
    ``model.fp32.onnx``. The optimisation profile spans ``min/opt/max_batch`` on the bundle's
    input. ``timing_cache`` (default: in the engine cache folder) is loaded when present and
    saved after the build. ``engine_cache`` puts the engine there instead of beside the bundle
    (which is also where it goes when the bundle folder is read-only). An engine of the same
    name built with other options is replaced only with ``rebuild_if_stale``. When
    ``parity_images`` are given, or the bundle's calibration images are reachable, the engine
    is compared with the FP32 ONNX Runtime outputs (`engine_parity`) and the result stored.
    ``fp16_fallback`` None (the default) turns FP16 on beside INT8 exactly when the INT8
    artifact keeps nodes in float (a detector's head, an accuracy budget's layers), so those
    run in FP16 rather than FP32.
    """
    from edgevision.bundle import Bundle

    opts = BuildOptions(
        precision=precision,
        workspace_mb=workspace_mb,
        min_batch=min_batch,
        opt_batch=opt_batch,
        max_batch=max_batch,
        dla_core=dla_core,
        fp16_fallback=bool(fp16_fallback),
        opt_level=opt_level,
    )
    opts.check()
    bundle = Bundle.open(bundle_path)
    art = bundle.artifact(PRECISION_ARTIFACT[precision])
    if fp16_fallback is None and precision == "int8" and art.extra.get("float_nodes"):
        opts = dataclasses.replace(opts, fp16_fallback=True)
        opts.check()
        _LOG.info("FP16 on beside INT8: %s keeps nodes in float", art.file)
    trt = import_tensorrt()
    memory = open_memory()
    try:
        with memory.in_context():
            here = current_environment(trt, memory)
            record = _build_or_reuse(
                trt, here, bundle, art, opts, timing_cache, engine_cache, rebuild_if_stale
            )
    finally:
        memory.close()
    images = list(parity_images) if parity_images is not None else calibration_images(bundle)
    if images and record.parity is None:
        record = record.with_parity(engine_parity(bundle, record, images[:MAX_PARITY_IMAGES]))
        save_record(bundle, record)
    return record


def _build_or_reuse(
    trt: Any,
    here: Environment,
    bundle: Bundle,
    art: Artifact,
    opts: BuildOptions,
    timing_cache: str | os.PathLike[str] | None,
    engine_cache: str | os.PathLike[str] | None,
    rebuild_if_stale: bool,
) -> EngineRecord:
    onnx_path = bundle.path(art.file)
    onnx_sha = sha256_file(onnx_path)
    name = engine_file_name(art.file, here, opts.precision, onnx_sha, opts.dla_core)
    cache_dir = resolve_engine_cache(engine_cache)
    existing = _existing_record(bundle, cache_dir, engine_cache, art.file, name)
    if existing is not None and _is_up_to_date(existing, here, onnx_sha, opts, rebuild_if_stale):
        _LOG.info("engine %s is up to date; not rebuilding", existing.path)
        return existing
    tc_path = Path(timing_cache) if timing_cache else cache_dir / timing_cache_name(here)
    built = serialize_engine(trt, onnx_path, bundle.spec, opts, tc_path)
    fields = _record_fields(art, onnx_sha, here, opts, built)
    return save_engine(bundle, cache_dir, engine_cache, name, built.blob, fields)


def _is_up_to_date(
    existing: EngineRecord,
    here: Environment,
    onnx_sha: str,
    opts: BuildOptions,
    rebuild_if_stale: bool,
) -> bool:
    """True when ``existing`` is what this build would make; False when it is to be replaced
    (``rebuild_if_stale``); otherwise `StaleEngineError` with what differs."""
    problems = identity_differences(existing, here, onnx_sha)
    problems += settings_differences(existing, opts.settings())
    problem = file_problem(existing)
    problems += [problem] if problem else []
    if not problems:
        return True
    if rebuild_if_stale:
        return False
    raise StaleEngineError(
        f"engine {existing.path} already exists but " + "; ".join(problems),
        "pass rebuild_if_stale=True to rebuild and replace it",
    )


def _record_fields(
    art: Artifact, onnx_sha: str, here: Environment, opts: BuildOptions, built: SerializedEngine
) -> dict[str, Any]:
    """An `EngineRecord`'s fields, but for where the engine is stored."""
    return {
        "artifact": art.name,
        "onnx_file": art.file,
        "onnx_sha256": onnx_sha,
        "precision": opts.precision,
        **asdict(here),  # TensorRT version, GPU name, compute capability, SMs, memory
        "input_name": built.input_name,
        "strongly_typed": built.strongly_typed,
        "sha256": sha256_bytes(built.blob),
        "size_bytes": len(built.blob),
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "build_seconds": round(built.seconds, 3),
        "timing_cache": str(built.timing_cache),
        "parity": None,
        **opts.settings(),
    }


# -- the steps ----------------------------------------------------------------------------------
def serialize_engine(
    trt: Any, onnx_path: Path, spec: ModelSpec, opts: BuildOptions, timing_cache: Path
) -> SerializedEngine:
    """ONNX file → serialized engine, through the steps below; the timing cache is loaded
    first (when it fits) and saved after."""
    start = time.perf_counter()
    logger = trt_logger(trt)
    logger.captured.messages.clear()
    # The parser stays referenced until the build: the network points into its weights.
    builder, network, _parser, typed = network_from_onnx(trt, logger, onnx_path, opts)
    input_name = _checked_input(network, spec, opts)
    config = create_config(trt, builder, input_name, spec, opts, typed)
    _load_timing_cache(config, timing_cache)
    blob = engine_bytes(trt, logger, builder, network, config, onnx_path.name)
    _save_timing_cache(config, timing_cache)
    return SerializedEngine(blob, input_name, typed, time.perf_counter() - start, timing_cache)


def network_from_onnx(
    trt: Any, logger: Any, onnx_path: Path, opts: BuildOptions
) -> tuple[Any, Any, Any, bool]:
    """(builder, network, parser, strongly typed?) with the ONNX parsed into the network."""
    builder = trt.Builder(logger)
    flags, typed = _network_flags(trt)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    _parse(trt, parser, onnx_path, _model_bytes(onnx_path, opts, typed))
    return builder, network, parser, typed


def create_config(
    trt: Any, builder: Any, input_name: str, spec: ModelSpec, opts: BuildOptions, typed: bool
) -> Any:
    """The builder config: precision (weakly typed only), workspace, optimisation level,
    profile and DLA."""
    config = builder.create_builder_config()
    if not typed:
        _set_precision_flags(trt, config, opts)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, opts.workspace_mb << 20)
    config.builder_optimization_level = opts.opt_level
    # Layer names, precisions and tactics for the engine inspector (how to confirm on the
    # device that INT8 kernels, or DLA, were chosen); costs nothing at inference.
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    _add_profile(builder, config, input_name, spec, opts)
    _use_dla(trt, builder, config, opts)
    return config


def engine_bytes(
    trt: Any, logger: Any, builder: Any, network: Any, config: Any, onnx_name: str
) -> bytes:
    """The serialized engine, or `BuildError` with what TensorRT logged."""
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        errors = "\n".join("  " + m for m in logger.captured.errors()) or "  (no error logged)"
        raise BuildError(
            f"TensorRT {trt.__version__} could not build an engine from {onnx_name}:\n{errors}",
            "raise workspace_mb, lower max_batch, or check the model's operators",
        )
    return bytes(memoryview(serialized))


def _network_flags(trt: Any) -> tuple[int, bool]:
    """(create_network flags, strongly typed?)."""
    if strongly_typed(trt):
        # 10.12+: STRONGLY_TYPED; 11 is always strongly typed and keeps the flag for
        # compatibility (it may be gone in a later release).
        flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        return (0 if flag is None else 1 << int(flag)), True
    # TensorRT 10.3..10.11: networks are always explicit batch (EXPLICIT_BATCH is deprecated
    # and ignored), and weakly typed, so precision comes from the builder flags below.
    return 0, False


def _model_bytes(onnx_path: Path, opts: BuildOptions, typed: bool) -> bytes:
    """The ONNX the parser reads: as it is, or converted to FP16 compute for a strongly typed
    build that asks for FP16 (no builder flag can do it there)."""
    if typed and (opts.precision == "fp16" or opts.fp16_fallback):
        from edgevision.backends.tensorrt.autocast import fp16_onnx

        why = "precision='fp16'" if opts.precision == "fp16" else "fp16_fallback"
        return fp16_onnx(onnx_path, why)
    return onnx_path.read_bytes()


def _set_precision_flags(trt: Any, config: Any, opts: BuildOptions) -> None:
    if opts.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        if opts.fp16_fallback:
            config.set_flag(trt.BuilderFlag.FP16)
    elif opts.precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)


def _parse(trt: Any, parser: Any, onnx_path: Path, model: bytes) -> None:
    if parser.parse(model):
        return
    errors = [_parser_error_line(parser.get_error(i)) for i in range(parser.num_errors)]
    listed = "\n".join(f"  - {e}" for e in errors) or "  - (the parser reported no details)"
    raise BuildError(
        f"TensorRT {trt.__version__}'s ONNX parser rejected {onnx_path.name} "
        f"({len(errors)} error(s)):\n{listed}",
        "these operators are not supported by this TensorRT; re-export the model with "
        "supported operators (or a lower opset), or upgrade TensorRT",
    )


def _parser_error_line(error: Any) -> str:
    index = error.node()
    name = error.node_name() if hasattr(error, "node_name") else ""
    op = error.node_operator() if hasattr(error, "node_operator") else ""
    if name or index >= 0:
        where = f"node {name or '#' + str(index)}" + (f" ({op})" if op else "")
    else:
        where = "graph"
    return f"{where}: {error.code()}: {error.desc()}"


def _checked_input(network: Any, spec: ModelSpec, opts: BuildOptions) -> str:
    if network.num_inputs != 1:
        names = [network.get_input(i).name for i in range(network.num_inputs)]
        raise BuildError(f"the model has {network.num_inputs} inputs {names}; edgevision feeds one")
    tensor = network.get_input(0)
    shape = tuple(int(d) for d in tensor.shape)
    want = tuple(int(d) for d in spec.input_shape(1))
    fits = len(shape) == len(want) and all(
        s in (-1, w) for s, w in zip(shape[1:], want[1:], strict=True)
    )
    if not fits:
        raise BuildError(
            f"ONNX input {tensor.name!r} has shape {list(shape)}, the bundle spec says "
            f"{['batch', *want[1:]]}",
            "rebuild the bundle so the model and its ModelSpec agree",
        )
    if shape[0] != -1 and not (opts.min_batch == opts.max_batch == shape[0]):
        raise BuildError(
            f"ONNX input {tensor.name!r} has a fixed batch of {shape[0]}, but the profile asks "
            f"for {opts.min_batch}..{opts.max_batch}",
            f"use min/opt/max batch {shape[0]}, or export the model with a dynamic batch",
        )
    return str(tensor.name)


def _add_profile(
    builder: Any, config: Any, input_name: str, spec: ModelSpec, opts: BuildOptions
) -> None:
    profile = builder.create_optimization_profile()
    profile.set_shape(
        input_name,
        min=spec.input_shape(opts.min_batch),
        opt=spec.input_shape(opts.opt_batch),
        max=spec.input_shape(opts.max_batch),
    )
    config.add_optimization_profile(profile)


def _use_dla(trt: Any, builder: Any, config: Any, opts: BuildOptions) -> None:
    if opts.dla_core is None:
        return
    cores = int(builder.num_DLA_cores)
    if opts.dla_core >= cores:
        raise BuildError(
            f"DLA core {opts.dla_core} was asked for, but this device has {cores} DLA core(s) "
            f"with TensorRT {trt.__version__}",
            "leave dla_core unset to build for the GPU"
            + (f", or use 0..{cores - 1}" if cores else ""),
        )
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = opts.dla_core
    # Layers DLA cannot run go to the GPU instead of failing the build.
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)


def _load_timing_cache(config: Any, path: Path) -> None:
    data = b""
    if path.is_file():
        try:
            data = path.read_bytes()
        except OSError as exc:
            _LOG.warning("timing cache %s unreadable (%s); starting an empty one", path, exc)
    try:
        cache = config.create_timing_cache(data)
        fits = cache is not None and config.set_timing_cache(cache, ignore_mismatch=False)
    except Exception as exc:  # a corrupt file: TensorRT's bindings may raise rather than fail
        _LOG.debug("timing cache %s refused: %s", path, exc)
        fits = False
    if not fits:
        _LOG.warning("timing cache %s does not fit this build; starting an empty one", path)
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)


def _save_timing_cache(config: Any, path: Path) -> None:
    # The timing cache only speeds up the next build: failing to save it is not an error.
    try:
        atomic_write_bytes(path, bytes(memoryview(config.get_timing_cache().serialize())))
    except OSError as exc:
        _LOG.warning("could not save the timing cache to %s: %s", path, exc)


# -- storing engines ------------------------------------------------------------------------------
def save_engine(
    bundle: Bundle,
    cache_dir: Path,
    engine_cache: str | os.PathLike[str] | None,
    name: str,
    blob: bytes,
    fields: dict[str, Any],
) -> EngineRecord:
    """Write the engine atomically (beside the bundle, or into ``cache_dir`` when
    ``engine_cache`` is given or the bundle folder is read-only) and record it."""
    path, location = None, "cache"
    if engine_cache is None:
        path = _write_beside_bundle(bundle, cache_dir, name, blob)
        location = "bundle" if path is not None else location
    if path is None:
        try:
            path = atomic_write_bytes(cache_dir / name, blob)
        except OSError as exc:
            raise BuildError(
                f"cannot write the engine to the cache folder {cache_dir}: {exc.strerror}",
                "pass engine_cache=<a writable folder> or set $EDGEVISION_ENGINE_CACHE",
            ) from None
    record = EngineRecord(path=path, location=location, **fields)
    save_record(bundle, record)
    return record


def _write_beside_bundle(bundle: Bundle, cache_dir: Path, name: str, blob: bytes) -> Path | None:
    """The engine's path in the bundle folder, or None when that folder is read-only."""
    try:
        return atomic_write_bytes(bundle.root / name, blob)
    except OSError as exc:
        if exc.errno not in _READ_ONLY_ERRNOS:
            raise
        _LOG.warning(
            "bundle folder %s is read-only (%s); writing the engine to %s",
            bundle.root,
            exc.strerror,
            cache_dir,
        )
        return None


def save_record(bundle: Bundle, record: EngineRecord) -> None:
    """Into the manifest when the engine is in the bundle folder, else into a sidecar."""
    if record.location == "bundle":
        engines = bundle.manifest.setdefault("engines", {})
        engines[record.file] = record.to_dict(relative_to=bundle.root)
        bundle.save_manifest()
    else:
        write_sidecar(record)


def _existing_record(
    bundle: Bundle,
    cache_dir: Path,
    engine_cache: str | os.PathLike[str] | None,
    onnx_file: str,
    name: str,
) -> EngineRecord | None:
    records = [] if engine_cache is not None else bundle_records(bundle)
    records += cache_records(cache_dir, onnx_file)
    return next((r for r in records if r.file == name), None)
