"""Where engines live and what they are called.

An engine is tied to the TensorRT version, the GPU and the ONNX it was built from, so all of
them go into its name, the way jetson-inference names its engine cache::

    model.int8.trt.onnx.<trt-version>.<gpu>.sm<major><minor>.<precision>.<device>.<hash8>.engine

``<gpu>`` is the device name with its multiprocessor count and memory size
(``orin-16sm-61g``): every Orin module reports "Orin" at SM 8.7, and an AGX Orin engine must
not be taken for an Orin Nano one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgevision.backends.tensorrt.staleness import Environment

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


def gpu_tag(gpu_name: str, multiprocessors: int | None, memory_gib: int | None) -> str:
    """``"Orin"``, 16 SMs, 61 GiB → ``"orin-16sm-61g"`` (the parts that are known)."""
    parts = [slug(gpu_name)]
    parts += [f"{multiprocessors}sm"] if multiprocessors else []
    parts += [f"{memory_gib}g"] if memory_gib else []
    return "-".join(parts)


def device_tag(dla_core: int | None) -> str:
    """``"gpu"``, or ``"dla0"`` for an engine built for DLA core 0."""
    return "gpu" if dla_core is None else f"dla{dla_core}"


def _machine_tag(env: Environment) -> str:
    gpu = gpu_tag(env.gpu_name, env.multiprocessors, env.memory_gib)
    return f"{env.trt_version}.{gpu}.{sm_tag(env.compute_capability)}"


def engine_file_name(
    onnx_file: str,
    env: Environment,
    precision: str,
    onnx_sha256: str,
    dla_core: int | None = None,
) -> str:
    """The engine's file name: everything it is tied to, readable at a glance."""
    parts = (onnx_file, _machine_tag(env), precision, device_tag(dla_core), onnx_sha256[:8])
    return ".".join(parts) + ENGINE_SUFFIX


def timing_cache_name(env: Environment) -> str:
    """A timing cache is only valid for one TensorRT version on one GPU model."""
    return f"timing.{_machine_tag(env)}.cache"


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
