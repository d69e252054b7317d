"""`doctor --bundle` on a (fake) TensorRT device: an engine that fits runs, a stale one does not
(the fixtures are the TensorRT tests' own, see conftest.py)."""

from __future__ import annotations

import json

import pytest

from edgevision.backends.tensorrt.build import build_engine
from edgevision.cli.app import main
from edgevision.doctor import EXIT_CANNOT_RUN, diagnose


def test_a_fitting_engine_runs_and_a_stale_one_is_named(make_trt, cudart, trt_bundle, tmp_path):
    make_trt("10.3.0")
    build_engine(trt_bundle)
    report = diagnose(trt_bundle)
    steps = {s.name: s for s in report.bundle.steps}
    assert report.ok, report.bundle.steps
    assert steps["backend"].detail == "tensorrt (auto)"
    assert steps["runner"].detail.startswith("tensorrt:int8: loaded, one inference")
    tensorrt = {v.name: v for v in report.backends}["tensorrt"]
    assert tensorrt.ok and tensorrt.detail.startswith("TensorRT 10.3.0 on ")

    make_trt("11.2.0")  # JetPack upgraded under the engine
    out = tmp_path / "d.json"
    with pytest.raises(SystemExit) as info:
        main(["doctor", "--bundle", str(trt_bundle), "--json", str(out)])
    assert info.value.code == EXIT_CANNOT_RUN
    runner = json.loads(out.read_text())["bundle"]["steps"][-1]
    assert runner["ok"] is False
    assert "TensorRT version: built for 10.3.0, here 11.2.0" in runner["detail"]
    assert "edgevision engine" in runner["fix"]
    assert runner["fix"].endswith("or run it on the CPU: --backend ort")
