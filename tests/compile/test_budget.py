"""The accuracy budget end to end on a model plain INT8 destroys (tests/compile/outlier_model.py):
the search finds the float layers, meets the budget, reports the latency price; an impossible
budget fails and writes nothing."""

import json

import onnx
import pytest

from edgevision.bundle import Bundle
from edgevision.cli.app import main
from edgevision.compile import build_bundle, check_tensorrt_qdq
from edgevision.compile.budget import BudgetStep, render_markdown
from edgevision.compile.sensitivity import union
from edgevision.errors import BudgetExceededError
from tests.compile.outlier_model import NODES, make_outlier
from tests.compile.outlier_model import build_config as _config


@pytest.fixture(scope="module")
def outlier(tmp_path_factory):
    return make_outlier(tmp_path_factory.mktemp("outlier"))


def _quantized_tensors(path) -> set[str]:
    return {n.input[0] for n in onnx.load(str(path)).graph.node if n.op_type == "QuantizeLinear"}


def test_budget_keeps_the_outlier_layers_in_float(outlier, tmp_path):
    result = build_bundle(_config(outlier, tmp_path / "b", max_drop=0.5))
    budget = result.budget
    # conv2 in float reads c1 in float (an excluded node never reads a Q/DQ pair): one layer,
    # conv2 and its reader conv3, keeps both outlier tensors float.
    assert budget.met and set(budget.nodes_to_exclude) == set(NODES[1:])
    assert [r.layer for r in budget.layers] == ["conv2"]
    assert all(d > 60 for d in budget.before.drops.values())  # plain INT8: one class for all
    assert set(budget.after.drops) == {"int8-cpu", "int8-trt"}
    assert all(d <= 0.5 for d in budget.after.drops.values())
    assert [s.phase for s in budget.steps] == ["plain", "add"]  # the measured best, at once
    bundle = Bundle.open(result.out)
    m = bundle.manifest
    assert m["accuracy"]["models"]["int8-trt"]["drop_points"] <= 0.5
    # the budget's layers in both; the cpu artifact adds what its deployment kept for speed
    speed = m["deploy"]["cpu"]["float_nodes_for_speed"]
    assert m["artifacts"]["int8-trt"]["float_nodes"] == list(budget.nodes_to_exclude)
    assert m["artifacts"]["int8-cpu"]["float_nodes"] == list(union(budget.nodes_to_exclude, speed))
    assert m["accuracy_budget"]["float_layers"] == ["conv2"]
    assert check_tensorrt_qdq(bundle.path("model.int8.trt.onnx")) == []
    for file in ("model.int8.cpu.onnx", "model.int8.trt.onnx"):
        quantized = _quantized_tensors(bundle.path(file))
        assert not quantized & {"c1", "c2"} and {"c3", "f"} <= quantized  # only those two float
    report = json.loads(bundle.path("report.json").read_text())
    section = report["accuracy_budget"]
    lat = section["latency"]
    assert lat["interleaved"] and lat["target"] == "cpu"
    assert all(lat["median_ms"][k] > 0 for k in ("fp32", "int8", "budgeted"))
    assert [e["layer"] for e in lat["layers"]] == ["conv2"]
    assert lat["layers"][-1]["cumulative_ms"] == lat["median_ms"]["budgeted"]
    assert report["nodes_to_exclude"] == section["nodes_to_exclude"]
    md = bundle.path("report.md").read_text()
    assert "## Accuracy budget" in md and "| `conv2` | Conv |" in md and "## Calibration" in md
    table = json.loads(bundle.path("sensitivity.json").read_text())
    assert [r["layer"] for r in table["layers"][:2]] == ["conv1", "conv2"]


def test_impossible_budget_fails_and_writes_nothing(outlier, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("an earlier bundle")
    earlier = {"schema_version": 1, "spec": {}, "artifacts": {}, "files": {}}
    (out / "manifest.json").write_text(json.dumps(earlier))  # --out may replace a bundle only
    # Both outlier tensors must be float: one float layer can never be enough.
    config = _config(outlier, out, max_drop=0.5, max_float_layers=1, targets=("cpu",))
    with pytest.raises(BudgetExceededError) as info:
        build_bundle(config)
    message = str(info.value)
    assert "even with the 1 most sensitive layer(s) in float" in message
    assert "Plain INT8: int8-cpu drops 66.67 points" in message and "best found" in message
    assert "--max-float-layers" in info.value.fix
    assert info.value.result.met is False and info.value.result.searched == 1
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt", "manifest.json"]
    with pytest.raises(BudgetExceededError, match="int8-cpu drops 66.67 points"):
        build_bundle(_config(outlier, out, max_drop=0.5, search_float=False, targets=("cpu",)))
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt", "manifest.json"]


def test_within_budget_plain_int8_is_kept(outlier, tmp_path):
    """A generous budget: no search, the plain artifacts, the price of INT8 still timed."""
    config = _config(outlier, tmp_path / "b", max_drop=100.0, targets=("cpu",), min_agreement=0)
    budget = build_bundle(config).budget
    assert budget.met and budget.layers == [] and budget.nodes_to_exclude == ()
    assert len(budget.steps) == 1 and budget.latency["median_ms"]["budgeted"] > 0
    assert "within --max-drop 100" in budget.summary()


def test_budget_markdown_names_before_after_and_price():
    def step(phase, layers, drop, top1, agree, ok):
        one = lambda v: {"int8-cpu": v}  # noqa: E731
        return BudgetStep(phase, layers, tuple(layers), one(drop), one(top1), one(agree), ok)

    before, after = (
        step("plain", [], 5.0, 90.0, 91.0, False),
        step("add", ["x"], 0.2, 94.8, 99.0, True),
    )
    section = {
        "max_drop": 0.5,
        "met": True,
        "fp32_top1": 95.0,
        "float_layers": [
            {
                "layer": "x",
                "op_type": "Conv",
                "float_nodes": ["x", "y"],
                "sqnr_db": 3.0,
                "drop_alone": 0.2,
                "added_ms": 0.05,
            },
        ],
        "before": before.to_dict(),
        "after": after.to_dict(),
        "latency": {
            "backend": "onnxruntime CPU",
            "target": "cpu",
            "budgeted_over_plain": 1.1,
            "fp32_over_budgeted": 2.5,
            "median_ms": {"fp32": 2.0, "int8": 0.7, "budgeted": 0.8},
        },
    }
    md = render_markdown(section)
    assert "| int8-cpu | 90.00 | 5.00 | 94.80 | 0.20 | 99.00 |" in md
    assert "| `x` | Conv | 3.00 | 0.20 | +0.050 | `x`, `y` |" in md
    assert "plain INT8 0.700 ms, budgeted INT8 0.800 ms (x1.10 of plain" in md


def test_cli_budget_and_analyze(outlier, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # rich wraps at 80 columns when not on a terminal
    args = ["build", str(outlier["model"]), "--spec", str(outlier["spec"])]
    args += ["--out", str(tmp_path / "b"), "--calib", str(outlier["data"]), "--calib-size", "16"]
    args += ["--eval", str(outlier["data"]), "--targets", "cpu", "--threads", "1"]
    args += ["--cache-dir", str(outlier["root"] / "cache"), "--max-drop", "0.5", "--analyze"]
    try:
        main(args)
    except SystemExit as exc:
        assert exc.code in (0, None)
    out = capsys.readouterr().out
    assert "1 layer(s) kept in float (2 nodes) to meet --max-drop 0.5" in out
    assert "kept in float" in out and "conv1" in out and "latency" in out
    assert "calibration advisor: 16 calibration images are too few" in out
    assert "sensitivity: 6 layers in" in out
    assert Bundle.open(tmp_path / "b").manifest["report"]["sensitivity"]["layers"] == 6


def test_fit_budget_sets_back_a_layer_that_hurts(outlier, tmp_path):
    """The search API with a scripted evaluator: keeping ``fc`` in float costs 10 points (say,
    a layer whose float version disagrees with how the head was calibrated); it is tried first
    (it measured best alone), set back, and the outlier layers are kept instead."""
    import numpy as np

    from edgevision.compile import Job, calibrate, collect_calibration, fit_budget
    from edgevision.compile import prepare_for_quantization as prepare
    from edgevision.compile.evaluate import Evaluation
    from edgevision.compile.sensitivity import LayerSensitivity, SensitivityTable
    from edgevision.spec import ModelSpec

    spec = ModelSpec.load(outlier["spec"])
    calib = collect_calibration(str(outlier["data"]), spec, 16)
    prep = prepare(outlier["model"], tmp_path / "prep.onnx")
    ranges = calibrate(prep, calib, spec, cache_dir=tmp_path / "cache", threads=1)
    y = np.arange(30) % 3

    def scripted(models):
        quantized = _quantized_tensors(models["int8-cpu"])
        wrong = 20 if quantized & {"c1", "c2"} else 0
        fc_float = not any(n.startswith("logits") for n in quantized)
        wrong += 3 if fc_float else 0  # 10 points worse
        got = y.copy()
        got[:wrong] = (y[:wrong] + 1) % 3
        return Evaluation(spec.labels, "scripted", y, {"fp32": y, "int8-cpu": got})

    rows = [
        LayerSensitivity("fc", "Gemm", "logits", 50.0, float_nodes=("fc",), drop=0.0),
        LayerSensitivity("conv1", "Conv", "c1", 3.0, float_nodes=("conv1", "conv2")),
        LayerSensitivity("conv2", "Conv", "c2", 3.0, float_nodes=("conv2", "conv3")),
    ]
    job = Job(
        prep=prep,
        ranges=ranges,
        calib=calib,
        spec=spec,
        evaluator=scripted,
        targets=("cpu",),
        work=tmp_path / "out",
    )
    table = SensitivityTable("cpu", 16, rows)
    result = fit_budget(job, 0.5, table=table, latency_iterations=0)
    assert [s.phase for s in result.steps] == ["plain", "reject", "add", "add", "prune"]
    assert [s.layers for s in result.steps][1:4] == [["fc"], ["conv1"], ["conv1", "conv2"]]
    # pruned: with conv2 in float, conv1's tensor is float already (conv2 reads it in float)
    assert [r.layer for r in result.layers] == ["conv2"] and result.met
    assert result.after.drops == {"int8-cpu": 0.0} and result.latency is None
    assert result.artifacts["int8-cpu"].is_file()
