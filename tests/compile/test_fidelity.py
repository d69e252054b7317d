"""Real-photo INT8 fidelity, small form of tools/bench_fidelity.py: a truncated real-weight
Lite0 on crops of scikit-image's bundled photos. Synthetic data alone can no longer hide a
fidelity regression of the quantization recipe or of the float-layer mechanism."""

import argparse

import pytest

from edgevision.compile.rounding import RECIPES, hessian_rounding
from tests.compile.real_model import bench_fidelity


def test_small_real_photo_benchmark_runs_and_the_default_recipe_is_faithful(tmp_path):
    tool = bench_fidelity()
    args = argparse.Namespace(
        calib=16,
        held_out=48,
        crop_seeds="1,2",
        size=64,
        blocks=3,
        method=None,  # the classifier build's default
        recipes="plain,gptq+bc",
        targets="cpu,tensorrt",
        max_drop=None,
        float_curve="2,1000",  # 1000: more than the model has, every layer in float
        latency=0,
        threads=1,
        json=None,
        work=None,
    )
    result = tool.run(args, tmp_path)
    rows = result["recipes"]
    recipes = ("plain", "gptq+bc", "float2", "float1000")
    assert set(rows) == {f"{r}:{a}" for r in recipes for a in ("int8-cpu", "int8-trt")}
    for artifact in ("int8-cpu", "int8-trt"):
        assert rows[f"gptq+bc:{artifact}"]["agreement"] >= 93.0, rows
        assert rows[f"gptq+bc:{artifact}"]["agreement_confident"] == 100.0, rows
        assert rows[f"float1000:{artifact}"]["agreement"] == 100.0, rows  # the curve's end
    assert len(result["float_curve"]["2"]) == 2, result["float_curve"]
    for file in ("model.int8.cpu.onnx", "model.int8.trt.onnx"):
        quantized = [
            _quantize_ops(tmp_path / f"{r}.{file}") for r in ("gptq+bc", "float2", "float1000")
        ]
        assert quantized[0] > quantized[1] > quantized[2] == 0, (file, quantized)


def _quantize_ops(path):
    import onnx

    return sum(n.op_type == "QuantizeLinear" for n in onnx.load(str(path)).graph.node)


def test_hessian_rounding_beats_nearest_on_correlated_inputs():
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(4096, 9)) @ rng.normal(size=(9, 9))  # correlated inputs, like patches
    w = rng.normal(size=(16, 9))
    scale = np.abs(w).max(1) / 127
    h = (x.T @ x / len(x))[None]
    nearest = np.clip(np.rint(w / scale[:, None]), -127, 127)
    smart = hessian_rounding(w, scale, h).astype(np.float64)

    def err(levels):
        return np.mean(((w - levels * scale[:, None]) @ x.T) ** 2)

    assert err(smart) < 0.8 * err(nearest)
    assert np.abs(smart).max() <= 127


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(Exception, match="gptq"):
        RECIPES.get("adaround")
