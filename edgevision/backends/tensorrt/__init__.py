"""TensorRT target: engines built on the device from the bundle's Q/DQ model, and a runner.

Nothing here imports ``tensorrt``, ``cuda-python`` or ``pycuda`` until a function that needs
them is called, so ``import edgevision.backends.tensorrt`` works on any machine.

* `build.build_engine` — parse, build, time-cache, record and (optionally) check parity.
* `select.select_engine` / `runner.TrtRunner.from_bundle` — the engine that fits this machine.
* `parity.engine_parity` — engine vs FP32 ONNX Runtime on images.
* `runner.TrtRunner` — runs an engine file, a record, or a callable returning one.
* `cuda_memory.open_memory` — device memory through cuda-python or pycuda.

The runner imports none of build, select or parity; they import it.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "build_engine": "edgevision.backends.tensorrt.build",
    "select_engine": "edgevision.backends.tensorrt.select",
    "engine_parity": "edgevision.backends.tensorrt.parity",
    "EngineRecord": "edgevision.backends.tensorrt.staleness",
    "StaleEngineError": "edgevision.backends.tensorrt.staleness",
    "TrtRunner": "edgevision.backends.tensorrt.runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
