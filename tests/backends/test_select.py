"""Backend choice: a table of rules; TensorRT only where it is available and has its artifact."""

from __future__ import annotations

import pytest

from edgevision.backends import BACKENDS, Runner
from edgevision.backends.ort.runner import OrtRunner
from edgevision.backends.select import (
    RULES,
    backend_names,
    choose_backend,
    create_runner,
    is_backend_available,
)
from edgevision.bundle import Bundle, write_bundle
from edgevision.errors import BackendError, BundleError
from edgevision.spec import ModelSpec
from tests.helpers import tiny_bundle, tiny_classifier_onnx


class FakeTrt(Runner):
    """Stands in for TrtRunner: same classmethods, records how it was built."""

    available = True
    built_with: dict = {}

    @classmethod
    def is_available(cls):
        return cls.available

    @classmethod
    def from_bundle(cls, bundle, artifact=None, engine_cache=None, rebuild_if_stale=False):
        cls.built_with = {"artifact": artifact, "engine_cache": engine_cache}
        return cls("trt")

    def activate_impl(self): ...
    def input_metadata_impl(self):
        return []

    def infer_impl(self, feed):
        return {}

    def deactivate_impl(self): ...


@pytest.fixture
def trt_bundle(tmp_path):
    onnx_path = tiny_classifier_onnx(tmp_path / "m.onnx")
    out = write_bundle(
        tmp_path / "trt-bundle",
        {"model.fp32.onnx": onnx_path, "model.int8.trt.onnx": onnx_path},
        ModelSpec(labels=("a", "b", "c"), input_size=(32, 48)),
        {
            "fp32": {"file": "model.fp32.onnx", "precision": "fp32", "target": "any"},
            "int8-trt": {"file": "model.int8.trt.onnx", "precision": "int8", "target": "tensorrt"},
        },
    )
    return Bundle.open(out)


@pytest.fixture
def fake_trt(monkeypatch):
    monkeypatch.setitem(BACKENDS._items, "tensorrt", FakeTrt)
    FakeTrt.available = True
    return FakeTrt


def test_rules_are_a_table_with_ort_last():
    assert [r.backend for r in RULES][-1] == "ort" and RULES[-1].artifact is None
    assert "auto" in backend_names() and "ort" in backend_names()


def test_tensorrt_chosen_when_available_and_bundle_has_int8_trt(trt_bundle, fake_trt):
    assert choose_backend(trt_bundle) == "tensorrt"
    runner = create_runner(trt_bundle, engine_cache="/tmp/cache", threads=4)
    assert isinstance(runner, FakeTrt)
    # threads is not among TrtRunner.from_bundle's parameters: not passed; options are.
    assert FakeTrt.built_with == {"artifact": None, "engine_cache": "/tmp/cache"}


def test_ort_when_tensorrt_is_not_available(trt_bundle, fake_trt):
    fake_trt.available = False
    assert choose_backend(trt_bundle) == "ort"


def test_ort_when_the_bundle_has_no_int8_trt(tmp_path, fake_trt):
    assert choose_backend(Bundle.open(tiny_bundle(tmp_path))) == "ort"


def test_a_backend_whose_module_cannot_be_imported_is_not_available(monkeypatch, trt_bundle):
    monkeypatch.setitem(BACKENDS._items, "tensorrt", "edgevision.backends.nowhere:Nothing")
    assert not is_backend_available("tensorrt")
    assert choose_backend(trt_bundle) == "ort"
    with pytest.raises(BackendError, match="'tensorrt' is not available") as info:
        create_runner(trt_bundle, backend="tensorrt")
    assert "edgevision[tensorrt]" in info.value.fix and "--backend ort" in info.value.fix


def test_an_availability_probe_that_crashes_means_unavailable(monkeypatch, trt_bundle):
    class Broken(FakeTrt):
        @classmethod
        def is_available(cls):
            raise RuntimeError("driver mismatch")

    monkeypatch.setitem(BACKENDS._items, "tensorrt", Broken)
    assert choose_backend(trt_bundle) == "ort"


def test_create_runner_ort_passes_threads_and_runs(tmp_path):
    bundle = Bundle.open(tiny_bundle(tmp_path))
    runner = create_runner(bundle, threads=1)
    assert isinstance(runner, OrtRunner) and runner.threads == 1 and runner.name == "ort:fp32"
    with runner:
        assert runner.input_metadata()[0].name == "input"


def test_unknown_backend_and_missing_artifact(tmp_path):
    bundle = Bundle.open(tiny_bundle(tmp_path))
    with pytest.raises(BackendError, match="unknown backend 'cuda'") as info:
        create_runner(bundle, backend="cuda")
    assert "auto" in info.value.fix and "ort" in info.value.fix
    with pytest.raises(BundleError, match="no artifact 'int8-cpu'"):
        create_runner(bundle, backend="ort", artifact="int8-cpu")


def test_the_real_tensorrt_runner_is_not_chosen_without_tensorrt(trt_bundle):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    assert not is_backend_available("tensorrt")
    assert choose_backend(trt_bundle) == "ort"


def test_precision_forces_an_artifact_over_the_deployed_one(tmp_path):
    import json

    from edgevision.backends.select import artifact_for_precision, create_runner
    from edgevision.bundle import Bundle
    from edgevision.errors import BackendError, ConfigError
    from tests.helpers import tiny_bundle

    path = tiny_bundle(tmp_path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["deploy"] = {"cpu": {"artifact": "fp32", "why": "INT8 slower"}}
    (path / "manifest.json").write_text(json.dumps(manifest))
    bundle = Bundle.open(path)
    assert bundle.deployed("cpu") == "fp32" and bundle.deployed("tensorrt") is None
    assert create_runner(bundle, "ort", force_precision="fp32").name == "ort:fp32"
    with pytest.raises(BackendError, match="has no int8 artifact for backend 'ort'"):
        create_runner(bundle, "ort", force_precision="int8")
    with pytest.raises(ConfigError, match="unknown precision 'int4'"):
        artifact_for_precision(bundle, "ort", "int4")
