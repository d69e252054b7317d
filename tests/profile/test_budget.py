import pytest

from edgevision.errors import EdgeVisionError, RegistryError
from edgevision.profile import check_budget
from edgevision.profile.report import Measurement
from tests.profile.conftest import fake_report

SAMPLES = [float(i) for i in range(1, 101)]  # p50 50.5, p99 99.01, max 100


def test_missed_budget_names_artifact_percentile_and_overshoot():
    report = fake_report({"fp32": SAMPLES, "int8-cpu": [x / 10 for x in SAMPLES]}, "int8-cpu")
    result = check_budget(report, 80.0, "p99", artifact="fp32")
    assert not result.ok and result.key == "fp32" and result.percentile == "p99"
    assert result.over_ms == pytest.approx(19.01)
    assert result.over_pct == pytest.approx(19.01 / 80 * 100)
    msg = result.message
    assert "budget missed" in msg and "fp32" in msg and "p99" in msg
    assert "19.010 ms" in msg and "23.8%" in msg and "80 ms" in msg
    assert "deployed" not in msg


def test_default_gates_the_deployed_artifact_and_says_so():
    report = fake_report({"fp32": SAMPLES, "int8-cpu": [x / 10 for x in SAMPLES]}, "int8-cpu")
    result = check_budget(report, 12.0)
    assert result.ok and result.key == "int8-cpu" and result.default_target
    assert "int8-cpu (the deployed artifact: the one the runtime runs" in result.message
    assert "within budget" in result.message and "p99" in result.message
    assert not check_budget(report, 5.0, "p50").ok
    assert check_budget(report, 5.1, "p50").ok


@pytest.mark.parametrize("percentile, value", [("p50", 50.5), ("max", 100.0), ("mean", 50.5)])
def test_each_percentile(percentile, value):
    result = check_budget(fake_report({"fp32": SAMPLES}, "fp32"), 60.0, percentile)
    assert result.value_ms == pytest.approx(value)
    assert result.ok == (value <= 60.0)


def test_artifact_name_finds_a_stand_in_backend_and_smallest_batch():
    report = fake_report({"int8-trt@ort": SAMPLES}, None)
    report.measurements.append(
        Measurement(
            key="int8-trt@ort",
            kind="model",
            artifact="int8-trt",
            batch=8,
            samples_ms=[1000.0, 1000.0],
        )
    )
    result = check_budget(report, 200.0, "max", artifact="int8-trt")
    assert result.key == "int8-trt@ort" and result.batch == 1 and result.ok
    assert not check_budget(report, 200.0, "max", artifact="int8-trt", batch=8).ok


def test_bad_budget_inputs_are_clear_errors():
    report = fake_report({"fp32": SAMPLES}, "fp32")
    report.measurements.append(
        Measurement(
            key="int8-trt",
            kind="model",
            artifact="int8-trt",
            skipped="skipped: needs TensorRT + NVIDIA GPU",
        )
    )
    with pytest.raises(RegistryError, match="p95"):
        check_budget(report, 10.0, "p95")
    with pytest.raises(EdgeVisionError, match="positive number"):
        check_budget(report, 0.0)
    with pytest.raises(EdgeVisionError, match="no measurement named 'int4'") as info:
        check_budget(report, 10.0, artifact="int4")
    assert "fp32" in info.value.fix
    with pytest.raises(EdgeVisionError, match="int8-trt was not measured .*needs TensorRT"):
        check_budget(report, 10.0, artifact="int8-trt")
    with pytest.raises(EdgeVisionError, match="names no deployed artifact"):
        check_budget(fake_report({"fp32": SAMPLES}, None), 10.0)
