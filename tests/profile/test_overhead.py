"""The profiler's own overhead: its numbers must match a bare onnxruntime loop."""

import numpy as np
import pytest

from edgevision.bundle import write_bundle
from edgevision.profile import profile_models
from edgevision.spec import ModelSpec
from tests.helpers import tiny_classifier_onnx

SIZE = (224, 224)  # big enough (~0.5 ms a call) that Python's per-call cost is not the whole time


@pytest.mark.slow
def test_profiler_matches_bare_session_run(tmp_path):
    import onnxruntime as ort

    onnx_path = tiny_classifier_onnx(tmp_path / "m.onnx", size=SIZE)
    bundle = write_bundle(
        tmp_path / "b",
        {"model.fp32.onnx": onnx_path},
        ModelSpec(labels=("a", "b", "c"), input_size=SIZE),
        {"fp32": {"file": "model.fp32.onnx", "precision": "fp32", "target": "any"}},
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # the same threads as the profiled runner
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    feed = {"input": np.random.default_rng(0).normal(size=(1, 3, *SIZE)).astype(np.float32)}

    # Interleaved in the same rounds, so machine noise hits both alike; medians, not means.
    report = profile_models(
        bundle,
        iterations=200,
        warmup=20,
        threads=1,
        baselines={"bare-ort": lambda: session.run(None, feed)},
    )
    profiled = report.find("fp32")[0].stats.p50
    bare = report.find("baseline:bare-ort")[0].stats.p50
    ratio = profiled / bare
    assert 0.9 <= ratio <= 1.1, f"profiler {profiled:.4f} ms vs bare {bare:.4f} ms: {ratio:.3f}"
