"""The deployment bundle: a folder the runtime runs as it is, verified on load.

Layout::

    bundle/
      manifest.json          schema version, ModelSpec, artifacts (+ SHA-256), every file's hash
      model.fp32.onnx        reference model
      model.int8.cpu.onnx    QDQ, U8 activations / S8 per-channel weights (ONNX Runtime on CPUs)
      model.int8.trt.onnx    QDQ, symmetric INT8 (TensorRT explicit quantization)
      calibration.json       the calibration manifest (relative paths + SHA-256)
      report.json, report.md accuracy report

Torch-free: the vehicle reads bundles.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgevision.errors import BundleError, SpecError
from edgevision.fileio import atomic_write_json, sha256_file
from edgevision.spec import ModelSpec

BUNDLE_SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Artifact:
    """One runnable model file in a bundle."""

    name: str  # e.g. "fp32", "int8-cpu", "int8-trt"
    file: str
    precision: str  # fp32 | fp16 | int8
    target: str  # any | cpu | tensorrt
    sha256: str
    extra: dict[str, Any]


class Bundle:
    """An opened (and by default verified) bundle folder."""

    def __init__(self, root: Path, manifest: dict[str, Any], spec: ModelSpec) -> None:
        self.root = root
        self.manifest = manifest
        self.spec = spec

    @classmethod
    def open(cls, path: str | os.PathLike[str], verify: bool = True) -> Bundle:
        """Open ``path``; with ``verify``, check every file's SHA-256 against the manifest."""
        root = Path(path)
        if not root.is_dir():
            raise BundleError(
                f"bundle {root} does not exist or is not a folder",
                "build one with `edgevision build`",
            )
        manifest = _read_manifest(root)
        try:
            spec = ModelSpec.from_dict(manifest.get("spec"))
        except SpecError as exc:
            raise BundleError(f"bundle {root}: {MANIFEST} spec: {exc.message}", exc.fix) from None
        bundle = cls(root, manifest, spec)
        if verify:
            bundle.verify()
        return bundle

    @property
    def artifacts(self) -> dict[str, Artifact]:
        """Runnable artifacts by name."""
        out = {}
        for name, a in self.manifest.get("artifacts", {}).items():
            extra = {
                k: v for k, v in a.items() if k not in ("file", "precision", "target", "sha256")
            }
            out[name] = Artifact(name, a["file"], a["precision"], a["target"], a["sha256"], extra)
        return out

    def artifact(self, name: str) -> Artifact:
        """One artifact by name; an unknown name lists the bundle's artifacts."""
        arts = self.artifacts
        if name not in arts:
            raise BundleError(
                f"bundle {self.root} has no artifact {name!r}",
                f"use one of: {', '.join(sorted(arts)) or '(none)'}",
            )
        return arts[name]

    def path(self, file: str) -> Path:
        """Absolute path of a file inside the bundle."""
        return self.root / file

    def verify(self) -> None:
        """Check that every file listed in the manifest exists and has its recorded hash."""
        for file, digest in self.manifest.get("files", {}).items():
            p = self.root / file
            if not p.is_file():
                raise BundleError(
                    f"bundle {self.root} is missing {file}",
                    "rebuild the bundle with `edgevision build`",
                )
            if sha256_file(p) != digest:
                raise BundleError(
                    f"bundle file {p} does not match its SHA-256 in {MANIFEST} "
                    "(modified or corrupted after the build)",
                    "rebuild the bundle, or restore the original file",
                )

    def save_manifest(self) -> None:
        """Rewrite manifest.json atomically (e.g. after adding an engine record)."""
        atomic_write_json(self.root / MANIFEST, self.manifest)


def _read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(
            f"bundle {root} has no {MANIFEST}", "point at a folder written by `edgevision build`"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"bundle {path} is not valid JSON: {exc}", "rebuild the bundle") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"bundle {path} is not a JSON object", "rebuild the bundle")
    version = manifest.get("schema_version")
    if version != BUNDLE_SCHEMA_VERSION:
        raise BundleError(
            f"bundle {root} has schema_version {version!r}; this edgevision reads "
            f"version {BUNDLE_SCHEMA_VERSION}",
            "rebuild the bundle with this edgevision version",
        )
    for key in ("spec", "artifacts", "files"):
        if key not in manifest:
            raise BundleError(f"bundle {path} lacks the {key!r} section", "rebuild the bundle")
    return manifest


def hash_files(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` except the manifest, by relative POSIX path."""
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def write_bundle(
    out: str | os.PathLike[str],
    files: dict[str, str | os.PathLike[str] | bytes],
    spec: ModelSpec,
    artifacts: dict[str, dict[str, Any]],
    **fields: Any,
) -> Path:
    """Write a bundle atomically: temp folder, every file hashed into the manifest, one rename.

    ``files`` maps a bundle-relative name to a source path (copied) or bytes. ``artifacts`` maps
    an artifact name to ``{"file", "precision", "target", ...}``; its ``sha256`` is filled in.
    ``fields`` (calibration, accuracy, versions, …) go into the manifest as they are. An
    interrupted build leaves any earlier bundle at ``out`` untouched.
    """
    import shutil
    from datetime import datetime, timezone

    from edgevision.fileio import atomic_dir

    out = Path(out)
    with atomic_dir(out) as tmp:
        for name, source in files.items():
            dest = tmp / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(source, bytes):
                dest.write_bytes(source)
            else:
                shutil.copyfile(source, dest)
        hashes = hash_files(tmp)
        for name, art in artifacts.items():
            if art["file"] not in hashes:
                raise BundleError(f"artifact {name!r} names {art['file']}, not among the files")
            art["sha256"] = hashes[art["file"]]
        manifest = {
            "schema_version": BUNDLE_SCHEMA_VERSION,
            "spec": spec.to_dict(),
            "artifacts": artifacts,
            "files": hashes,
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **fields,
        }
        atomic_write_json(tmp / MANIFEST, manifest)
    return out
