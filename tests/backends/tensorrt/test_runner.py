"""TrtRunner against the fake tensorrt + fake cuda-python / pycuda memory."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest

from edgevision.backends import BACKENDS
from edgevision.backends.ort.runner import OrtRunner
from edgevision.backends.tensorrt.build import build_engine
from edgevision.backends.tensorrt.runner import TrtRunner
from edgevision.backends.tensorrt.select import select_engine
from edgevision.backends.tensorrt.staleness import StaleEngineError
from edgevision.bundle import Bundle
from edgevision.errors import BackendError
from tests.backends.tensorrt.fakes import engine_blob


def _batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 3, 32, 48)).astype(np.float32)


def _ort_logits(bundle: Bundle, x: np.ndarray) -> np.ndarray:
    with OrtRunner(bundle.path("model.int8.trt.onnx"), threads=1) as ref:
        return ref.infer(x)["logits"]


def test_registry_entry_is_this_runner():
    assert BACKENDS.get("tensorrt") is TrtRunner


def test_runs_like_onnx_runtime_for_each_batch_size(trt, trt_bundle, gpu):
    build_engine(trt_bundle, max_batch=4)
    bundle = Bundle.open(trt_bundle)
    with TrtRunner.from_bundle(bundle) as runner:
        (meta,) = runner.input_metadata()
        assert meta.name == "input" and meta.shape == (None, 3, 32, 48)
        assert meta.dtype == np.float32 and runner.output_names() == ["logits"]
        for n in (1, 3, 4):
            out = runner.infer(_batch(n, seed=n))
            np.testing.assert_allclose(out["logits"], _ort_logits(bundle, _batch(n, seed=n)),
                                       rtol=1e-6)  # fmt: skip
            assert runner.last_inference_time() > 0
    assert gpu.blocks == {} and gpu.streams == {}  # everything freed, stream destroyed


def test_tensors_are_bound_by_name_and_copied_through_pinned_memory(trt, trt_bundle, gpu):
    build_engine(trt_bundle, max_batch=4)
    with TrtRunner.from_bundle(Bundle.open(trt_bundle)) as runner:
        allocs = [c for c in gpu.calls if c[0] == "alloc"]
        # sized once for the largest batch: input 4x3x32x48 floats, output 4x3 floats
        assert allocs == [("alloc", "pinned", 4 * 3 * 32 * 48 * 4), ("alloc", "device", 73728),
                          ("alloc", "pinned", 48), ("alloc", "device", 48)]  # fmt: skip
        ctx = runner._context
        assert set(ctx.addresses) == {"input", "logits"}
        gpu.calls.clear()
        runner.infer(_batch(2))
        assert ctx.shapes == {"input": (2, 3, 32, 48)}
    ops = [c[0] for c in gpu.calls if c[0] in ("htod", "execute", "dtoh", "sync")]
    assert ops == ["htod", "execute", "dtoh", "sync"]  # async on one stream, one sync
    sizes = {c[0]: c[1] for c in gpu.calls if c[0] in ("htod", "dtoh")}
    assert sizes == {"htod": 2 * 3 * 32 * 48 * 4, "dtoh": 2 * 3 * 4}
    handles = {c[-1] for c in gpu.calls if c[0] in ("htod", "execute", "dtoh", "sync")}
    assert len(handles) == 1


def test_pycuda_memory_with_its_context(make_trt, pycuda, trt_bundle, gpu):
    make_trt("10.3.0")
    build_engine(trt_bundle)
    bundle = Bundle.open(trt_bundle)
    with TrtRunner.from_bundle(bundle, memory="pycuda") as runner:
        out = runner.infer(_batch(2))
    np.testing.assert_allclose(out["logits"], _ort_logits(bundle, _batch(2)), rtol=1e-6)
    assert gpu.ctx_depth == 0 and gpu.blocks == {}


def test_pycuda_deactivate_destroys_the_stream_in_a_live_context(make_trt, pycuda, trt_bundle, gpu):
    """pycuda's stream destructor skips cuStreamDestroy, silently, once its context has been
    detached: everything must be dropped while the context is current, and the primary
    context retained once for the process, not retained and released per runner."""
    make_trt("10.3.0")
    build_engine(trt_bundle)
    bundle = Bundle.open(trt_bundle)
    gpu.calls.clear()
    for _ in range(3):
        with TrtRunner.from_bundle(bundle, memory="pycuda") as runner:
            runner.infer(_batch(1))
    assert gpu.leaks == [] and gpu.streams == {}
    assert len([c for c in gpu.calls if c[0] == "stream_destroy"]) == 3
    releases = [c for c in gpu.calls if c[0] == "release"]
    assert {c[1] for c in releases} == {"context", "engine", "runtime"}
    assert all(depth >= 1 for _, _, depth in releases), releases  # inside the context
    assert ("ctx_detach",) not in gpu.calls and gpu.primary_retained == 1


@pytest.mark.parametrize("fixture", ["cudart", "pycuda"])
def test_activate_infer_and_deactivate_on_different_threads(
    request, fixture, make_trt, trt_bundle, gpu
):
    import concurrent.futures

    request.getfixturevalue(fixture)
    make_trt("10.3.0")
    build_engine(trt_bundle, max_batch=4)
    bundle = Bundle.open(trt_bundle)
    runner = TrtRunner.from_bundle(bundle)
    runner.activate()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        out = pool.submit(runner.infer, _batch(4)).result()
        pool.submit(runner.deactivate).result()
    np.testing.assert_allclose(out["logits"], _ort_logits(bundle, _batch(4)), rtol=1e-6)
    assert gpu.blocks == {} and gpu.streams == {} and gpu.leaks == [] and gpu.ctx_depth == 0


def test_stream_address_through_get_cuda_native_handle(make_trt, cudart, trt_bundle, gpu):
    # int(cudaStream_t) is deprecated where cuda.bindings.utils.get_cuda_native_handle exists
    make_trt("10.3.0")
    build_engine(trt_bundle)
    with TrtRunner.from_bundle(Bundle.open(trt_bundle)) as runner:
        runner.infer(_batch(1))
    assert ("int(cudaStream_t)",) not in gpu.calls
    assert any(c[0] == "execute" for c in gpu.calls)


def test_cuda_python_that_cannot_use_the_driver_falls_back_to_pycuda(
    make_trt, both_memory, trt_bundle, gpu
):
    # cuda-python 13 on a CUDA 12 driver (JetPack 6): it imports, but every call fails
    make_trt("10.3.0")
    gpu.cuda_python_error = "cudaErrorInsufficientDriver"
    build_engine(trt_bundle)
    with TrtRunner.from_bundle(Bundle.open(trt_bundle)) as runner:
        assert runner._memory.name == "pycuda"
        assert runner.infer(_batch(2))["logits"].shape == (2, 3)


def test_older_cudart_location(make_trt, old_cudart, trt_bundle):
    make_trt("10.3.0")
    build_engine(trt_bundle)
    with TrtRunner.from_bundle(Bundle.open(trt_bundle)) as runner:
        assert runner._memory.rt is old_cudart
        assert runner.infer(_batch(1))["logits"].shape == (1, 3)


def test_batch_outside_the_profile(trt, trt_bundle):
    build_engine(trt_bundle, max_batch=2)
    runner = TrtRunner.from_bundle(Bundle.open(trt_bundle))
    with runner, pytest.raises(BackendError, match=r"outside the engine's profile") as exc:
        runner.infer(_batch(3))
    assert "max_batch" in exc.value.fix


def test_no_engine_says_to_build_on_the_device(trt, trt_bundle):
    with pytest.raises(BackendError, match="has no TensorRT int8 engine") as exc:
        TrtRunner.from_bundle(Bundle.open(trt_bundle))
    assert f"edgevision engine {trt_bundle}" in exc.value.fix


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"name": "Xavier"}, "GPU: built for Orin, here Xavier"),
        ({"cc": (7, 2)}, "compute capability: built for 8.7, here 7.2"),
        # an AGX Orin 64 GB engine on an Orin Nano 8 GB: same name, same SM 8.7
        ({"multiprocessors": 8, "total_memory": 7 * 2**30 + 2**29 - 2**20},
         "multiprocessor count: built for 16, here 8; GPU memory .GiB.: built for 61, here 7"),
        # Orin NX 16 GB vs Orin Nano 8 GB: both 8 SMs, the memory differs
        ({"total_memory": 15 * 2**30}, r"GPU memory \(GiB\): built for 61, here 15"),
    ],
)  # fmt: skip
def test_engine_from_another_gpu_is_refused(
    make_trt, cudart, gpu, trt_bundle, copy_bundle, change, expected
):
    make_trt("10.3.0")
    build_engine(trt_bundle)
    for key, value in change.items():
        setattr(gpu, key, value)
    with pytest.raises(StaleEngineError, match=expected) as exc:
        TrtRunner.from_bundle(Bundle.open(trt_bundle))
    assert "rebuild_if_stale=True" in exc.value.fix


def test_engine_from_another_tensorrt_version_is_refused_then_rebuilt(
    make_trt, cudart, gpu, trt_bundle
):
    make_trt("10.3.0")
    old = build_engine(trt_bundle, max_batch=4, workspace_mb=512)
    make_trt("11.2.0")
    with pytest.raises(StaleEngineError, match="TensorRT version: built for 10.3.0, here 11.2.0"):
        TrtRunner.from_bundle(Bundle.open(trt_bundle))
    runner = TrtRunner.from_bundle(Bundle.open(trt_bundle), rebuild_if_stale=True)
    new = runner.record
    assert new.trt_version == "11.2.0" and new.file != old.file
    assert (new.max_batch, new.workspace_mb) == (4, 512)  # rebuilt with the same options
    engines = Bundle.open(trt_bundle).manifest["engines"]
    assert set(engines) == {old.file, new.file}  # one bundle, engines for two platforms
    with runner:
        assert runner.infer(_batch(4))["logits"].shape == (4, 3)


def test_stale_engine_with_parity_figures_is_refused_not_a_crash(make_trt, cudart, trt_bundle):
    # a record with parity (a dict) is unhashable: select_engine once keyed a dict by records
    make_trt("10.3.0")
    record = build_engine(trt_bundle, parity_images=[np.zeros((40, 60, 3), np.uint8)])
    assert record.parity is not None
    make_trt("11.2.0")
    with pytest.raises(StaleEngineError, match="TensorRT version: built for 10.3.0"):
        select_engine(Bundle.open(trt_bundle))


def test_changed_onnx_makes_the_engine_stale(trt, trt_bundle):
    build_engine(trt_bundle)
    bundle = Bundle.open(trt_bundle)
    bundle.manifest["artifacts"]["int8-trt"]["sha256"] = "f" * 64
    with pytest.raises(StaleEngineError, match="ONNX model hash: built for [0-9a-f]{8}, here ffff"):
        select_engine(bundle)


def test_tampered_engine_is_refused(trt, trt_bundle):
    record = build_engine(trt_bundle)
    record.path.write_bytes(record.path.read_bytes() + b" ")
    with pytest.raises(StaleEngineError, match="does not match its recorded SHA-256"):
        TrtRunner.from_bundle(Bundle.open(trt_bundle))


def test_engine_found_in_the_cache_folder(trt, trt_bundle, tmp_path):
    record = build_engine(trt_bundle, engine_cache=tmp_path / "c")
    bundle = Bundle.open(trt_bundle)
    with pytest.raises(BackendError, match="no TensorRT int8 engine"):
        select_engine(bundle)  # default cache folder is elsewhere
    assert select_engine(bundle, engine_cache=tmp_path / "c") == record


def test_artifact_must_match_the_precision(trt, trt_bundle):
    build_engine(trt_bundle)
    bundle = Bundle.open(trt_bundle)
    assert TrtRunner.from_bundle(bundle, artifact="int8-trt").record.precision == "int8"
    with pytest.raises(BackendError, match="built from the 'int8-trt' artifact, not 'fp32'"):
        TrtRunner.from_bundle(bundle, artifact="fp32", precision="int8")
    # without a precision the FP32 artifact means its FP16 engine, which is not built yet
    with pytest.raises(BackendError, match="has no TensorRT fp16 engine"):
        TrtRunner.from_bundle(bundle, artifact="fp32")


def test_fp32_engine_is_selected_by_precision(trt, trt_bundle):
    build_engine(trt_bundle)
    fp32 = build_engine(trt_bundle, precision="fp32")
    runner = TrtRunner.from_bundle(Bundle.open(trt_bundle), precision="fp32")
    assert runner.record == fp32


def test_engine_the_runtime_cannot_load(trt, trt_bundle, gpu):
    record = build_engine(trt_bundle)
    runner = TrtRunner(record.path)  # no record: the runtime itself refuses it
    gpu.name = "Thor"
    with pytest.raises(BackendError, match="cannot load engine .* another platform"):
        runner.activate()
    assert not runner.is_active and gpu.streams == {}


def test_is_available_needs_tensorrt_and_a_device(make_trt, cudart, gpu, monkeypatch):
    make_trt("10.3.0")
    assert TrtRunner.is_available()
    gpu.count = 0
    assert not TrtRunner.is_available()
    gpu.count = 1
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert not TrtRunner.is_available()


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT installed")
def test_is_available_is_false_without_tensorrt():
    assert TrtRunner.is_available() is False


def test_bf16_engine_io_is_refused_and_nothing_leaks(trt, trt_bundle, gpu):
    # trt.nptype raises TypeError for BF16 and FP8: say what to do instead
    record = build_engine(trt_bundle)
    blob = engine_blob(record.path)
    blob["io"][1]["dtype"] = "BF16"
    record.path.write_text(json.dumps(blob))
    runner = TrtRunner(record.path)
    with pytest.raises(BackendError, match="tensor 'logits' is BF16, which has no NumPy") as exc:
        runner.activate()
    assert "float32" in exc.value.fix
    assert gpu.blocks == {} and gpu.streams == {} and not runner.is_active


def test_data_dependent_output_shape_is_refused_and_nothing_leaks(
    trt, trt_bundle, gpu, monkeypatch
):
    from edgevision.backends.tensorrt.trt_api import trt_logger

    record = build_engine(trt_bundle)
    engine = trt.Runtime(trt_logger(trt)).deserialize_cuda_engine(record.path.read_bytes())
    context_class = type(engine.create_execution_context())
    real = context_class.get_tensor_shape
    monkeypatch.setattr(
        context_class,
        "get_tensor_shape",
        lambda self, name: (-1, 3) if name == "logits" else real(self, name),
    )
    runner = TrtRunner(record.path, record=record)
    with pytest.raises(BackendError, match="data-dependent shape"):
        runner.activate()
    assert gpu.blocks == {} and gpu.streams == {} and not runner.is_active


def test_runner_takes_a_record_or_a_callable_returning_one(trt, trt_bundle):
    record = build_engine(trt_bundle, max_batch=2)
    calls = []

    def chosen_later():
        calls.append(record.file)
        return record

    runner = TrtRunner(chosen_later)
    assert calls == [] and runner.engine_path is None  # nothing is looked at until activation
    for _ in range(2):
        with runner:
            assert runner.record == record and runner.engine_path == record.path
            assert runner.infer(_batch(2))["logits"].shape == (2, 3)
    assert calls == [record.file] * 2  # called at each activation
    with TrtRunner(record) as direct:
        assert direct.record is record and direct.name == f"tensorrt:{record.file}"


def test_a_record_from_a_callable_is_checked_before_loading(trt, trt_bundle, gpu):
    record = build_engine(trt_bundle)
    record.path.write_bytes(record.path.read_bytes() + b" ")
    runner = TrtRunner(lambda: record)
    with pytest.raises(StaleEngineError, match="does not match its recorded SHA-256"):
        runner.activate()
    assert not runner.is_active and gpu.streams == {}
