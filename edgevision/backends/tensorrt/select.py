"""Which recorded engine of a bundle runs on this machine, or why none does.

Candidates are the engines recorded in the bundle manifest and in the engine cache folder for
the artifact of the asked precision, newest first. The first that was built for this TensorRT
version, GPU and ONNX (see `staleness`), and whose file is the one that was built, is chosen;
otherwise the error lists what differs for each, and ``rebuild_if_stale`` rebuilds the newest
with the same options (`build.build_engine`).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from edgevision.backends.tensorrt.build import PRECISION_ARTIFACT, build_engine
from edgevision.backends.tensorrt.cuda_memory import open_memory
from edgevision.backends.tensorrt.naming import resolve_engine_cache
from edgevision.backends.tensorrt.staleness import (
    BUILD_FIX,
    EngineRecord,
    Environment,
    StaleEngineError,
    bundle_records,
    cache_records,
    current_environment,
    describe,
    file_problem,
    identity_differences,
)
from edgevision.backends.tensorrt.trt_api import import_tensorrt
from edgevision.errors import BackendError

if TYPE_CHECKING:
    from edgevision.bundle import Bundle

_LOG = logging.getLogger(__name__)


def select_engine(
    bundle: Bundle,
    precision: str | None = "int8",
    artifact: str | None = None,
    engine_cache: str | os.PathLike[str] | None = None,
    rebuild_if_stale: bool = False,
) -> EngineRecord:
    """The engine of ``bundle`` that fits this machine, or a clear error.

    ``precision`` None is the engine `choose_engine` deployed on this device (the manifest's
    measured ``deploy.tensorrt``); without that record, INT8 (FP16 for ``artifact="fp32"``).
    An engine built for another TensorRT version, GPU or ONNX (or whose bytes changed) is
    refused with what differs; ``rebuild_if_stale`` rebuilds it here with the same options.
    """
    here = _this_machine()
    if precision is None:
        precision = _default_precision(bundle, here, artifact)
    art = bundle.artifact(_artifact_for(precision, artifact))
    candidates = _candidates(bundle, precision, art.file, engine_cache)
    # A list, not a dict keyed by record: a record with parity figures is unhashable.
    problems: list[tuple[EngineRecord, list[str]]] = []
    for record in candidates:
        diffs = identity_differences(record, here, art.sha256)
        problem = file_problem(record) if not diffs else None
        if not diffs and problem is None:
            return record
        problems.append((record, diffs or [problem]))
    if rebuild_if_stale:
        return _rebuild_like(bundle, candidates[0], engine_cache)
    raise _stale_error(bundle, precision, here, problems)


def _default_precision(bundle: Bundle, here: Environment, artifact: str | None) -> str:
    """The recorded choice for this device when it fits ``artifact``; else INT8, or FP16 for the
    FP32 artifact."""
    from edgevision.backends.tensorrt.deploy import deployed_precision

    chosen = deployed_precision(bundle, here)
    if chosen is not None and artifact in (None, PRECISION_ARTIFACT[chosen]):
        return chosen
    return "fp16" if artifact == "fp32" else "int8"


def _this_machine() -> Environment:
    trt = import_tensorrt()
    memory = open_memory()
    try:
        return current_environment(trt, memory)
    finally:
        memory.close()


def _candidates(
    bundle: Bundle,
    precision: str,
    onnx_file: str,
    engine_cache: str | os.PathLike[str] | None,
) -> list[EngineRecord]:
    """Recorded engines of ``precision`` built from ``onnx_file``, newest first; at least one."""
    cache_dir = resolve_engine_cache(engine_cache)
    candidates = [
        r
        for r in bundle_records(bundle) + cache_records(cache_dir, onnx_file)
        if r.precision == precision and r.onnx_file == onnx_file
    ]
    if not candidates:
        raise BackendError(
            f"bundle {bundle.root} has no TensorRT {precision} engine "
            f"(looked in the bundle and in {cache_dir})",
            BUILD_FIX.format(bundle=bundle.root),
        )
    return sorted(candidates, key=lambda r: r.built_at, reverse=True)


def _stale_error(
    bundle: Bundle,
    precision: str,
    here: Environment,
    problems: list[tuple[EngineRecord, list[str]]],
) -> StaleEngineError:
    lines = "\n".join(f"  - {describe(r)}: " + "; ".join(ps) for r, ps in problems)
    return StaleEngineError(
        f"bundle {bundle.root} has no usable TensorRT {precision} engine for this machine "
        f"(TensorRT {here.trt_version}, {here.gpu_name} with {here.multiprocessors} SMs and "
        f"{here.memory_gib} GiB, sm {here.compute_capability}):\n{lines}",
        BUILD_FIX.format(bundle=bundle.root) + " (or pass rebuild_if_stale=True)",
    )


def _artifact_for(precision: str, artifact: str | None) -> str:
    if precision not in PRECISION_ARTIFACT:
        raise BackendError(
            f"unknown TensorRT precision {precision!r}",
            f"use one of: {', '.join(PRECISION_ARTIFACT)}",
        )
    wanted = PRECISION_ARTIFACT[precision]
    if artifact is not None and artifact != wanted:
        raise BackendError(
            f"a TensorRT {precision} engine is built from the {wanted!r} artifact, "
            f"not {artifact!r}",
            f"omit artifact, or pass artifact={wanted!r}",
        )
    return wanted


def _rebuild_like(bundle: Bundle, record: EngineRecord, engine_cache: Any) -> EngineRecord:
    _LOG.warning("rebuilding stale TensorRT engine %s for this machine", record.file)
    dla = None if record.device == "gpu" else int(record.device.removeprefix("dla"))
    return build_engine(
        bundle.root,
        precision=record.precision,
        workspace_mb=record.workspace_mb,
        min_batch=record.min_batch,
        opt_batch=record.opt_batch,
        max_batch=record.max_batch,
        dla_core=dla,
        fp16_fallback=record.fp16_fallback,
        opt_level=record.opt_level,
        engine_cache=engine_cache,
        rebuild_if_stale=True,
        parity_images=[],
    )
