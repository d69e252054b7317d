import json

import pytest

from edgevision.errors import EdgeVisionError
from edgevision.profile import compare, parse_threshold
from tests.profile.conftest import fake_report

BASE = [float(i) for i in range(1, 101)]


def test_flags_regressions_over_threshold(tmp_path):
    a = fake_report({"fp32": BASE, "int8-cpu": BASE})
    b = fake_report({"fp32": [x * 1.25 for x in BASE], "int8-cpu": [x * 1.05 for x in BASE]})
    a.save(tmp_path / "a.json")
    b.save(tmp_path / "b.json")
    result = compare(tmp_path / "a.json", tmp_path / "b.json", "10%")
    assert not result.ok
    flagged = {(c.key, c.percentile) for c in result.regressions}
    assert flagged == {("fp32", p) for p in ("p50", "p90", "p99", "mean")}  # max: shown only
    fp32_p50 = next(c for c in result.changes if c.key == "fp32" and c.percentile == "p50")
    assert fp32_p50.change == pytest.approx(0.25)
    assert compare(a, b, 0.30).ok
    assert compare(b, a, "10%").ok  # faster is never a regression


def test_tiny_absolute_changes_are_not_flagged():
    a = fake_report({"stage": [0.010] * 10})
    b = fake_report({"stage": [0.020] * 10})  # +100%, but 10 µs
    assert compare(a, b).ok
    assert not compare(a, b, min_delta_ms=0.0).ok


def test_lists_missing_entries_and_context_differences():
    a = fake_report({"fp32": BASE, "int8-cpu": BASE}, machine={"cpu_model": "A"})
    b = fake_report({"fp32": BASE, "int8-trt": BASE}, machine={"cpu_model": "B"}, sha="1" * 64)
    result = compare(a, b)
    assert result.only_in_a == ["int8-cpu@batch1"] and result.only_in_b == ["int8-trt@batch1"]
    assert any("cpu_model" in d and "'A'" in d for d in result.differences)
    assert any("manifest_sha256" in d for d in result.differences)


@pytest.mark.parametrize(
    "text, value", [("10%", 0.1), ("10", 0.1), ("0.05", 0.05), ("2.5%", 0.025)]
)
def test_parse_threshold(text, value):
    assert parse_threshold(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["ten", "-5%", "0%", ""])
def test_bad_threshold(text):
    with pytest.raises(EdgeVisionError, match="threshold"):
        parse_threshold(text)


def test_bad_report_files(tmp_path):
    good = fake_report({"fp32": BASE})
    with pytest.raises(EdgeVisionError, match="does not exist"):
        compare(tmp_path / "missing.json", good)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(EdgeVisionError, match="not valid JSON"):
        compare(tmp_path / "bad.json", good)
    (tmp_path / "other.json").write_text(json.dumps({"schema": "something/1"}))
    with pytest.raises(EdgeVisionError, match="not an edgevision profile report"):
        compare(tmp_path / "other.json", good)
    with pytest.raises(EdgeVisionError, match="cannot compare a 'models' profile"):
        compare(good, fake_report({"fp32": BASE}, mode="pipeline"))
