"""tools/device_smoke.py: here every TensorRT/CUDA step is skipped with its reason; against
the fakes its TensorRT steps run end to end and pass."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
NOTHING_HERE = ("tensorrt", "pycuda", "pycuda.driver", "cuda", "cuda.bindings",
                "cuda.bindings.runtime", "cuda.bindings.utils", "cuda.cudart", "torch")  # fmt: skip


@pytest.fixture
def smoke(monkeypatch):
    spec = importlib.util.spec_from_file_location("device_smoke", ROOT / "tools/device_smoke.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "device_smoke", module)  # dataclasses look it up there
    spec.loader.exec_module(module)
    return module


def test_without_tensorrt_or_a_gpu_every_step_says_why_it_skipped(smoke, tmp_path, monkeypatch):
    for name in NOTHING_HERE:  # as on a CPU machine, whatever this one has installed
        monkeypatch.setitem(sys.modules, name, None)
    out = tmp_path / "smoke.json"
    assert smoke.main(["--json", str(out), "--work", str(tmp_path / "work")]) == 0
    report = json.loads(out.read_text())
    steps = {s["name"]: s for s in report["steps"]}
    assert list(steps) == [name for name, _fn in smoke.steps()]  # every step is reported
    assert steps.pop("versions")["status"] == "pass"
    for name, step in steps.items():
        assert step["status"] == "skip" and step["reason"], name
    assert steps["build:int8"]["reason"].startswith("tensorrt is not installed")
    assert "no CUDA memory module is installed" in steps["device:cuda-python"]["reason"]
    assert steps["timing-cache:reuse"]["reason"] == "needs build:int8, which was skipped"
    assert steps["cuda:train-amp"]["reason"].startswith("torch is not installed")
    assert "CUDAExecutionProvider" in steps["cuda:ort-cuda-provider"]["reason"] or (
        steps["cuda:ort-cuda-provider"]["reason"].startswith("the test bundle needs onnx")
    )
    assert report["counts"] == {"pass": 1, "fail": 0, "skip": len(steps)}
    assert report["seconds"] < 30  # seconds here: nothing is built when it cannot be used
    assert not (tmp_path / "work" / "bundle-src").exists()


@pytest.mark.slow
def test_against_the_fakes_the_tensorrt_steps_pass(smoke, make_trt, both_memory, tmp_path):
    """The tool's own logic, end to end on fake TensorRT 10.3 + cuda-python + pycuda: so that
    on a device a failed row is the device's, not the tool's."""
    make_trt("10.3.0")
    only = ["device:*", "build:*", "timing-cache:*", "parser:*", "infer:*", "leak:*", "stale:*",
            "inspect:*"]  # fmt: skip
    results = {r.name: r for r in smoke.run_all(tmp_path, only, cycles=3)}
    failed = {n: (r.reason, r.details) for n, r in results.items() if r.status == "fail"}
    assert not failed
    skipped = {n: r.reason for n, r in results.items() if r.status == "skip"}
    assert skipped == {"inspect:dla": "this device has no DLA core (TensorRT 10.3.0)"}
    assert results["infer:pycuda:pipeline"].details["int8"]["frames"] == 12
    assert results["leak:pycuda-cycles"].details["lost_mib"] == 0
    assert "EdgeVisionNoSuchOp" in "\n".join(results["parser:unsupported-op"].details["error"])
    assert results["inspect:int8-kernels"].details["int8_layers"] == 4  # the four convolutions
    wanted = {n for n, _fn in smoke.steps() if any(fnmatch.fnmatch(n, p) for p in only)}
    assert set(results) == wanted


def test_a_step_that_breaks_is_a_failure_with_its_reason(smoke, tmp_path):
    machine = smoke.Machine(tmp_path, cycles=1)

    def broken(m):
        raise RuntimeError("the driver fell over")

    result = smoke.run_step(machine, "x", broken)
    assert (result.status, result.reason) == ("fail", "RuntimeError: the driver fell over")
    assert result.details["traceback"]
