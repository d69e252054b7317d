"""FP16 for strongly typed TensorRT builds: the ONNX is converted before it is parsed.

In a strongly typed network (TensorRT >= 10.12, and every network in 11) the tensor types of
the ONNX decide the precision; ``BuilderFlag.FP16`` is deprecated (10.12) or gone (11). NVIDIA's
migration guide replaces it with ModelOpt AutoCast, which rewrites the model to FP16 compute and
keeps in FP32 the nodes whose values would overflow FP16. Inputs and outputs stay float32
(``keep_io_types``), so the runner feeds the same tensors as for any other engine.

ModelOpt is imported only here, only when such a build asks for FP16.
"""

from __future__ import annotations

import logging
from pathlib import Path

from edgevision.errors import BuildError

_LOG = logging.getLogger(__name__)

INSTALL_FIX = (
    "`pip install 'nvidia-modelopt[onnx]'` (ModelOpt AutoCast), or build precision='int8' "
    "without fp16_fallback, or precision='fp32'"
)


def fp16_onnx(onnx_path: Path, what: str = "FP16") -> bytes:
    """``onnx_path`` converted to FP16 compute with float32 I/O, serialized for the parser.

    ``what`` names the option that asked for it, for the error message.
    """
    try:
        from modelopt.onnx.autocast import convert_to_mixed_precision
    except ImportError as exc:
        raise BuildError(
            f"{what} on a strongly typed TensorRT build needs the ONNX converted to FP16 "
            f"first (no builder flag does it there), and ModelOpt is not installed ({exc})",
            INSTALL_FIX,
        ) from None
    try:
        model = convert_to_mixed_precision(
            onnx_path=str(onnx_path), low_precision_type="fp16", keep_io_types=True
        )
    except Exception as exc:  # AutoCast raises what its passes raise
        raise BuildError(
            f"ModelOpt AutoCast could not convert {onnx_path.name} to FP16: "
            f"{type(exc).__name__}: {exc}",
            "build without FP16 (precision='int8' without fp16_fallback, or 'fp32'), or "
            "convert the model yourself (python -m modelopt.onnx.autocast) and rebuild the bundle",
        ) from None
    _LOG.info("converted %s to FP16 compute with ModelOpt AutoCast", onnx_path.name)
    return model.SerializeToString()
