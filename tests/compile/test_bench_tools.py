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
