"""Checkpoints: atomic to write, safe to read (``torch.load(weights_only=True)``).

A checkpoint carries everything `edgevision build` needs: the backbone name, the state dict, the
ModelSpec and the training config. Only tensors and plain containers are stored, never pickled
objects.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgevision.errors import EdgeVisionError
from edgevision.fileio import atomic_write_bytes
from edgevision.spec import ModelSpec

if TYPE_CHECKING:
    import torch

CHECKPOINT_FORMAT = "edgevision-checkpoint"
CHECKPOINT_VERSION = 1
BEST = "checkpoint_best.pt"
LAST = "checkpoint_last.pt"


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (eval mode), its spec and what training recorded."""

    model: torch.nn.Module
    spec: ModelSpec
    backbone: str
    config: dict[str, Any]
    extra: dict[str, Any]
    path: Path


def save_checkpoint(
    path: str | os.PathLike[str],
    model: torch.nn.Module,
    spec: ModelSpec,
    backbone: str,
    config: dict[str, Any],
    **extra: Any,
) -> Path:
    """Write a checkpoint atomically. ``extra`` holds plain values or state dicts (optimizer…)."""
    import torch

    module = getattr(model, "module", model)  # unwrap DistributedDataParallel
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "backbone": backbone,
        "state_dict": module.state_dict(),
        "spec": spec.to_dict(),
        "config": config,
        **extra,
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A run folder means its best checkpoint; a file is itself."""
    path = Path(path)
    if path.is_dir():
        path = path / BEST
    if not path.is_file():
        raise EdgeVisionError(
            f"checkpoint {path} does not exist", "train one with `edgevision train DATA --out RUN`"
        )
    return path


CONVERT_HINT = (
    'if you trust the file, convert it once to safetensors: python -c "import torch; '
    "from safetensors.torch import save_file; "
    "save_file(torch.load('IN.pt', weights_only=False), 'OUT.safetensors')\""
)


def safe_load(path: Path, what: str, fix: str) -> Any:
    """``torch.load(weights_only=True)`` with a one-line error for a refused or broken file.

    torch's own message for a pickle it refuses is ~9 lines and suggests
    ``weights_only=False``; a file from elsewhere may run code that way, so say only that.
    """
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" not in str(exc):  # not a refused object: a broken file
            raise EdgeVisionError(
                f"{what} {path} is not a PyTorch file, or is truncated", fix
            ) from None
        raise EdgeVisionError(
            f"{what} {path} holds pickled Python objects and is refused for safety "
            "(loading a pickle can run code)",
            fix,
        ) from None
    except Exception as exc:
        raise EdgeVisionError(f"{what} {path} cannot be read: {_first_line(exc)}", fix) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The raw checkpoint dict, loaded with ``weights_only=True``."""
    path = resolve_checkpoint(path)
    payload = safe_load(
        path, "checkpoint", "use a checkpoint written by `edgevision train` (no pickled objects)"
    )
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise EdgeVisionError(
            f"{path} is not an edgevision checkpoint",
            "point at a RUN folder from `edgevision train`",
        )
    if payload.get("version") != CHECKPOINT_VERSION:
        raise EdgeVisionError(
            f"checkpoint {path} has version {payload.get('version')!r}; this edgevision reads "
            f"{CHECKPOINT_VERSION}",
            "retrain with this edgevision version",
        )
    return payload


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Rebuild the model from a checkpoint (or a run folder) in eval mode, with its spec."""
    from edgevision.tasks import get_task

    resolved = resolve_checkpoint(path)
    payload = read_checkpoint(resolved)
    spec = ModelSpec.from_dict(payload["spec"])
    model = get_task(spec.task).training().rebuild(payload["backbone"], spec)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    known = {"format", "version", "backbone", "state_dict", "spec", "config"}
    extra = {k: v for k, v in payload.items() if k not in known}
    return Checkpoint(model, spec, payload["backbone"], payload["config"], extra, resolved)
