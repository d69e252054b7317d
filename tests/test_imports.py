"""The in-vehicle runtime must not import torch (or tensorrt) at import time."""

import subprocess
import sys

CODE = (
    "import sys, edgevision, edgevision.runtime, edgevision.backends, edgevision.profile, "
    "edgevision.cli.app, edgevision.bundle, edgevision.preprocess; "
    "print(sorted(m for m in ('torch', 'tensorrt', 'pycuda', 'timm', 'onnx') if m in sys.modules))"
)


def test_runtime_imports_no_torch():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
