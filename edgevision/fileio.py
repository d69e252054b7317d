"""Atomic writes and hashing: an interrupted write never leaves a half file or folder."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from edgevision.errors import EdgeVisionError, OutputError


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """The SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """The SHA-256 hex digest of ``data``."""
    return hashlib.sha256(data).hexdigest()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 text atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp folder beside ``path``; on success it replaces ``path`` in one rename.

    On any exception the temp folder is removed and an existing ``path`` is left untouched.
    An existing file (not a folder) at ``path`` is refused, never renamed away; callers that may
    replace a folder check first that it is theirs (`check_replaceable_dir`).
    """
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise OutputError(f"{path} exists and is not a folder", "choose another output path")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def check_output_file(path: str | os.PathLike[str], option: str = "output") -> Path:
    """Fail now, before long work, when a file cannot be written at ``path``.

    Creates missing parent folders (the write would) and probes the folder with a temp file, so
    a folder given for a file, a read-only place or a path under ``/proc`` is one clear error.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(
            f"{option} {path} is a folder, and a file is written there",
            f"give the path of a file, not of a folder (e.g. {path}/NAME)",
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path.parent, prefix=".ev-probe-"):
            pass
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(f"{path} is read-only")
    except OSError as exc:
        raise OutputError(
            f"{option} {path} cannot be written ({exc.strerror or exc})",
            "choose a path in a folder you can write to",
        ) from None
    return path


def check_replaceable_dir(
    path: str | os.PathLike[str],
    is_own: Callable[[Path], bool],
    what: str,
    force: bool = False,
) -> Path:
    """Refuse a folder output that would replace something that is not the tool's own.

    ``path`` may be new, an empty folder, or a folder ``is_own`` recognises (e.g. an earlier
    bundle), which is then replaced atomically. A file is always refused; a non-empty foreign
    folder only with ``force``. ``what`` names the output in the message ("bundle").
    """
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise OutputError(
            f"--out {path} exists and is not a folder; a {what} is a folder",
            f"choose a new path, e.g. {path.with_suffix('')}-{what}",
        )
    if not path.is_dir() or is_own(path) or not any(path.iterdir()) or force:
        return path
    raise OutputError(
        f"--out {path} is a folder that is not empty and not an edgevision {what}; "
        "it would be replaced",
        "choose a new or empty folder (or add --force to replace this one)",
    )


STALE_AFTER_S = 24 * 3600


@contextlib.contextmanager
def scratch_dir(prefix: str = "ev-build-") -> Iterator[Path]:
    """A private temp folder for one long job, removed even when the job is killed politely.

    SIGTERM is turned into `KeyboardInterrupt` while it runs (in the main thread), so the folder
    is removed on SIGTERM and Ctrl-C alike; libraries' own temp files (ONNX Runtime's quantizer)
    land inside it. Folders of this ``prefix`` that a ``kill -9`` left behind for over a day
    are removed first.
    """
    remove_stale_scratch(prefix)
    with _terminate_as_interrupt(), tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        before = tempfile.tempdir
        tempfile.tempdir = tmp
        try:
            yield Path(tmp)
        finally:
            tempfile.tempdir = before


def remove_stale_scratch(prefix: str, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove this tool's ``prefix*`` folders in the system temp dir older than ``older_than_s``."""
    import time

    removed = []
    now = time.time()
    for path in Path(tempfile.gettempdir()).glob(f"{prefix}*"):
        try:
            stale = path.is_dir() and not path.is_symlink()
            stale = stale and now - path.stat().st_mtime > older_than_s
        except OSError:
            continue
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def read_json(
    path: str | os.PathLike[str],
    what: str,
    error: type[EdgeVisionError],
    missing_fix: str | None = None,
) -> Any:
    """Parse the JSON file ``path`` or raise ``error`` naming ``what`` it should have been.

    A missing file, a folder, unreadable bytes and invalid JSON are each one clear message.
    """
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{what} {path} does not exist", missing_fix) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{what} {path} is not valid JSON: {exc}") from None
    except OSError as exc:
        raise error(f"{what} {path} cannot be read: {exc.strerror or exc}") from None


def check_version(
    found: Any, expected: int, what: str, error: type[EdgeVisionError], fix: str
) -> None:
    """Raise ``error`` unless ``found`` is the schema version ``expected`` (an int, not a bool)."""
    if found != expected or isinstance(found, bool):
        raise error(
            f"{what} has schema_version {found!r}; this edgevision reads version {expected}", fix
        )
