"""Real TensorRT on a real GPU: skipped where TensorRT or a CUDA device is missing.

These have NOT run yet (no GPU with TensorRT was available when they were written).
"""

from __future__ import annotations

import numpy as np
import pytest

from edgevision.backends.tensorrt.cuda_memory import MEMORY_BACKENDS, cuda_device_present
from edgevision.bundle import Bundle
from tests.backends.tensorrt.bundles import make_trt_bundle

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def real_trt():
    trt = pytest.importorskip("tensorrt")
    if not cuda_device_present():
        pytest.skip("no CUDA device visible through cuda-python or pycuda")
    return trt


@pytest.fixture
def gpu_bundle(tmp_path, real_trt):
    return make_trt_bundle(tmp_path, qdq=True)


def _frames(n):
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_build_and_run_a_real_engine(gpu_bundle, precision, tmp_path):
    from edgevision.backends.tensorrt.build import build_engine
    from edgevision.backends.tensorrt.runner import TrtRunner

    record = build_engine(
        gpu_bundle, precision=precision, max_batch=4, workspace_mb=256,
        timing_cache=tmp_path / "timing.cache", parity_images=_frames(8),
    )  # fmt: skip
    assert record.path.is_file() and (tmp_path / "timing.cache").is_file()
    parity = record.parity
    if precision == "fp32":
        assert parity["top1_agreement"] == 1.0 and parity["max_abs_error"] < 1e-2
    else:
        assert parity["top1_agreement"] >= 0.75 and parity["max_abs_error"] < 0.2
    bundle = Bundle.open(gpu_bundle)
    with TrtRunner.from_bundle(bundle, precision=precision) as runner:
        for n in (1, 4):
            x = np.random.default_rng(n).normal(size=(n, 3, 32, 48)).astype(np.float32)
            assert runner.infer(x)["logits"].shape == (n, 3)
        assert runner.last_inference_time() > 0


@pytest.mark.parametrize("memory", sorted(MEMORY_BACKENDS))
def test_both_memory_modules(gpu_bundle, memory):
    from edgevision.backends.tensorrt.build import build_engine
    from edgevision.backends.tensorrt.cuda_memory import open_memory
    from edgevision.backends.tensorrt.runner import TrtRunner
    from edgevision.errors import BackendError

    try:
        open_memory(memory).close()
    except BackendError:
        pytest.skip(f"{memory} is not installed")
    record = build_engine(gpu_bundle, precision="fp32", parity_images=[])
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 48)).astype(np.float32)
    with TrtRunner(record.path, record=record, memory=memory) as runner:
        assert np.isfinite(runner.infer(x)["logits"]).all()
