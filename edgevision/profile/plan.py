"""Which of a bundle's artifacts can run here, on which backend, and how to label them."""

from __future__ import annotations

from dataclasses import dataclass

from edgevision.backends import BACKENDS
from edgevision.backends.select import choose_backend, is_backend_available
from edgevision.bundle import Artifact, Bundle
from edgevision.errors import BundleError, EdgeVisionError

TRT_MISSING = "skipped: needs TensorRT + NVIDIA GPU"

# target → the backends that can run it; the first is the artifact's own (the device path).
# A TensorRT-flavoured QDQ model also runs on ONNX Runtime: useful on CPU, but not the numbers
# the device will see, so it is labelled as such.
TARGET_BACKENDS: dict[str, tuple[str, ...]] = {
    "any": ("ort",),
    "cpu": ("ort",),
    "tensorrt": ("tensorrt", "ort"),
}

NOTES: dict[tuple[str, str], str] = {
    ("tensorrt", "ort"): "TensorRT QDQ model run by ONNX Runtime on CPU (not the device path)",
    ("tensorrt", "tensorrt"): "TensorRT engine",
}


@dataclass(frozen=True)
class Entry:
    """One artifact on one backend; ``skip`` says why it cannot run here (else ``None``)."""

    key: str
    artifact: Artifact
    backend: str
    note: str = ""
    skip: str | None = None


def entry_key(artifact: Artifact, backend: str) -> str:
    """``int8-cpu`` on its own backend, ``int8-trt@ort`` on a stand-in one."""
    own = TARGET_BACKENDS.get(artifact.target, ("ort",))[0]
    return artifact.name if backend == own else f"{artifact.name}@{backend}"


def _entries_for(artifact: Artifact) -> list[Entry]:
    backends = TARGET_BACKENDS.get(artifact.target)
    if backends is None:
        return [
            Entry(artifact.name, artifact, "?", skip=f"skipped: unknown target {artifact.target!r}")
        ]
    out = []
    for backend in backends:
        skip = None
        if not is_backend_available(backend):
            skip = TRT_MISSING if backend == "tensorrt" else f"skipped: {backend} not installed"
        note = NOTES.get((artifact.target, backend), "")
        out.append(Entry(entry_key(artifact, backend), artifact, backend, note, skip))
    return out


def plan_entries(bundle: Bundle, artifacts: list[str] | None = None) -> list[Entry]:
    """Entries for ``artifacts`` (default: all of the bundle's), skipped ones included."""
    available = bundle.artifacts
    names = list(available) if not artifacts else list(dict.fromkeys(artifacts))
    for name in names:
        if name not in available:
            raise BundleError(
                f"bundle {bundle.root} has no artifact {name!r}",
                f"use one of: {', '.join(sorted(available)) or '(none)'}",
            )
    if not names:
        raise BundleError(f"bundle {bundle.root} lists no artifacts", "rebuild the bundle")
    return [e for name in names for e in _entries_for(available[name])]


def deployed_key(bundle: Bundle) -> str | None:
    """Key of the artifact the runtime would run here (``backend="auto"``), e.g. ``int8-cpu``.

    The backend is the runtime's own choice (`choose_backend`); the artifact is that backend's
    preferred one present in the bundle (ONNX Runtime: ``int8-cpu``, then ``fp32``), else the
    first artifact made for it.
    """
    try:
        backend = choose_backend(bundle)
    except EdgeVisionError:
        return None
    arts = bundle.artifacts
    preferred = [a for a in getattr(BACKENDS.get(backend), "PREFERRED", ()) if a in arts]
    own = [n for n, a in arts.items() if TARGET_BACKENDS.get(a.target, ("",))[0] == backend]
    name = next(iter(preferred + own), None)
    return entry_key(arts[name], backend) if name else None
