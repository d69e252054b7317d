"""The PyTorch eager reference runner: the model as it was trained, behind the Runner interface.

Used to compare ONNX Runtime / TensorRT against the original (latency and outputs). torch is
imported inside the methods, so importing this module stays cheap and torch-free.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevision.backends.base import Runner, TensorMeta
from edgevision.errors import BackendError
from edgevision.spec import ModelSpec

if TYPE_CHECKING:
    import torch

    from edgevision.bundle import Bundle

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


class TorchRunner(Runner):
    """Runs a torch module (or an edgevision checkpoint / RUN folder) on numpy batches.

    ``threads`` > 0 sets torch's intra-op threads while active (restored on deactivate);
    ``device`` is a torch device string ("cpu", "cuda", "cuda:1").
    """

    def __init__(
        self,
        model: torch.nn.Module | str | os.PathLike[str],
        spec: ModelSpec | None = None,
        threads: int = 0,
        device: str = "cpu",
        name: str | None = None,
    ) -> None:
        is_path = isinstance(model, (str, os.PathLike))
        super().__init__(name or (f"torch:{Path(model).name}" if is_path else "torch"))
        if not is_path and spec is None:
            raise BackendError("TorchRunner needs the model's ModelSpec", "pass spec=…")
        self._source = model
        self.spec = spec
        self.threads = threads
        self.device = device
        self._model: torch.nn.Module | None = None
        self._outputs: tuple[str, ...] = (OUTPUT_NAME,)
        self._threads_before: int | None = None

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike[str], threads: int = 0, device: str = "cpu"
    ) -> TorchRunner:
        """A runner for a checkpoint file or RUN folder written by `edgevision train`."""
        return cls(path, threads=threads, device=device)

    @classmethod
    def from_bundle(
        cls,
        bundle: Bundle,
        artifact: str | None = None,
        threads: int = 0,
        device: str = "cpu",
        **options: Any,
    ) -> TorchRunner:
        """The checkpoint the bundle was built from, when it is still here and unchanged."""
        from edgevision.fileio import sha256_file

        if artifact not in (None, "fp32", "torch"):
            raise BackendError(
                f"the torch backend runs the bundle's source checkpoint, not artifact {artifact!r}",
                "use --backend ort or tensorrt for INT8 artifacts",
            )
        source = bundle.manifest.get("build", {}).get("source") or {}
        path = Path(source.get("path", ""))
        if source.get("kind") != "checkpoint" or not path.is_file():
            raise BackendError(
                f"bundle {bundle.root} was not built from a checkpoint that is on this machine "
                f"(source: {source.get('path', 'unknown')})",
                "the torch reference needs the training checkpoint; use --backend ort",
            )
        if source.get("sha256") and sha256_file(path) != source["sha256"]:
            raise BackendError(
                f"checkpoint {path} changed since bundle {bundle.root} was built",
                "rebuild the bundle from the current checkpoint",
            )
        return cls(path, threads=threads, device=device, name="torch:checkpoint")

    @classmethod
    def is_available(cls) -> bool:
        import importlib.util

        return importlib.util.find_spec("torch") is not None

    def activate_impl(self) -> None:
        import torch

        model = self._source
        if isinstance(model, (str, os.PathLike)):
            from edgevision.train.checkpoint import load_checkpoint

            ckpt = load_checkpoint(model)
            model, self.spec = ckpt.model, ckpt.spec
        from edgevision.tasks import get_task

        # the deployed graph (a detector: its top-K boxes and scores) and its output names
        hooks = get_task(self.spec.task).building()  # type: ignore[union-attr]
        model = hooks.export_module(model.eval(), self.spec)
        self._outputs = tuple(hooks.output_names(self.spec))
        try:
            self._model = model.eval().to(self.device)
        except (RuntimeError, AssertionError) as exc:  # no CUDA build / no such device
            raise BackendError(f"torch cannot use device {self.device!r}: {exc}") from None
        if self.threads > 0:
            self._threads_before = torch.get_num_threads()
            torch.set_num_threads(self.threads)

    def input_metadata_impl(self) -> list[TensorMeta]:
        assert self.spec is not None  # set in __init__ or by activate_impl
        return [TensorMeta(INPUT_NAME, np.dtype(np.float32), self.spec.input_shape(None))]

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(feed[INPUT_NAME])).to(self.device)
        with torch.inference_mode():
            out = self._model(x)  # type: ignore[misc]
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return {n: o.float().cpu().numpy() for n, o in zip(self._outputs, outs, strict=True)}

    def deactivate_impl(self) -> None:
        import torch

        if self._threads_before is not None:
            torch.set_num_threads(self._threads_before)
            self._threads_before = None
        self._model = None
