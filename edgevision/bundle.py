"""The deployment bundle: a folder the runtime runs as it is, verified on load.

Layout::

    bundle/
      manifest.json          schema version, ModelSpec, artifacts (+ SHA-256), every file's hash
      model.fp32.onnx        reference model
      model.int8.cpu.onnx    QDQ, U8 activations / S8 per-channel weights (ONNX Runtime on CPUs)
      model.int8.trt.onnx    QDQ, symmetric INT8 (TensorRT explicit quantization)
      calibration.json       the calibration manifest (relative paths + SHA-256)
      report.json, report.md accuracy report

A bundle is a closed box: every path in the manifest is a plain relative POSIX path inside the
folder, every artifact's file is listed in ``files`` with the same SHA-256, and the folder holds
no symbolic link and no file the manifest does not list. The one exception are the TensorRT
engines that `edgevision.backends.tensorrt.build` writes after the build: recorded under
``"engines"`` (and verified by their own records), with a timing cache those records name.

Torch-free: the vehicle reads bundles.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgevision.errors import BundleError, SpecError
from edgevision.fileio import (
    atomic_write_json,
    atomic_write_text,
    check_version,
    read_json,
    sha256_file,
)
from edgevision.spec import ModelSpec

BUNDLE_SCHEMA_VERSION = 1
MANIFEST = "manifest.json"

REBUILD = "rebuild the bundle with `edgevision build`"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_DRIVE = re.compile(r"[A-Za-z]:")
_ARTIFACT_FIELDS = ("file", "precision", "target", "sha256")
# Path fields of the manifest's sections that name bundle files: (section, ..., field).
_PATH_FIELDS = (
    ("calibration", "file"),
    ("report", "json"),
    ("report", "markdown"),
    ("report", "plot"),
    ("report", "sensitivity", "json"),
    ("report", "sensitivity", "markdown"),
    ("report", "sensitivity", "plot"),
)
# Sections that code reads with ``.get`` / ``.items()``: an object (or null) when present.
_SECTIONS = ("build", "calibration", "accuracy", "report", "versions")
# What the torch-free profiler reads from an engine record (the rest is `EngineRecord`'s), and
# the text fields that must be strings when present.
_ENGINE_REQUIRED = ("artifact", "precision")
_ENGINE_TEXT_FIELDS = ("path", "artifact", "onnx_file", "precision", "sha256")
# Records carrying this suffix are a TensorRT timing cache (see naming.timing_cache_name).
_TIMING_CACHE_SUFFIX = ".cache"


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
        """Open ``path``; with ``verify``, check every file's SHA-256 against the manifest.

        The manifest's shape and paths are always checked; ``verify`` adds the hashes and the
        closed-box check (no symbolic link, no file the manifest does not list).
        """
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
        arts = _section(self.root, self.manifest, "artifacts")
        return {name: _artifact(self.root, name, entry) for name, entry in arts.items()}

    def deployed(self, target: str) -> str | None:
        """The artifact the build chose for ``target`` (``deploy.<target>.artifact``), or None
        for a bundle built before that record existed."""
        record = (self.manifest.get("deploy") or {}).get(target)
        return record.get("artifact") if isinstance(record, dict) else None

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
        """Path of a file inside the bundle; a name that leads outside it, or through a
        symbolic link, is refused."""
        return member_path(self.root, file)

    def verify(self) -> None:
        """Check the manifest, that the folder holds exactly its files (no link, nothing
        unlisted but the recorded TensorRT engines), and every file's SHA-256."""
        check_manifest(self.root, self.manifest)
        _check_contents(self.root, allowed_files(self.root, self.manifest))
        for file, digest in self.manifest["files"].items():
            p = member_path(self.root, file, f"{MANIFEST} files entry")
            if not _is_regular(p):
                raise BundleError(f"bundle {self.root} is missing {file}", REBUILD)
            if _hash(p) != digest:
                raise BundleError(
                    f"bundle file {p} does not match its SHA-256 in {MANIFEST} "
                    "(modified or corrupted after the build)",
                    "rebuild the bundle, or restore the original file",
                )

    def save_manifest(self) -> None:
        """Rewrite manifest.json atomically (e.g. after adding an engine record)."""
        atomic_write_json(member_path(self.root, MANIFEST), self.manifest)


# -- names and paths --------------------------------------------------------------------------
def check_name(root: Path, name: Any, where: str) -> str:
    """``name`` if it is a plain relative POSIX path (no ``..``, ``.``, empty component,
    absolute path, backslash, drive or control character), else a `BundleError`."""
    if not isinstance(name, str):
        raise BundleError(
            f"bundle {root}: {where} must be a file name, got {type(name).__name__} {_clip(name)}",
            REBUILD,
        )
    why = _name_problem(name)
    if why:
        raise BundleError(
            f"bundle {root}: {where} {name!r} is not a plain relative path inside "
            f"the bundle ({why})",
            REBUILD + "; a bundle never points outside its own folder",
        )
    return name


def _name_problem(name: str) -> str | None:
    if not name:
        return "empty"
    try:
        os.fsencode(name)
    except UnicodeEncodeError:
        return "not a valid file name"
    if any(ord(c) < 32 or c == "\x7f" for c in name):
        return "control character"
    if "\\" in name:
        return "backslash"
    if name.startswith("/"):
        return "absolute path"
    if _DRIVE.match(name):
        return "drive letter"
    parts = name.split("/")
    if "" in parts:
        return "empty component"
    if ".." in parts or "." in parts:
        return "'.' or '..' component"
    return None


def member_path(root: Path, name: Any, where: str = "file name") -> Path:
    """``root / name`` once ``name`` is a plain relative path and no existing component on the
    way is a symbolic link (a missing file is the caller's to report)."""
    check_name(root, name, where)
    path = root
    for part in name.split("/"):
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except (FileNotFoundError, NotADirectoryError):
            return root / name
        except OSError as exc:
            raise _unreadable(root, path, exc) from None
        if stat.S_ISLNK(mode):
            raise _link_error(root, path.relative_to(root).as_posix())
    return root / name


def _shown(name: str) -> str:
    """A name from the disk as one printable line (quoted when it holds odd characters)."""
    return name if name.isprintable() else repr(name)


def _link_error(root: Path, rel: str) -> BundleError:
    return BundleError(
        f"bundle {root}: {_shown(rel)} is a symbolic link (a bundle holds its own files, no links)",
        "replace the link with the file itself, or " + REBUILD,
    )


def _unreadable(root: Path, path: Path, exc: OSError) -> BundleError:
    return BundleError(f"bundle {root}: cannot read {path}: {exc.strerror or exc}", REBUILD)


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _hash(path: Path) -> str:
    try:
        return sha256_file(path)
    except OSError as exc:
        reason = exc.strerror or exc
        raise BundleError(f"cannot read bundle file {path}: {reason}", REBUILD) from None


def _clip(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- the manifest -----------------------------------------------------------------------------
def _read_manifest(root: Path) -> dict[str, Any]:
    path = member_path(root, MANIFEST)
    if not path.exists():
        raise BundleError(
            f"bundle {root} has no {MANIFEST}", "point at a folder written by `edgevision build`"
        )
    manifest = read_json(path, "bundle manifest", BundleError)
    if not isinstance(manifest, dict):
        raise BundleError(f"bundle {path} is not a JSON object", "rebuild the bundle")
    check_version(
        manifest.get("schema_version"),
        BUNDLE_SCHEMA_VERSION,
        f"bundle {root}",
        BundleError,
        "rebuild the bundle with this edgevision version",
    )
    for key in ("spec", "artifacts", "files"):
        if key not in manifest:
            raise BundleError(f"bundle {path} lacks the {key!r} section", "rebuild the bundle")
    check_manifest(root, manifest)
    return manifest


def check_manifest(root: Path, manifest: dict[str, Any]) -> None:
    """The manifest's shape: files (name → SHA-256), artifacts consistent with them, engine
    records, the path fields of its sections; a `BundleError` naming the first wrong field."""
    files = _section(root, manifest, "files")
    for name, digest in files.items():
        check_name(root, name, f"{MANIFEST} files entry")
        if name == MANIFEST:
            raise BundleError(f"bundle {root}: {MANIFEST} lists itself in 'files'", REBUILD)
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise BundleError(
                f"bundle {root}: {MANIFEST} files[{name!r}] is not a SHA-256 hex digest: "
                f"{_clip(digest)}",
                REBUILD,
            )
    for name, entry in _section(root, manifest, "artifacts").items():
        _check_artifact(root, _artifact(root, name, entry), files)
    for key in _SECTIONS:
        if manifest.get(key) is not None:
            _section(root, manifest, key)
    _check_path_fields(root, manifest, files)
    _check_accuracy(root, manifest.get("accuracy"))
    _check_deploy(root, manifest)
    _engine_records(root, manifest)


def _check_deploy(root: Path, manifest: dict[str, Any]) -> None:
    """``deploy``: target → record whose ``artifact`` is one of the bundle's artifacts."""
    if manifest.get("deploy") is None:
        return
    for target, record in _section(root, manifest, "deploy").items():
        artifact = record.get("artifact") if isinstance(record, dict) else None
        if not isinstance(artifact, str) or artifact not in manifest["artifacts"]:
            raise BundleError(
                f"bundle {root}: {MANIFEST} deploy[{_clip(target)}] names no artifact of the "
                f"bundle: {_clip(record)}",
                REBUILD,
            )


def _section(root: Path, manifest: dict[str, Any], key: str) -> dict[str, Any]:
    value = manifest.get(key)
    if not isinstance(value, dict):
        raise BundleError(
            f"bundle {root}: {MANIFEST} {key!r} must be an object, got {type(value).__name__}",
            REBUILD,
        )
    return value


def _artifact(root: Path, name: str, entry: Any) -> Artifact:
    if not isinstance(entry, dict):
        raise BundleError(
            f"bundle {root}: {MANIFEST} artifact {name!r} must be an object, "
            f"got {type(entry).__name__}",
            REBUILD,
        )
    for key in _ARTIFACT_FIELDS:
        if not isinstance(entry.get(key), str):
            got = "is missing" if key not in entry else f"is {type(entry[key]).__name__}"
            raise BundleError(
                f"bundle {root}: {MANIFEST} artifact {name!r} field {key!r} {got}, not a string",
                REBUILD,
            )
    check_name(root, entry["file"], f"{MANIFEST} artifact {name!r} file")
    extra = {k: v for k, v in entry.items() if k not in _ARTIFACT_FIELDS}
    file, precision, target, sha256 = (entry[k] for k in _ARTIFACT_FIELDS)
    return Artifact(name, file, precision, target, sha256, extra)


def _check_artifact(root: Path, art: Artifact, files: dict[str, Any]) -> None:
    if art.file not in files:
        raise BundleError(
            f"bundle {root}: artifact {art.name!r} names {art.file!r}, which {MANIFEST} does "
            "not list in 'files' (so it was never verified)",
            REBUILD,
        )
    if art.sha256 != files[art.file]:
        raise BundleError(
            f"bundle {root}: artifact {art.name!r} records SHA-256 {art.sha256[:16]}… for "
            f"{art.file}, but 'files' records {files[art.file][:16]}…",
            REBUILD,
        )


def _check_path_fields(root: Path, manifest: dict[str, Any], files: dict[str, Any]) -> None:
    for keys in _PATH_FIELDS:
        value: Any = manifest
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            continue
        where = ".".join(keys)
        check_name(root, value, f"{MANIFEST} {where}")
        if value not in files:
            raise BundleError(
                f"bundle {root}: {MANIFEST} {where} names {value!r}, which 'files' does not list",
                REBUILD,
            )


# accuracy.metric → the key of each model's headline figure (a v1 bundle has no metric: top-1)
HEADLINE_KEYS = {"top-1": "top1", "mAP@[.5:.95]": "map", "mIoU": "miou"}


def _check_accuracy(root: Path, accuracy: Any) -> None:
    """What `edgevision inspect` prints from the accuracy section."""
    if not isinstance(accuracy, dict) or accuracy.get("models") is None:
        return
    models = accuracy["models"]
    headline = HEADLINE_KEYS.get(accuracy.get("metric", "top-1"), "top1")
    ok = isinstance(models, dict) and all(
        isinstance(m, dict)
        and _is_number(m.get(headline))
        and all(m.get(k) is None or _is_number(m[k]) for k in ("drop_points", "agreement"))
        for m in models.values()
    )
    if not ok:
        raise BundleError(
            f"bundle {root}: {MANIFEST} accuracy.models must map artifacts to "
            f"{{{headline}, drop_points, agreement}} numbers",
            REBUILD,
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# -- TensorRT engines: the one kind of file written into a bundle after the build ---------------
def _engine_records(root: Path, manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``"engines"`` section, checked: each key is an engine file name at the bundle's top
    level (``*.engine``, not a listed file) and its record's ``path`` is that name."""
    if "engines" not in manifest:
        return {}
    engines = _section(root, manifest, "engines")
    if not engines:
        return {}
    from edgevision.backends.tensorrt.naming import ENGINE_SUFFIX

    for name, record in engines.items():
        check_name(root, name, f"{MANIFEST} engines entry")
        if "/" in name or not name.endswith(ENGINE_SUFFIX) or name in manifest["files"]:
            raise BundleError(
                f"bundle {root}: {MANIFEST} engines entry {name!r} is not a TensorRT engine "
                f"file name (<model>…{ENGINE_SUFFIX} in the bundle's top folder)",
                "rebuild the engine with `edgevision engine BUNDLE`",
            )
        _check_engine_record(root, name, record)
    return engines


def _check_engine_record(root: Path, name: str, record: Any) -> None:
    bad = None
    if not isinstance(record, dict):
        bad = f"is {type(record).__name__}, not an object"
    else:
        wrong = [
            k
            for k in _ENGINE_TEXT_FIELDS
            if (k in record or k in _ENGINE_REQUIRED) and not isinstance(record.get(k), str)
        ]
        cache = record.get("timing_cache")
        if wrong:
            bad = f"field(s) {', '.join(wrong)} missing or not strings"
        elif record.get("path", name) != name:
            bad = f"path {record['path']!r} is not the engine's own name"
        elif cache is not None and not isinstance(cache, str):
            bad = f"timing_cache is {type(cache).__name__}, not a path"
    if bad:
        raise BundleError(
            f"bundle {root}: {MANIFEST} engine record {name!r} {bad}",
            "rebuild the engine with `edgevision engine BUNDLE`",
        )


def allowed_files(root: Path, manifest: dict[str, Any]) -> set[str]:
    """Every file the bundle folder may hold: the manifest, its listed files, the engines
    recorded under ``"engines"`` and the timing caches those records name (top level only)."""
    engines = _engine_records(root, manifest)
    caches = {
        Path(rec["timing_cache"]).name
        for rec in engines.values()
        if isinstance(rec.get("timing_cache"), str)
    }
    caches = {c for c in caches if c.endswith(_TIMING_CACHE_SUFFIX) and not _name_problem(c)}
    return {MANIFEST, *manifest["files"], *engines, *caches}


# -- the folder -------------------------------------------------------------------------------
def _walk(root: Path) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Every entry under ``root`` (relative POSIX name, entry), never following a link."""
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            with os.scandir(root / rel if rel else root) as entries:
                found = sorted(entries, key=lambda e: e.name)
        except OSError as exc:
            raise _unreadable(root, root / rel, exc) from None
        for entry in found:
            name = f"{rel}/{entry.name}" if rel else entry.name
            yield name, entry
            if entry.is_dir(follow_symlinks=False):
                stack.append(name)


def _regular_files(root: Path) -> Iterator[str]:
    """Relative names of the regular files under ``root``; a link or a special file (FIFO,
    socket, device) is refused by name."""
    for name, entry in _walk(root):
        if entry.is_symlink():
            raise _link_error(root, name)
        if entry.is_dir(follow_symlinks=False):
            continue
        if not entry.is_file(follow_symlinks=False):
            raise BundleError(f"bundle {root}: {_shown(name)} is not a regular file", REBUILD)
        yield name


def _check_contents(root: Path, allowed: set[str]) -> None:
    for name in _regular_files(root):
        if name not in allowed:
            raise BundleError(
                f"bundle {root} holds {_shown(name)}, which {MANIFEST} does not list "
                "(a bundle holds only the files its manifest hashes)",
                "remove the file, or " + REBUILD,
            )


# -- writing ------------------------------------------------------------------------------------
def hash_files(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` except the manifest, by relative POSIX path.

    A symbolic link (or a FIFO, socket, device) under ``root`` is refused: a bundle holds its
    own bytes.
    """
    return {name: _hash(root / name) for name in sorted(_regular_files(root)) if name != MANIFEST}


def write_bundle(
    out: str | os.PathLike[str],
    files: dict[str, str | os.PathLike[str] | bytes],
    spec: ModelSpec,
    artifacts: dict[str, dict[str, Any]],
    **fields: Any,
) -> Path:
    """Write a bundle atomically: temp folder, every file hashed into the manifest, one rename.

    ``files`` maps a bundle-relative name (a plain relative POSIX path) to a source path
    (copied, a link's target bytes) or bytes. ``artifacts`` maps an artifact name to
    ``{"file", "precision", "target", ...}``; its ``sha256`` is filled in. ``fields``
    (calibration, accuracy, versions, …) go into the manifest as they are. An interrupted
    build leaves any earlier bundle at ``out`` untouched.
    """
    return write_bundle_manifest(out, files, spec, artifacts, **fields)[0]


def write_bundle_manifest(
    out: str | os.PathLike[str],
    files: dict[str, str | os.PathLike[str] | bytes],
    spec: ModelSpec,
    artifacts: dict[str, dict[str, Any]],
    **fields: Any,
) -> tuple[Path, dict[str, Any]]:
    """`write_bundle`, returning the manifest too, as written (parsed back from its JSON)."""
    import shutil
    from datetime import datetime, timezone

    from edgevision.fileio import atomic_dir

    out = Path(out)
    for name in files:
        if check_name(out, name, "file name") == MANIFEST:
            raise BundleError(f"bundle file name {MANIFEST} is the bundle's own manifest")
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
            file = art.get("file") if isinstance(art, dict) else None
            if not isinstance(file, str) or file not in hashes:
                raise BundleError(f"artifact {name!r} names {file!r}, not among the files")
            art["sha256"] = hashes[file]
        manifest = {
            "schema_version": BUNDLE_SCHEMA_VERSION,
            "spec": spec.to_dict(),
            "artifacts": artifacts,
            "files": hashes,
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            **fields,
        }
        text = json.dumps(manifest, indent=2) + "\n"  # as atomic_write_json writes it
        atomic_write_text(tmp / MANIFEST, text)
    return out, json.loads(text)
