"""tools/bench_build.py on a bundle built from an ONNX model, and tools/bench_zoo.py's machinery
on one small model (the table row and the JSON fields the report is read from)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from edgevision.spec import ModelSpec
from tests.compile.conftest import write_images
from tests.helpers import tiny_classifier_onnx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))


@pytest.fixture(scope="module")
def onnx_bundle(tmp_path_factory) -> Path:
    """A cpu-only bundle built from an ONNX model + spec (no PyTorch model anywhere)."""
    from edgevision.compile import BuildConfig, build_bundle

    root = tmp_path_factory.mktemp("onnx-bundle")
    model = tiny_classifier_onnx(root / "tiny.onnx")
    spec = ModelSpec(labels=("a", "b", "c"), input_size=(32, 48)).save(root / "spec.json")
    write_images(root / "calib", 16, seed=5)
    config = BuildConfig(
        input=model,
        out=root / "bundle",
        spec=spec,
        calib=str(root / "calib"),
        calib_size=16,
        targets=("cpu",),
        threads=1,
        cache_dir=root / "cache",
        deploy_iterations=3,
    )
    return build_bundle(config).out


def test_bench_build_measures_a_bundle_built_from_onnx_without_the_pytorch_column(
    onnx_bundle, tmp_path, capsys
):
    from bench_build import main

    out = tmp_path / "bench.json"
    argv = ["--bundle", str(onnx_bundle), "--rounds", "2", "--iters", "2", "--json", str(out)]
    assert main(argv) == 0
    latency = json.loads(out.read_text())["latency"]
    assert set(latency["median_ms"]) == {"int8-cpu (ORT)", "fp32 (ORT)"}
    assert latency["torch_over_int8"] is None and latency["fp32_over_int8"] > 0
    assert "built from an ONNX model" in latency["note"]
    assert "pytorch eager skipped" in capsys.readouterr().out


def test_bench_build_needs_a_run_to_build_a_missing_bundle(tmp_path, capsys):
    from bench_build import main

    with pytest.raises(SystemExit):
        main(["--bundle", str(tmp_path / "nope")])
    assert "building it needs --run RUN" in capsys.readouterr().err


def test_bench_zoo_builds_one_small_model_and_reports_its_row(tmp_path, capsys):
    from bench_zoo import HEADERS, main, table_row

    out = tmp_path / "zoo.json"
    argv = ["--models", "test_efficientnet", "--size", "32", "--calib-size", "16", "--skip-train"]
    argv += [
        "--threads",
        "1",
        "--rounds",
        "3",
        "--work",
        str(tmp_path / "work"),
        "--json",
        str(out),
    ]
    assert main(argv) == 0
    results = json.loads(out.read_text())
    (row,) = results["models"]
    assert row["model"] == "test_efficientnet" and row["build_ok"] and row["error"] is None
    assert row["qdq_check"] == "ok"
    for artifact in ("int8-cpu", "int8-trt"):
        share = row["quantized"][artifact]
        assert 0 < share["quantized"] <= share["layers"]
    assert row["deployed"] in ("int8-cpu", "fp32") and row["why"]
    assert row["int8_over_fp32"] > 0 and row["int8_over_fp32_retimed"] > 0
    assert isinstance(row["deployed_slower"], bool)
    assert results["trained"] == [] and "1/1 build with default options" in results["goals"]
    cells = table_row(row)
    assert len(cells) == len(HEADERS) and cells[0] == "test_efficientnet"
    assert cells[1].startswith("ok") and cells[6] == row["deployed"]
    assert "test_efficientnet" in capsys.readouterr().out


def test_bench_zoo_flags_low_agreement_and_failed_builds():
    from bench_zoo import TRAINED_GOAL, goals, report_warnings, table_row

    rows = [{"model": "m", "build_ok": False, "error": "the tensorrt INT8 model fails"}]
    trained = [
        {
            "model": "t",
            "build_ok": True,
            "images": 120,
            "deployed": {"cpu": "int8-cpu", "tensorrt": "int8-trt"},
            "agreement": {"cpu": 97.5, "tensorrt": 99.2},
            "flagged": {"cpu": True, "tensorrt": False},
        }
    ]
    lines = report_warnings(rows, trained)
    assert lines[0] == "m: build failed: the tensorrt INT8 model fails"
    assert "97.50% agreement" in lines[1] and "flagged in the build's warnings" in lines[1]
    assert len(lines) == 2  # 99.2 % needs no flag
    result = goals(rows, trained)
    assert result["0/1 build with default options"] is False
    assert result[TRAINED_GOAL]
    trained[0]["flagged"]["cpu"] = False
    assert "NOT flagged" in report_warnings(rows, trained)[1]
    assert not goals(rows, trained)[
        "every trained model's deployed artifacts >= 99% agreement or flagged"
    ]
    assert table_row(rows[0])[1] == "FAIL"
