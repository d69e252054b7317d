"""`edgevision build` on a detector: from a detection run and from a detector ONNX + spec.

A tiny detector (timm's test EfficientNet, 96x64, two epochs on 24 synthetic scenes) is enough
to exercise every step: export with named outputs, the export check, the float head, both
targets, mAP verification, the report, a budget that cannot be met and the contract errors.
"""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from edgevision.backends.ort import OrtRunner
from edgevision.bundle import Bundle
from edgevision.compile import BuildConfig, build_bundle, check_tensorrt_qdq
from edgevision.compile.sensitivity import union
from edgevision.data.synth_detect import generate_detection_dataset
from edgevision.errors import BudgetExceededError, BuildError
from edgevision.spec import ModelSpec
from edgevision.tasks.detect.evaluate import DetectionEvaluation
from edgevision.tasks.detect.metrics import Detections

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("det-build") / "data"
    return generate_detection_dataset(out, images=40, seed=5, size=(160, 120), progress=False)


@pytest.fixture(scope="module")
def run_dir(scenes, tmp_path_factory) -> Path:
    from edgevision.train import TrainConfig, train

    out = tmp_path_factory.mktemp("det-run") / "run"
    config = TrainConfig(
        data=str(scenes),
        out=str(out),
        backbone="test_efficientnet",
        weights=None,
        size="96x64",
        batch_size=4,
        epochs=2,
        threads=1,
        quiet=True,
        augment="light",
        split=(0.6, 0.2, 0.2),
    )
    return train(config).run_dir


def _config(run_dir: Path, out: Path, **kw) -> BuildConfig:
    base = dict(
        input=run_dir,
        out=out,
        calib_size=16,
        threads=1,
        deploy_iterations=3,
        latency_iterations=0,
        export_check_images=8,
    )
    return BuildConfig(**(base | kw))


@pytest.fixture(scope="module")
def built(run_dir, tmp_path_factory):
    return build_bundle(_config(run_dir, tmp_path_factory.mktemp("det-bundle") / "bundle"))


def test_bundle_from_a_detection_run(built):
    bundle = Bundle.open(built.out)  # every hash verified
    assert bundle.spec.task == "detection"
    assert set(bundle.artifacts) == {"fp32", "int8-cpu", "int8-trt"}
    assert {"ap_per_class.png", "report.json", "report.md"} <= set(bundle.manifest["files"])
    assert bundle.manifest["calibration"]["method"] == "minmax"  # the detector's default
    for name in ("fp32", "int8-cpu", "int8-trt"):
        graph = onnx.load(str(bundle.path(bundle.artifacts[name].file)))
        outputs = {
            o.name: [d.dim_value or d.dim_param for d in o.type.tensor_type.shape.dim]
            for o in graph.graph.output
        }
        k, c = bundle.spec.detection.candidates, bundle.spec.num_classes
        assert outputs["boxes"][1:] == [k, 4] and outputs["scores"][1:] == [k, c]
        assert isinstance(outputs["boxes"][0], str)  # dynamic batch
    assert check_tensorrt_qdq(str(bundle.path(bundle.artifacts["int8-trt"].file))) == []
    frame = np.zeros((3, 3, 64, 96), np.float32)
    with OrtRunner(bundle.path(bundle.artifacts["int8-cpu"].file)) as runner:
        out = runner.infer(frame)
    assert out["boxes"].shape == (3, bundle.spec.detection.candidates, 4)
    assert np.all((out["scores"] >= 0) & (out["scores"] <= 1))


def test_verified_by_map_with_confidence_figures(built):
    report = json.loads((built.out / "report.json").read_text())
    acc = report["accuracy"]
    assert acc["metric"] == "mAP@[.5:.95]" and acc["images"] > 0
    fp32, cpu = acc["models"]["fp32"], acc["models"]["int8-cpu"]
    assert {"map", "map50", "per_class", "mean_matched_score", "precision"} <= set(fp32)
    assert cpu["drop_points"] == pytest.approx(fp32["map"] - cpu["map"], abs=2e-3)
    assert "threshold_for_reference_precision" in cpu and "agreement" in cpu
    check = report["export_check"]
    assert check["boxes_max_abs_diff"] <= check["box_atol"] and check["compared"] > 0
    assert abs(check["map_torch"] - check["map_onnx"]) <= 0.1
    md = (built.out / "report.md").read_text()
    assert "mAP@[.5:.95]" in md and "ap_per_class.png" in md and "Kept in float" in md


def test_the_head_tail_stays_float_by_default(built, run_dir, tmp_path):
    report = json.loads((built.out / "report.json").read_text())
    tail = report["float_default"]
    assert tail["mode"] == "tail" and tail["nodes"] and "PTQ" in tail["why"]
    # the final layers are the head's cls/box/quality convolutions of the three levels
    assert len(tail["final_layers"]) == 9 and not set(tail["final_layers"]) & set(tail["nodes"])
    # the tail in both; the cpu artifact adds what its deployment timing kept float for speed
    # (a loaded machine may make INT8 look slow on this tiny model), the TensorRT one never
    speed = report["deploy"]["cpu"]["float_nodes_for_speed"]
    assert built.manifest["artifacts"]["int8-cpu"]["float_nodes"] == list(
        union(tail["nodes"], speed)
    )
    assert built.manifest["artifacts"]["int8-trt"]["float_nodes"] == tail["nodes"]
    for artifact in ("model.int8.trt.onnx", "model.int8.cpu.onnx"):
        q = onnx.load(str(built.out / artifact))
        producers = {o: n for n in q.graph.node for o in n.output}
        readers = {i: n for n in q.graph.node for i in n.input}
        convs = {n.name: n for n in q.graph.node}
        for name in tail["final_layers"]:
            if name in speed:
                continue
            conv = convs[name]  # INT8 weights, INT8 output read dequantized by the float tail
            assert conv.op_type == "Conv"
            assert producers[conv.input[1]].op_type == "DequantizeLinear"
            assert readers[conv.output[0]].op_type == "QuantizeLinear", (artifact, name)
    # --float-head head: the final layers read float inputs and keep float weights
    head = build_bundle(
        _config(run_dir, tmp_path / "head", float_head="head", deploy_by_latency=False)
    )
    record = head.report["float_default"]
    assert record["mode"] == "head" and set(tail["final_layers"]) <= set(record["nodes"])
    q = onnx.load(str(head.out / "model.int8.cpu.onnx"))
    dequantized = {n.output[0] for n in q.graph.node if n.op_type == "DequantizeLinear"}
    nodes = {n.name: n for n in q.graph.node}
    for name in record["final_layers"]:
        assert nodes[name].op_type == "Conv"
        assert not set(nodes[name].input) & dequantized  # float weights, float inputs
    # (not timed for deployment: on this tiny model that may keep layers float for speed)
    plain = build_bundle(
        _config(
            run_dir, tmp_path / "plain", float_head="none", analyze=True, deploy_by_latency=False
        )
    )
    assert plain.sensitivity.metric == "mAP@[.5:.95]" and plain.sensitivity.rows
    assert plain.report["float_default"] is None
    assert "float_nodes" not in plain.manifest["artifacts"]["int8-cpu"]
    q = onnx.load(str(plain.out / "model.int8.cpu.onnx"))
    deq = {n.output[0] for n in q.graph.node if n.op_type == "DequantizeLinear"}
    convs = {n.name: n for n in q.graph.node if n.op_type == "Conv"}
    assert all(convs[n].input[1] in deq for n in tail["final_layers"] if n in convs)


def test_from_a_detector_onnx_and_spec(built, scenes, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(json.loads((built.out / "manifest.json").read_text())["spec"]))
    model = built.out / "model.fp32.onnx"
    result = build_bundle(
        _config(model, tmp_path / "b", spec=spec, calib=str(scenes / "images"), eval=scenes)
    )
    assert result.report["source"]["kind"] == "onnx" and result.evaluation.n == 40  # all
    assert Bundle.open(result.out).spec.task == "detection"
    assert result.report["float_default"]["final_layers"]


def _renamed_output(src: Path, out: Path, old: str, new: str) -> Path:
    model = onnx.load(str(src))
    for o in model.graph.output:
        if o.name == old:
            o.name = new
    for n in model.graph.node:
        n.output[:] = [new if x == old else x for x in n.output]
    onnx.save(model, str(out))
    return out


def test_a_bad_detector_onnx_is_refused_with_the_contract(built, scenes, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(json.loads((built.out / "manifest.json").read_text())["spec"]))
    fp32 = built.out / "model.fp32.onnx"
    wrong = _renamed_output(fp32, tmp_path / "wrong.onnx", "scores", "probs")
    config = _config(wrong, tmp_path / "b", spec=spec, calib=str(scenes / "images"), eval=scenes)
    with pytest.raises(BuildError, match="boxes") as info:
        build_bundle(config)
    assert "scores" in info.value.message + (info.value.fix or "")
    doc = json.loads(spec.read_text())
    four = tmp_path / "four.json"
    four.write_text(json.dumps(doc | {"labels": [*doc["labels"], "extra"]}))
    with pytest.raises(BuildError, match="scores"):
        build_bundle(replace(config, input=fp32, spec=four))
    assert not (tmp_path / "b").exists()


def test_a_budget_that_cannot_be_met_writes_nothing(built, run_dir, tmp_path, monkeypatch):
    from edgevision.tasks.detect.build import BUILD

    out = tmp_path / "bundle"
    shutil.copytree(built.out, out)  # an earlier bundle at --out stays as it was
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = BUILD.evaluate

    def int8_misses_every_box(models, eval_set, spec, *args, **kwargs):
        # FP32 finds every box (the truth itself), every INT8 variant none: 100 points lost
        ev = real(models, eval_set, spec, *args, **kwargs)
        empty = Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))
        perfect = [Detections(t.boxes, np.ones(len(t)), t.labels) for t in ev.truths]
        preds = {n: perfect if n == "fp32" else [empty] * len(p) for n, p in ev.predictions.items()}
        return DetectionEvaluation(ev.labels, ev.source, ev.truths, preds, ev.score_threshold)

    monkeypatch.setattr(BUILD, "evaluate", int8_misses_every_box)
    with pytest.raises(BudgetExceededError, match="mAP") as info:
        build_bundle(_config(run_dir, out, max_drop=0.5, max_float_layers=2))
    assert "not written" in info.value.message
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_inspect_shows_the_task_and_outputs(built):
    from edgevision.cli.app import app

    result = CliRunner().invoke(app, ["inspect", str(built.out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "detection" in result.output and "boxes" in result.output
    assert "scores" in result.output and "K = 100" in result.output
    assert "boxes [batch, K, 4] float" in result.output  # shapes shown, not read as markup


def test_spec_of_the_bundle_is_the_runs(built, run_dir):
    assert Bundle.open(built.out).spec == ModelSpec.load(run_dir / "spec.json")
