import time

import pytest

from edgevision.bundle import Bundle, write_bundle
from edgevision.errors import BundleError, EdgeVisionError
from edgevision.profile import check_budget, parse_batch_sizes, profile_models
from edgevision.profile.models import round_robin
from edgevision.profile.plan import TRT_MISSING
from edgevision.spec import ModelSpec


def test_profiles_every_runnable_artifact_side_by_side(full_bundle, no_tensorrt):
    report = profile_models(full_bundle, batch_sizes=(1, 4), iterations=12, warmup=2, threads=1)
    got = {(m.key, m.batch): m for m in report.measurements}
    for key in ("fp32", "int8-cpu", "int8-trt@ort"):
        for batch in (1, 4):
            m = got[(key, batch)]
            assert m.ran and m.stats.n == 12 and len(m.samples_ms) == 12
            s = m.stats
            assert 0 < s.min <= s.p50 <= s.p90 <= s.p99 <= s.max
            assert s.throughput == pytest.approx(batch * 1000 / s.mean)
    assert got[("int8-trt@ort", 1)].backend == "ort"
    assert "not the device path" in got[("int8-trt@ort", 1)].note
    trt = got[("int8-trt", 1)]
    assert not trt.ran and trt.skipped == TRT_MISSING and trt.backend == "tensorrt"
    assert got[("int8-cpu", 1)].precision == "int8"
    for stage in ("preprocess", "postprocess"):
        assert got[(stage, 1)].kind == "stage" and got[(stage, 1)].stats.n == 12
    assert report.deployed == "int8-cpu"
    assert report.settings["rounds"] == 12 and report.settings["threads"] == 1
    assert len(report.bundle["manifest_sha256"]) == 64


def test_artifact_selection_and_unknown_artifact(full_bundle, no_tensorrt):
    report = profile_models(full_bundle, artifacts=["fp32"], iterations=3, warmup=0, threads=1)
    assert {m.key for m in report.measurements if m.kind == "model"} == {"fp32"}
    with pytest.raises(BundleError, match="no artifact 'int4'") as info:
        profile_models(full_bundle, artifacts=["int4"], iterations=3)
    assert "int8-cpu" in info.value.fix


def test_fixed_batch_model_is_skipped_at_other_batches(tmp_path):
    from onnx import TensorProto, helper

    spec = ModelSpec(labels=("a", "b"), input_size=(8, 8))
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["g"]),
            helper.make_node("Flatten", ["g"], ["f"]),
            helper.make_node("Slice", ["f", "s", "e", "axes"], ["logits"]),
        ],
        "fixed",
        [x],
        [y],
        [
            helper.make_tensor("s", TensorProto.INT64, [1], [0]),
            helper.make_tensor("e", TensorProto.INT64, [1], [2]),
            helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "m.onnx"
    path.write_bytes(model.SerializeToString())
    b = write_bundle(
        tmp_path / "b",
        {"m.onnx": path},
        spec,
        {"fp32": {"file": "m.onnx", "precision": "fp32", "target": "any"}},
    )
    report = profile_models(b, batch_sizes=(1, 4), iterations=3, warmup=0, threads=1)
    assert report.find("fp32", 1)[0].ran
    assert report.find("fp32", 4)[0].skipped == "skipped: model input has a fixed batch of 1"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"iterations": 0}, "iterations must be at least 1"),
        ({"seconds": 0.0}, "seconds must be > 0"),
        ({"warmup": -1}, "warmup must be >= 0"),
        ({"threads": -2}, "threads must be >= 0"),
        ({"batch_sizes": (0,)}, "batch sizes must be positive"),
    ],
)
def test_bad_settings_are_clear_errors(bundle, kwargs, match):
    with pytest.raises(EdgeVisionError, match=match):
        profile_models(bundle, **kwargs)


def test_missing_bundle_is_a_bundle_error(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        profile_models(tmp_path / "nope")


def test_round_robin_runs_each_timer_once_per_round_in_varying_order():
    calls = []
    timers = {k: (lambda k=k: calls.append(k) or 0.001) for k in "abcd"}
    samples = round_robin(timers, iterations=30, warmup=2)
    rounds = [calls[i : i + 4] for i in range(0, len(calls), 4)]
    assert len(rounds) == 32 and all(sorted(r) == list("abcd") for r in rounds)
    # Neighbours vary: "a" is not always run right after the same timer.
    before_a = {r[r.index("a") - 1] for r in rounds if r.index("a") > 0}
    assert len(before_a) >= 2 and len({r[0] for r in rounds}) >= 2
    assert {k: len(v) for k, v in samples.items()} == {k: 30 for k in "abcd"}
    assert samples["a"][0] == 1.0  # seconds → ms
    assert round_robin(timers, iterations=5, seed=3) == round_robin(timers, iterations=5, seed=3)


def test_round_robin_seconds_mode_runs_until_the_deadline():
    start = time.perf_counter()
    samples = round_robin({"x": lambda: time.sleep(0.005) or 0.005}, seconds=0.05, warmup=0)
    assert time.perf_counter() - start >= 0.05
    assert 2 <= len(samples["x"]) <= 12


def test_parse_batch_sizes():
    assert parse_batch_sizes("8, 1,8") == [1, 8]
    for bad in ("", "0", "1,x", "-1"):
        with pytest.raises(EdgeVisionError, match="batch size"):
            parse_batch_sizes(bad)


def test_report_json_round_trip(bundle, tmp_path):
    from edgevision.profile import ProfileReport

    report = profile_models(Bundle.open(bundle), iterations=5, warmup=0, threads=1)
    path = report.save(tmp_path / "r.json")
    back = ProfileReport.load(path)
    assert back.to_dict() == ProfileReport.from_dict(report.to_dict()).to_dict()
    assert back.find("fp32")[0].stats == report.find("fp32")[0].stats
    assert back.machine["cpu_model"] == report.machine["cpu_model"]


def test_an_artifact_that_cannot_load_is_listed_as_failed(tmp_path):
    from tests.helpers import tiny_classifier_onnx

    good = tiny_classifier_onnx(tmp_path / "good.onnx")
    b = write_bundle(
        tmp_path / "b",
        {"model.fp32.onnx": good, "model.int8.cpu.onnx": b"not an onnx model"},
        ModelSpec(labels=("a", "b", "c"), input_size=(32, 48)),
        {
            "fp32": {"file": "model.fp32.onnx", "precision": "fp32", "target": "any"},
            "int8-cpu": {"file": "model.int8.cpu.onnx", "precision": "int8", "target": "cpu"},
        },
    )
    report = profile_models(b, iterations=3, warmup=0, threads=1)
    assert report.find("fp32")[0].ran
    broken = report.find("int8-cpu")[0]
    assert not broken.ran and broken.skipped.startswith("failed: ONNX Runtime cannot load")
    with pytest.raises(EdgeVisionError, match="int8-cpu was not measured"):
        check_budget(report, 10.0)  # the deployed artifact is the broken one: no silent pass


def test_tensorrt_engines_recorded_in_the_manifest_are_listed(tmp_path, no_tensorrt):
    from tests.helpers import tiny_classifier_onnx

    onnx_path = tiny_classifier_onnx(tmp_path / "m.onnx")
    b = write_bundle(
        tmp_path / "b",
        {"model.fp32.onnx": onnx_path},
        ModelSpec(labels=("a", "b", "c"), input_size=(32, 48)),
        {"fp32": {"file": "model.fp32.onnx", "precision": "fp32", "target": "any"}},
        engines={"model.fp32.onnx.fp16.engine": {"artifact": "fp32", "precision": "fp16"}},
    )
    report = profile_models(b, iterations=2, warmup=0, threads=1)
    engine = report.find("fp32@tensorrt:fp16")[0]
    assert engine.skipped == TRT_MISSING and engine.backend == "tensorrt"
    assert report.find("fp32")[0].ran


def test_with_tensorrt_available_the_engine_is_profiled_and_deployed(full_bundle, monkeypatch):
    """A stand-in TensorRT backend (ONNX Runtime underneath) exercises the device path here."""
    import edgevision.backends.select as select
    import edgevision.profile.plan as plan
    from edgevision.backends import BACKENDS
    from edgevision.backends.ort.runner import OrtRunner

    seen = {}

    class FakeTrt(OrtRunner):
        @classmethod
        def from_bundle(cls, bundle, artifact=None, precision="int8", **options):
            seen.update(artifact=artifact, precision=precision)
            art = bundle.artifact(artifact)
            return cls(bundle.path(art.file), threads=1, name=f"tensorrt:{precision}")

        @classmethod
        def is_available(cls):
            return True

    monkeypatch.setitem(BACKENDS._items, "tensorrt", FakeTrt)
    monkeypatch.setattr(plan, "is_backend_available", select.is_backend_available)
    report = profile_models(full_bundle, iterations=3, warmup=0, threads=1)
    trt = report.find("int8-trt")[0]
    assert trt.ran and trt.backend == "tensorrt" and trt.note == "TensorRT engine"
    assert seen == {"artifact": "int8-trt", "precision": "int8"}
    assert report.deployed == "int8-trt"


def test_a_detection_bundle_times_nms_and_tracking_as_stages(tmp_path):
    from tests.helpers import detection_bundle

    report = profile_models(detection_bundle(tmp_path), iterations=5, warmup=1)
    stages = {m.key: m for m in report.measurements if m.kind == "stage"}
    assert set(stages) == {"preprocess", "postprocess", "tracking"}
    assert all(m.ran and m.stats.n == 5 and m.stats.p50 > 0 for m in stages.values())
    assert any(m.kind == "model" and m.ran for m in report.measurements)
