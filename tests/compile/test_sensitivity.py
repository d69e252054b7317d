"""Per-layer sensitivity: SQNR as ORT computes it, the layers that hurt ranked first, their
float nodes, the accuracy effect of each, and --analyze writing the table without changing
the model."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgevision.bundle import Bundle
from edgevision.compile import (
    Job,
    analyze_sensitivity,
    build_bundle,
    calibrate,
    collect_calibration,
    eval_set_from_folder,
    prepare_for_quantization,
)
from edgevision.compile.sensitivity import _db, _Energy, _fake_quant, _Quantized
from tests.compile.outlier_model import build_config as _config
from tests.compile.outlier_model import make_outlier


@pytest.fixture(scope="module")
def outlier(tmp_path_factory):
    return make_outlier(tmp_path_factory.mktemp("outlier"))


@pytest.fixture(scope="module")
def prepared(outlier, tmp_path_factory):
    from edgevision.spec import ModelSpec

    work = tmp_path_factory.mktemp("sens")
    spec = ModelSpec.load(outlier["spec"])
    calib = collect_calibration(str(outlier["data"]), spec, 16)
    prep = prepare_for_quantization(outlier["model"], work / "prep.onnx")
    ranges = calibrate(prep, calib, spec, cache_dir=work / "cache", threads=1)
    return prep, ranges, calib, spec, eval_set_from_folder(outlier["data"], spec)


def test_outlier_layers_rank_first_with_their_float_nodes(prepared):
    prep, ranges, calib, spec, eval_set = prepared
    job = Job(prep=prep, ranges=ranges, calib=calib, spec=spec, eval_set=eval_set, threads=1)
    table = analyze_sensitivity(job, "tensorrt")
    assert table.target == "tensorrt" and table.images == 16
    first, second = table.rows[:2]
    assert (first.layer, second.layer) == ("conv1", "conv2")
    assert first.float_nodes == ("conv1", "conv2") and second.float_nodes == ("conv2", "conv3")
    for row in (first, second):
        # The brightness channel rounds to zero: half the channels lost (3 dB), while the
        # outlier's energy keeps the tensor-wide SQNR high; that is why per-channel ranks.
        assert row.channel_sqnr_db == pytest.approx(3.01, abs=0.05)
        assert row.activation_sqnr_db > 40 and row.sqnr_db == row.channel_sqnr_db
    assert table.row("conv3").output_sqnr_db < 1  # FP32 vs INT8 there: nothing left
    assert table.rows[-1].sqnr_db > 20
    assert table.plain_drop == pytest.approx(200 / 3, abs=0.01) and table.fp32_top1 == 100.0
    measured = [r for r in table.rows if r.drop is not None]
    assert len(measured) == len(table.rows)  # 6 layers <= top_k 8
    # conv2 in float reads c1 in float too (an excluded node never reads a Q/DQ pair), so its
    # row alone recovers everything; every other layer alone recovers nothing.
    drops = {r.layer: r.drop for r in measured}
    assert drops.pop("conv2") == 0.0
    assert all(d == pytest.approx(table.plain_drop, abs=0.01) for d in drops.values()), drops
    md = table.markdown()
    assert "| `conv1` | Conv | 3.01 |" in md
    assert json.dumps(table.to_dict())  # JSON-ready


def test_sqnr_without_evaluation_and_top_k(prepared):
    prep, ranges, calib, spec, _ = prepared
    job = Job(prep=prep, ranges=ranges, calib=calib, spec=spec, threads=1)
    table = analyze_sensitivity(job, "cpu", sqnr_images=8)
    assert table.images == 8 and all(r.drop is None for r in table.rows)
    assert "accuracy effect not measured" in table.notes[0]
    assert table.candidates()[0].layer == "conv1"


def test_energy_sums_give_ort_sqnr():
    from onnxruntime.quantization.qdq_loss_debug import (
        compute_signal_to_quantization_noice_ratio as ort_sqnr,
    )

    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4, 10)).astype(np.float32)
    y = (x + rng.normal(scale=0.05, size=x.shape)).astype(np.float32)
    energy = _Energy()
    energy.add(x[:4], y[:4])
    energy.add(x[4:], y[4:])  # two batches, as layer_sqnr sums them
    assert energy.sqnr() == pytest.approx(ort_sqnr([x[:4], x[4:]], [y[:4], y[4:]]), abs=1e-3)
    assert _db(1.0, 0.0) > 300  # exact: best, not ORT's 0 dB for all-zero tensors
    y[:, 0] = 0  # one channel of four lost
    lost = _Energy()
    lost.add(x, y)
    assert lost.channel_sqnr() == pytest.approx(-10 * np.log10(0.25 + 0.75 * 0.0025), abs=0.1)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_fake_quant_is_what_ort_quantize_dequantize_does(dtype):
    import onnxruntime as ort

    scale, zero = np.float32(0.05), np.array(7 if dtype == np.uint8 else 0, dtype)
    inits = [numpy_helper.from_array(np.array(scale), "s"), numpy_helper.from_array(zero, "z")]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    # Out of range both ways, and exact halves (ONNX rounds half to even).
    x = np.concatenate([np.linspace(-9, 9, 60), [0.025, 0.075, -0.025, 0.125]]).astype(np.float32)
    want = session.run(None, {"x": x})[0]
    got = _fake_quant(x, _Quantized("x", scale, zero, None, []))
    np.testing.assert_array_equal(got, want)


def test_analyze_writes_the_table_and_leaves_the_model(outlier, tmp_path):
    result = build_bundle(_config(outlier, tmp_path / "b", analyze=True, targets=("cpu",)))
    bundle = Bundle.open(result.out)
    m = bundle.manifest
    assert m["report"]["sensitivity"] == {
        "json": "sensitivity.json",
        "markdown": "sensitivity.md",
        "plot": "sensitivity.png",
        "target": "cpu",
        "layers": 6,
    }
    assert bundle.path("sensitivity.png").read_bytes()[:4] == b"\x89PNG"
    assert "| `conv1` | Conv |" in bundle.path("sensitivity.md").read_text()
    table = json.loads(bundle.path("sensitivity.json").read_text())
    assert table["layers"][0]["float_nodes"] == ["conv1", "conv2"]
    assert table["layers"][0]["drop"] is not None  # the effect was measured
    # Not changing the model: everything INT8 as without --analyze, accuracy still lost.
    assert "float_nodes" not in m["artifacts"]["int8-cpu"] and m["accuracy_budget"] is None
    assert m["accuracy"]["models"]["int8-cpu"]["drop_points"] > 60
    assert "## Sensitivity" in bundle.path("report.md").read_text()
    assert onnx.load(str(bundle.path("model.int8.cpu.onnx")))  # loads
