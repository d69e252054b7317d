"""edgevision: fine-tune, quantize, run and profile vision models on embedded GPUs and CPUs.

Importing this package is cheap and torch-free; the heavy stages (training, export) import
torch inside the functions that need it.
"""

from edgevision.errors import EdgeVisionError
from edgevision.spec import ModelSpec

__version__ = "0.1.0"
__all__ = ["EdgeVisionError", "ModelSpec", "__version__"]
