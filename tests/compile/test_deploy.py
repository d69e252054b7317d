"""The deployed artifact is chosen by measurement: INT8 only where it is faster than FP32."""

from pathlib import Path

import onnx
import pytest

from edgevision.backends.ort import OrtRunner
from edgevision.bundle import Bundle
from edgevision.compile import BuildConfig, build_bundle
from edgevision.compile import deploy as dep
from edgevision.compile.evaluate import Evaluation, check_max_drop, low_agreement
from edgevision.errors import BudgetExceededError
from edgevision.profile.plan import deployed_key
from tests.compile.conftest import TINY_SPEC
from tests.helpers import tiny_classifier_onnx


def _inputs(tmp_path: Path, requantize) -> dep.DeployInputs:
    fp32 = tiny_classifier_onnx(tmp_path / "fp32.onnx", size=(32, 32))
    return dep.DeployInputs(fp32, fp32, (1, 3, 32, 32), requantize, tmp_path, max_batch=4)


def _fake_times(monkeypatch, int8_ms):
    calls = iter(int8_ms)

    def times(models, batches, shape, iterations, threads):
        ms = next(calls)
        return {
            "fp32": {str(b): 1.0 * b for b in batches},
            "int8-cpu": {str(b): ms * b for b in batches},
        }

    monkeypatch.setattr(dep, "time_models", times)


def test_int8_faster_at_batch_1_only_says_so(tmp_path, monkeypatch):
    def times(models, batches, shape, iterations, threads):
        return {"fp32": {"1": 1.0, "4": 4.0}, "int8-cpu": {"1": 0.8, "4": 5.0}}

    monkeypatch.setattr(dep, "time_models", times)
    decision, _ = dep.choose_cpu(_inputs(tmp_path, lambda *a: pytest.fail("no rescue")))
    assert decision.artifact == "int8-cpu" and "1.25x faster than FP32 at batch 1" in decision.why
    assert "slower than FP32 at batch 4 (0.80x; deployed for batch 1)" in decision.why


def test_int8_within_the_noise_margin_is_not_deployed(tmp_path, monkeypatch):
    _fake_times(monkeypatch, [0.97])  # 1.03x: within a shared machine's spread
    monkeypatch.setattr(dep, "node_times", lambda *a, **k: {})
    decision, _ = dep.choose_cpu(_inputs(tmp_path, lambda *a: pytest.fail("nothing to rescue")))
    assert decision.artifact == "fp32" and "less than 1.10x faster than FP32" in decision.why


def test_a_fast_timing_the_second_one_does_not_confirm_is_not_deployed(tmp_path, monkeypatch):
    _fake_times(monkeypatch, [0.5, 1.0])
    monkeypatch.setattr(dep, "node_times", lambda *a, **k: {})
    decision, _ = dep.choose_cpu(_inputs(tmp_path, lambda *a: pytest.fail("nothing to rescue")))
    assert decision.artifact == "fp32" and decision.latency_ms["int8-cpu"]["1"] == 1.0


def test_int8_faster_is_deployed(tmp_path, monkeypatch):
    _fake_times(monkeypatch, [0.5, 0.5])  # faster, and confirmed by a second timing
    decision, model = dep.choose_cpu(_inputs(tmp_path, lambda *a: pytest.fail("no rescue")))
    assert decision.artifact == "int8-cpu" and "2.00x faster than FP32 at batch 1" in decision.why
    assert decision.latency_ms["int8-cpu"] == {"1": 0.5, "4": 2.0}


def test_slower_int8_keeps_its_slow_layers_float_first(tmp_path, monkeypatch):
    _fake_times(monkeypatch, [1.5, 1.2, 0.8])  # plain, 1 layer float, 2 layers float
    fp32_ms, int8_ms = {"Conv_0": 1.0, "Gemm_4": 0.1}, {"Conv_0": 0.2, "Gemm_4": 0.5}
    monkeypatch.setattr(
        dep, "node_times", lambda path, *a, **k: fp32_ms if "named" in str(path) else int8_ms
    )
    tried = []

    def requantize(nodes, folder):
        tried.append(list(nodes))
        return folder / "m.onnx"

    inputs = _inputs(tmp_path, requantize)
    inputs.fp32 = _renamed(inputs.fp32, tmp_path)
    inputs.already_float = ("X",)
    decision, model = dep.choose_cpu(inputs)
    # Only Gemm_4 is slower in INT8 (+0.4 ms); once float, INT8 still loses: FP32 deployed.
    assert tried == [["X", "Gemm_4"]]
    assert decision.artifact == "fp32" and "up to 1 layer(s)" in decision.why


def _renamed(path: Path, tmp_path: Path) -> Path:
    model = onnx.load(str(path))
    for i, node in enumerate(model.graph.node):
        node.name = f"{node.op_type}_{i}"
    out = tmp_path / "fp32-named.onnx"
    onnx.save(model, str(out))
    return out


def test_rescue_succeeds_with_the_fewest_layers(tmp_path, monkeypatch):
    _fake_times(monkeypatch, [1.5, 0.9, 0.9])
    monkeypatch.setattr(
        dep,
        "node_times",
        lambda path, *a, **k: {"Conv_0": 0.1} if "named" in str(path) else {"Conv_0": 0.9},
    )
    inputs = _inputs(tmp_path, lambda nodes, folder: folder / "m.onnx")
    inputs.fp32 = _renamed(inputs.fp32, tmp_path)
    decision, model = dep.choose_cpu(inputs)
    assert decision.artifact == "int8-cpu" and decision.float_nodes == ["Conv_0"]
    assert model == tmp_path / "speed1" / "m.onnx" and "1 layer(s) slower in INT8" in decision.why


def test_node_times_name_every_convolution_of_a_real_model(quantized):
    ops = {n.name: n.op_type for n in onnx.load(str(quantized["fp32"])).graph.node}
    shape = TINY_SPEC.input_shape(1)
    fp32 = dep.node_times(quantized["fp32"], shape, runs=3)
    int8 = dep.node_times(quantized["cpu"], shape, runs=3)
    convs = {n for n, op in ops.items() if op in dep.QUANTIZABLE}
    assert convs and convs <= set(fp32) and convs <= set(int8)
    assert all(ms >= 0 for ms in [*fp32.values(), *int8.values()])


def test_a_build_records_and_the_runtime_follows_the_choice(fp32_onnx, spec, data_dir, tmp_path):
    config = BuildConfig(
        input=fp32_onnx,
        out=tmp_path / "b",
        spec=spec.save(tmp_path / "s.json"),
        calib=str(data_dir),
        calib_size=16,
        eval=data_dir,
        threads=1,
        cache_dir=tmp_path / "c",
        min_agreement=0,
    )
    result = build_bundle(config)
    bundle = Bundle.open(result.out)
    cpu, trt = bundle.manifest["deploy"]["cpu"], bundle.manifest["deploy"]["tensorrt"]
    ms = cpu["latency_ms"]
    assert cpu["measured"] and set(ms) == {"fp32", "int8-cpu"} and set(ms["fp32"]) == {"1", "8"}
    faster = ms["int8-cpu"]["1"] * dep.MIN_SPEEDUP <= ms["fp32"]["1"]
    assert cpu["artifact"] == ("int8-cpu" if faster else "fp32")
    assert trt == {**trt, "artifact": "int8-trt", "measured": False}
    with OrtRunner.from_bundle(bundle, threads=1) as runner:
        assert runner.name == f"ort:{cpu['artifact']}"
    assert deployed_key(bundle).endswith(cpu["artifact"])
    assert result.report["deploy"]["cpu"]["artifact"] == cpu["artifact"]


def test_low_agreement_is_reported_and_bounds_max_drop():
    import numpy as np

    y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    moved = y.copy()
    moved[:2] = [1, 0]  # same top-1 (8/10), 80 % agreement
    ev = Evaluation(("a", "b", "c"), "test split", y, {"fp32": y, "int8-cpu": moved})
    assert low_agreement(ev, 99.0) == [
        "int8-cpu agrees with FP32 on 80.00% of the 10 held-out images, below --min-agreement 99%"
    ]
    assert low_agreement(ev, 80.0) == []
    check_max_drop(ev, 25.0)  # no agreement bound given
    with pytest.raises(BudgetExceededError, match="within --max-drop 25 but int8-cpu agrees"):
        check_max_drop(ev, 25.0, 99.0)
