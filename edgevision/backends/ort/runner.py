"""ONNX Runtime runner (CPU, or any execution provider the installed ORT offers)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevision.backends.base import Runner, TensorMeta
from edgevision.errors import BackendError

if TYPE_CHECKING:
    from edgevision.bundle import Bundle

_ORT_TYPES = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(int32)": np.dtype(np.int32),
}


class OrtRunner(Runner):
    """Runs an ONNX file with ONNX Runtime.

    ``threads`` sets intra-op threads (0 = ORT's default, one per core).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        threads: int = 0,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        name: str | None = None,
    ) -> None:
        super().__init__(name or f"ort:{os.path.basename(model_path)}")
        self.model_path = str(model_path)
        self.threads = threads
        self.providers = list(providers)
        self._session = None
        self._inputs: list[TensorMeta] = []
        self._outputs: list[str] = []

    # Preferred artifact order on CPUs: the INT8 model tuned for ONNX Runtime, then FP32.
    PREFERRED = ("int8-cpu", "fp32")

    @classmethod
    def from_bundle(
        cls, bundle: Bundle, artifact: str | None = None, threads: int = 0, **options: Any
    ) -> OrtRunner:
        """A runner for ``artifact`` (default: `default_artifact`)."""
        artifact = artifact or cls.default_artifact(bundle)
        art = bundle.artifact(artifact)
        return cls(bundle.path(art.file), threads=threads, name=f"ort:{artifact}", **options)

    @classmethod
    def default_artifact(cls, bundle: Bundle) -> str:
        """What the build deployed for the CPU (``deploy.cpu``: INT8 only where it measured
        faster than FP32); for a bundle without that record, ``int8-cpu`` if present, else fp32."""
        chosen = bundle.deployed("cpu")
        if chosen is not None:
            return chosen
        return next((a for a in cls.PREFERRED if a in bundle.artifacts), "fp32")

    @classmethod
    def is_available(cls) -> bool:
        import importlib.util

        return importlib.util.find_spec("onnxruntime") is not None

    def activate_impl(self) -> None:
        import onnxruntime as ort

        if not os.path.isfile(self.model_path):
            raise BackendError(f"ONNX model {self.model_path} does not exist")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(
                self.model_path, sess_options=options, providers=self.providers
            )
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
            raise BackendError(
                f"ONNX Runtime cannot load {self.model_path}: {exc}",
                "rebuild the bundle; check the file is a complete ONNX model",
            ) from None
        self._inputs = [
            TensorMeta(
                i.name,
                _ORT_TYPES.get(i.type, np.dtype(np.float32)),
                tuple(d if isinstance(d, int) else None for d in i.shape),
            )
            for i in self._session.get_inputs()
        ]
        self._outputs = [o.name for o in self._session.get_outputs()]

    def input_metadata_impl(self) -> list[TensorMeta]:
        return self._inputs

    def output_names(self) -> list[str]:
        """Names of the model's outputs, in order."""
        self._require_active()
        return list(self._outputs)

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self._session.run(self._outputs, feed)
        return dict(zip(self._outputs, values, strict=True))

    def deactivate_impl(self) -> None:
        self._session = None
