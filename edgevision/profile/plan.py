"""Which of a bundle's artifacts can run here, on which backend, and how to label them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgevision.backends import BACKENDS
from edgevision.backends.select import RULES, choose_backend, is_backend_available
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


@dataclass
class Entry:
    """One artifact on one backend; ``skip`` says why it cannot run here (else ``None``)."""

    key: str
    artifact: Artifact
    backend: str
    note: str = ""
    skip: str | None = None
    options: dict[str, Any] = field(default_factory=dict)  # for the backend's from_bundle


def entry_key(artifact: Artifact, backend: str) -> str:
    """``int8-cpu`` on its own backend, ``int8-trt@ort`` on a stand-in one."""
    own = TARGET_BACKENDS.get(artifact.target, ("ort",))[0]
    return artifact.name if backend == own else f"{artifact.name}@{backend}"


def _skip_reason(backend: str) -> str | None:
    if is_backend_available(backend):
        return None
    return TRT_MISSING if backend == "tensorrt" else f"skipped: {backend} not installed"


def _extra_engines(bundle: Bundle, artifact: Artifact) -> list[Entry]:
    """TensorRT engines recorded in the manifest from a non-TensorRT artifact (fp16 from fp32).

    Read from the manifest's ``engines`` records as plain JSON, so that TensorRT stays
    unimported on a machine that cannot run it.
    """
    engines = bundle.manifest.get("engines")
    records = engines.values() if isinstance(engines, dict) else []
    precisions = sorted(
        {
            r["precision"]
            for r in records
            if isinstance(r, dict) and r.get("artifact") == artifact.name
        }
    )
    return [
        Entry(
            f"{artifact.name}@tensorrt:{p}",
            artifact,
            "tensorrt",
            f"TensorRT {p} engine built from {artifact.name}",
            _skip_reason("tensorrt"),
            {"precision": p},
        )
        for p in precisions
    ]


def _entries_for(bundle: Bundle, artifact: Artifact) -> list[Entry]:
    backends = TARGET_BACKENDS.get(artifact.target)
    if backends is None:
        return [
            Entry(artifact.name, artifact, "?", skip=f"skipped: unknown target {artifact.target!r}")
        ]
    out = [
        Entry(
            entry_key(artifact, backend),
            artifact,
            backend,
            NOTES.get((artifact.target, backend), ""),
            _skip_reason(backend),
            {"precision": artifact.precision} if backend == "tensorrt" else {},
        )
        for backend in backends
    ]
    if "tensorrt" not in backends:
        out += _extra_engines(bundle, artifact)
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
    return [e for name in names for e in _entries_for(bundle, available[name])]


def _default_artifact(cls: Any, bundle: Bundle) -> str | None:
    """The backend's own choice (ONNX Runtime: the build's ``deploy.cpu``), else its first
    preferred artifact the bundle has."""
    if hasattr(cls, "default_artifact"):
        return cls.default_artifact(bundle)
    return next((a for a in getattr(cls, "PREFERRED", ()) if a in bundle.artifacts), None)


def deployed_key(bundle: Bundle) -> str | None:
    """Key of the artifact the runtime would run here (``backend="auto"``), e.g. ``int8-cpu``.

    The backend is the runtime's own choice (`choose_backend`); the artifact is the one its
    selection rule names (``int8-trt`` for TensorRT, or the engine `edgevision engine`
    deployed by measurement: ``fp32@tensorrt:fp16``), else the backend's preferred one present
    in the bundle (ONNX Runtime: ``int8-cpu``, then ``fp32``).
    """
    try:
        backend = choose_backend(bundle)
    except EdgeVisionError:
        return None
    arts = bundle.artifacts
    rule = next((r for r in RULES if r.backend == backend and r.artifact in (None, *arts)), None)
    cls = BACKENDS.get(backend)
    default = getattr(cls, "default_artifact", None)
    preferred = (
        [default(bundle)] if default else [a for a in getattr(cls, "PREFERRED", ()) if a in arts]
    )
    name = (rule.artifact if rule else None) or next(iter(preferred), None)
    chosen = _engine_choice(bundle) if backend == "tensorrt" else None
    if chosen is not None and chosen["artifact"] in arts:  # `edgevision engine`'s, measured
        if chosen["precision"] != "int8":
            return f"{chosen['artifact']}@tensorrt:{chosen['precision']}"
        name = chosen["artifact"]
    return entry_key(arts[name], backend) if name else None


def _engine_choice(bundle: Bundle) -> dict[str, Any] | None:
    """The manifest's ``deploy.tensorrt`` when `edgevision engine` measured it, else None."""
    record = (bundle.manifest.get("deploy") or {}).get("tensorrt")
    ok = isinstance(record, dict) and record.get("measured") and "precision" in record
    return record if ok else None
