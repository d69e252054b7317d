"""Where engines live and what they are called.

An engine is tied to the TensorRT version, the GPU and the ONNX it was built from, so all of
them go into its name, the way jetson-inference names its engine cache::

    model.int8.trt.onnx.<trt-version>.<gpu>.sm<major><minor>.<precision>.<device>.<hash8>.engine
"""

from __future__ import annotations

import os
import re
from pathlib import Path

ENV_ENGINE_CACHE = "EDGEVISION_ENGINE_CACHE"
ENGINE_SUFFIX = ".engine"
RECORD_SUFFIX = ".json"  # sidecar record of an engine kept outside a bundle


def slug(text: str) -> str:
    """Lower-case, file-name-safe form of a GPU name: ``"NVIDIA H200"`` → ``"nvidia-h200"``."""
    out = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return out or "unknown"


def sm_tag(compute_capability: str) -> str:
    """``"8.7"`` → ``"sm87"``."""
    return "sm" + compute_capability.replace(".", "")


def device_tag(dla_core: int | None) -> str:
    """``"gpu"``, or ``"dla0"`` for an engine built for DLA core 0."""
    return "gpu" if dla_core is None else f"dla{dla_core}"


def engine_file_name(
    onnx_file: str,
    trt_version: str,
    gpu_name: str,
    compute_capability: str,
    precision: str,
    onnx_sha256: str,
    dla_core: int | None = None,
) -> str:
    """The engine's file name: everything it is tied to, readable at a glance."""
    parts = (
        onnx_file,
        trt_version,
        slug(gpu_name),
        sm_tag(compute_capability),
        precision,
        device_tag(dla_core),
        onnx_sha256[:8],
    )
    return ".".join(parts) + ENGINE_SUFFIX


def timing_cache_name(trt_version: str, gpu_name: str, compute_capability: str) -> str:
    """A timing cache is only valid for one TensorRT version on one GPU model."""
    return f"timing.{trt_version}.{slug(gpu_name)}.{sm_tag(compute_capability)}.cache"


def default_engine_cache() -> Path:
    """``$EDGEVISION_ENGINE_CACHE``, else ``$XDG_CACHE_HOME/edgevision/engines``, else
    ``~/.cache/edgevision/engines``."""
    explicit = os.environ.get(ENV_ENGINE_CACHE)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edgevision" / "engines"


def resolve_engine_cache(engine_cache: str | os.PathLike[str] | None) -> Path:
    """An explicit cache folder, or the default one."""
    return Path(engine_cache).expanduser() if engine_cache else default_engine_cache()
