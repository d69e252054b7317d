"""The TensorRT engine a bundle deploys on a device, chosen by measurement (`choose_engine`),
against the fake TensorRT: the timings are injected, except in the one test of the timer."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
from typer.testing import CliRunner

from edgevision.backends.tensorrt import deploy
from edgevision.backends.tensorrt.deploy import choose_engine, deployed_precision, time_engines
from edgevision.backends.tensorrt.runner import TrtRunner
from edgevision.backends.tensorrt.staleness import Environment
from edgevision.bundle import Bundle
from edgevision.compile.deploy import MIN_SPEEDUP


class Timings:
    """An injected `EngineTimer`: one INT8 batch-1 ms per call, FP16 always 1.0 ms."""

    def __init__(self, *int8_ms: float) -> None:
        self.int8_ms = list(int8_ms)
        self.calls: list[list[tuple[int, ...]]] = []

    def __call__(self, engines, shapes, iterations):
        assert set(engines) == {"int8", "fp16"} and iterations > 0
        self.calls.append(list(shapes))
        ms = self.int8_ms[len(self.calls) - 1]
        return {
            "int8": {str(s[0]): ms * s[0] for s in shapes},
            "fp16": {str(s[0]): 1.0 * s[0] for s in shapes},
        }


def _manifest(bundle):
    return json.loads((bundle / "manifest.json").read_text())


def test_the_rule_is_the_cpu_builds():
    assert deploy.MIN_SPEEDUP == MIN_SPEEDUP


def test_int8_twice_clearly_faster_is_deployed_and_recorded(trt, autocast, trt_bundle, gpu):
    timer = Timings(0.5, 0.6)
    choice = choose_engine(trt_bundle, timer=timer, max_batch=4)
    assert choice.precision == "int8" and choice.measured and choice.recorded
    assert len(timer.calls) == 2  # the first fast timing is confirmed by a second
    assert [s[0] for s in timer.calls[0]] == [1, 4]
    assert {p: r.precision for p, r in choice.engines.items()} == {"int8": "int8", "fp16": "fp16"}
    record = _manifest(trt_bundle)["deploy"]["tensorrt"]
    assert record["artifact"] == "int8-trt" and record["precision"] == "int8"
    assert record["measured"] is True and record["latency_ms"]["int8"]["1"] == 0.6
    assert record["device"]["gpu_name"] == gpu.name
    assert set(record["engines"]) == {"int8", "fp16"}
    assert "1.67x at batch 1" in record["why"] and "int8-trt deployed" in record["why"]
    bundle = Bundle.open(trt_bundle)  # the record passes the bundle's own checks
    assert TrtRunner.from_bundle(bundle).record.precision == "int8"


@pytest.mark.parametrize("int8_ms", [(1.0 / 1.05,), (0.5, 0.95)])
def test_fp16_is_deployed_unless_int8_is_clearly_faster_twice(trt, autocast, trt_bundle, int8_ms):
    # 1.05x faster: within noise; or fast once and not again
    timer = Timings(*int8_ms)
    choice = choose_engine(trt_bundle, timer=timer)
    assert choice.precision == "fp16" and len(timer.calls) == len(int8_ms)
    assert f"INT8 not {MIN_SPEEDUP:.2f}x faster at batch 1" in choice.why
    record = _manifest(trt_bundle)["deploy"]["tensorrt"]
    assert record["artifact"] == "fp32" and record["precision"] == "fp16"
    bundle = Bundle.open(trt_bundle)
    # without a precision the runtime runs the deployed FP16 engine; INT8 stays one flag away
    assert TrtRunner.from_bundle(bundle).record.precision == "fp16"
    assert TrtRunner.from_bundle(bundle, artifact="fp32").record.precision == "fp16"
    assert TrtRunner.from_bundle(bundle, precision="int8").record.precision == "int8"
    assert TrtRunner.from_bundle(bundle, artifact="int8-trt").record.precision == "int8"


def test_a_choice_measured_on_another_device_is_not_followed(trt, autocast, trt_bundle):
    choose_engine(trt_bundle, timer=Timings(1.0))
    bundle = Bundle.open(trt_bundle)
    record = bundle.manifest["deploy"]["tensorrt"]
    here = Environment(**record["device"])
    assert deployed_precision(bundle, here) == "fp16"
    other = Environment(**{**asdict(here), "gpu_name": "Orin (nvgpu)", "multiprocessors": 8})
    assert deployed_precision(bundle, other) is None


def test_a_build_without_the_device_choice_runs_int8(trt, autocast, trt_bundle):
    bundle = Bundle.open(trt_bundle)
    assert deployed_precision(bundle, Environment("10.3.0", "x", "8.7")) is None
    choose_engine(trt_bundle, timer=Timings(1.0))  # builds both engines, deploys FP16
    manifest = _manifest(trt_bundle)
    manifest["deploy"]["tensorrt"]["measured"] = False  # as `edgevision build` writes it
    (trt_bundle / "manifest.json").write_text(json.dumps(manifest))
    assert TrtRunner.from_bundle(Bundle.open(trt_bundle)).record.precision == "int8"


def test_no_fp16_engine_here_deploys_int8_unmeasured(make_trt, cudart, trt_bundle):
    make_trt("10.16.0")  # strongly typed, and no ModelOpt to convert the FP32 model to FP16
    timer = Timings(1.0)
    choice = choose_engine(trt_bundle, timer=timer)
    assert choice.precision == "int8" and not choice.measured and timer.calls == []
    assert "no FP16 engine to compare with" in choice.why and "ModelOpt" in choice.why
    record = _manifest(trt_bundle)["deploy"]["tensorrt"]
    assert record["measured"] is False and record["artifact"] == "int8-trt"


def test_a_read_only_bundle_keeps_its_manifest(trt, autocast, trt_bundle, monkeypatch):
    choose_engine(trt_bundle, timer=Timings(0.5, 0.5))  # engines in the bundle folder
    before = (trt_bundle / "manifest.json").read_bytes()

    def read_only(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Bundle, "save_manifest", read_only)
    choice = choose_engine(trt_bundle, timer=Timings(1.0))
    assert choice.precision == "fp16" and not choice.recorded
    assert (trt_bundle / "manifest.json").read_bytes() == before


def test_time_engines_runs_each_engine_at_each_batch(trt, autocast, trt_bundle):
    from edgevision.backends.tensorrt.build import build_engine

    engines = {p: build_engine(trt_bundle, precision=p) for p in ("int8", "fp16")}
    shapes = [Bundle.open(trt_bundle).spec.input_shape(b) for b in (1, 2)]
    times = time_engines(engines, shapes, iterations=3)
    assert set(times) == {"int8", "fp16"}
    assert all(set(t) == {"1", "2"} and all(ms > 0 for ms in t.values()) for t in times.values())


def test_engine_command_deploys_by_default(trt, autocast, trt_bundle, monkeypatch):
    from edgevision.cli.app import app
    from edgevision.profile.plan import deployed_key

    monkeypatch.setattr(deploy, "time_engines", Timings(1.0))
    result = CliRunner().invoke(app, ["engine", str(trt_bundle), "--max-batch", "2"])
    assert result.exit_code == 0, result.output
    assert "deployed fp16 (recorded in the bundle)" in " ".join(result.output.split())
    assert result.output.count("engine ") >= 2
    assert deployed_key(Bundle.open(trt_bundle)) == "fp32@tensorrt:fp16"  # profile's star
    result = CliRunner().invoke(
        app, ["engine", str(trt_bundle), "--precision", "int8", "--max-batch", "2"]
    )
    assert result.exit_code == 0 and "deployed" not in result.output
