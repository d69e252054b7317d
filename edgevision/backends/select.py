"""Which backend runs a bundle here: a table of rules, first match wins.

``choose_backend`` walks ``RULES`` in order and takes the first backend whose artifact the bundle
has and whose libraries and devices this machine has. A new backend (TensorRT today, others
later) plugs in by adding a row; the pipeline and the profiler only ever call ``create_runner``.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edgevision.backends import BACKENDS
from edgevision.errors import BackendError, ConfigError, RegistryError

if TYPE_CHECKING:
    from edgevision.backends.base import Runner
    from edgevision.bundle import Bundle

log = logging.getLogger(__name__)

AUTO = "auto"


@dataclass(frozen=True)
class Rule:
    """Use ``backend`` when the bundle has ``artifact`` (None: any) and the machine can run it."""

    backend: str
    artifact: str | None
    why: str


RULES: tuple[Rule, ...] = (
    Rule(
        "tensorrt", "int8-trt", "TensorRT and a CUDA device are present and the bundle has int8-trt"
    ),
    Rule("ort", None, "ONNX Runtime runs every bundle on the CPU"),
)

# Why a backend cannot be used here, keyed by name, for the error's "fix" line.
INSTALL_HINTS = {
    "tensorrt": "on a machine with an NVIDIA GPU, `pip install 'edgevision[tensorrt]'`; "
    "or pass --backend ort",
    "ort": "`pip install onnxruntime` (or onnxruntime-gpu)",
    "torch": "`pip install 'edgevision[train]'` (the PyTorch reference is not for the vehicle)",
}


# --precision: the artifact each backend runs for it (the build's choice is the default).
PRECISION_ARTIFACTS: dict[str, dict[str, str]] = {
    "int8": {"ort": "int8-cpu", "tensorrt": "int8-trt"},
    "fp32": {"ort": "fp32", "tensorrt": "fp32", "torch": "fp32"},
}


def artifact_for_precision(bundle: Bundle, backend: str, precision: str) -> str:
    """The artifact ``backend`` runs when ``precision`` is forced, checked against the bundle."""
    by_backend = PRECISION_ARTIFACTS.get(precision)
    if by_backend is None:
        raise ConfigError(
            f"unknown precision {precision!r}", f"use one of: {', '.join(PRECISION_ARTIFACTS)}"
        )
    name = by_backend.get(backend)
    if name is None or name not in bundle.artifacts:
        raise BackendError(
            f"bundle {bundle.root} has no {precision} artifact for backend {backend!r}",
            f"its artifacts: {', '.join(sorted(bundle.artifacts))}; drop --precision to run "
            "the one the build deployed",
        )
    return name


def backend_class(name: str) -> type[Runner] | None:
    """The Runner class registered as ``name``, or None when its module cannot be imported."""
    try:
        return BACKENDS.get(name)
    except RegistryError:
        raise
    except ImportError as exc:
        # A backend whose module (or the library it wraps) is missing is simply not here.
        log.debug("backend %s cannot be imported: %s", name, exc)
        return None


def is_backend_available(name: str) -> bool:
    """Whether backend ``name`` can be imported and says this machine can run it."""
    cls = backend_class(name)
    if cls is None:
        return False
    try:
        return bool(cls.is_available())
    except Exception as exc:  # a probe that crashes (driver trouble) means "not here"
        log.debug("backend %s availability probe failed: %s", name, exc)
        return False


def choose_backend(bundle: Bundle) -> str:
    """The first backend in `RULES` that fits ``bundle`` and this machine."""
    artifacts = bundle.artifacts
    for rule in RULES:
        if rule.artifact is not None and rule.artifact not in artifacts:
            continue
        if is_backend_available(rule.backend):
            log.info("backend %s: %s", rule.backend, rule.why)
            return rule.backend
    raise BackendError(
        f"no backend on this machine can run bundle {bundle.root} "
        f"(artifacts: {', '.join(sorted(artifacts)) or 'none'})",
        f"install ONNX Runtime: {INSTALL_HINTS['ort']}",
    )


def _accepts(func: Any, name: str) -> bool:
    # Only a parameter named so: a catch-all **options would swallow it silently.
    return name in inspect.signature(func).parameters


def create_runner(
    bundle: Bundle,
    backend: str = AUTO,
    artifact: str | None = None,
    threads: int = 0,
    force_precision: str | None = None,
    **options: Any,
) -> Runner:
    """An (inactive) Runner for ``bundle`` on ``backend`` (``"auto"``: `choose_backend`).

    ``force_precision`` (``int8`` / ``fp32``) runs that artifact instead of the one the build
    deployed (``precision`` itself is a TensorRT option: the engine's precision).
    ``threads`` goes to backends that take it (ONNX Runtime); ``options`` are passed on to the
    backend's ``from_bundle`` as they are (e.g. ``engine_cache`` for TensorRT).
    """
    name = choose_backend(bundle) if backend == AUTO else backend
    if name not in BACKENDS:
        raise BackendError(
            f"unknown backend {name!r}", f"use one of: {', '.join([AUTO, *BACKENDS.names()])}"
        )
    cls = backend_class(name)
    if cls is None or not is_backend_available(name):
        raise BackendError(
            f"backend {name!r} is not available on this machine",
            INSTALL_HINTS.get(name, f"install the libraries backend {name!r} needs"),
        )
    if force_precision is not None:
        if artifact is not None:
            raise ConfigError(f"both an artifact ({artifact}) and --precision {force_precision}")
        artifact = artifact_for_precision(bundle, name, force_precision)
    kwargs = dict(options)
    if _accepts(cls.from_bundle, "threads"):
        kwargs["threads"] = threads
    return cls.from_bundle(bundle, artifact=artifact, **kwargs)


def backend_names() -> list[str]:
    """Valid values of ``--backend``: ``auto`` and every registered backend."""
    return [AUTO, *BACKENDS.names()]
