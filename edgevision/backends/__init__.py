"""Backends behind one Runner interface; each imported lazily by name.

``BACKENDS`` maps a backend name to its Runner class as a ``"module:attr"`` string, so that
``import edgevision.backends`` pulls in neither torch nor tensorrt.
"""

from edgevision.backends.base import Runner, TensorMeta
from edgevision.registry import Registry

BACKENDS: Registry[type[Runner]] = Registry("backend")
BACKENDS.register("ort", "edgevision.backends.ort.runner:OrtRunner")
BACKENDS.register("tensorrt", "edgevision.backends.tensorrt.runner:TrtRunner")
BACKENDS.register("torch", "edgevision.backends.torch.runner:TorchRunner")

__all__ = ["BACKENDS", "Runner", "TensorMeta"]
