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


# The torch-free parts of the task layer: the runtime, build's verify and the data tools use them.
TASK_CODE = (
    "import sys, edgevision.tasks, edgevision.tasks.base, edgevision.tasks.detect.spec, "
    "edgevision.tasks.detect.geometry, edgevision.tasks.detect.metrics, "
    "edgevision.tasks.detect.draw, edgevision.tasks.detect.postprocess, "
    "edgevision.tasks.training, edgevision.data.detection, "
    "edgevision.data.synth_detect, edgevision.data.video, edgevision.tasks.building, "
    "edgevision.tasks.detect.evaluate, edgevision.tasks.detect.onnx_contract, "
    "edgevision.tasks.detect.track, edgevision.tasks.detect.mot, edgevision.runtime.detect, "
    "edgevision.tasks.segment.spec, edgevision.tasks.segment.metrics, "
    "edgevision.tasks.segment.geometry, edgevision.tasks.segment.postprocess, "
    "edgevision.tasks.segment.draw, edgevision.tasks.segment.evaluate, "
    "edgevision.tasks.segment.onnx_contract, edgevision.data.segmentation, "
    "edgevision.data.synth_segment, edgevision.runtime.segment, "
    "edgevision.runtime.sinks.masks; "
    "from edgevision.tasks import get_task; get_task('detection'); get_task('classification'); "
    "get_task('detection').building(); get_task('classification').building(); "
    "get_task('segmentation').building(); "
    "print(sorted(m for m in ('torch', 'torchvision', 'tensorrt', 'timm', 'matplotlib') "
    "if m in sys.modules))"
)


def test_task_layer_torch_free_modules_import_no_torch():
    out = subprocess.run(
        [sys.executable, "-c", TASK_CODE], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
