"""`edgevision build` on a segmenter: from a segmentation ONNX + spec, verified by mIoU.

The torch-free square segmenter (`tests.segment_helpers`: three strided convs and a 1x1
classifier, stride-8 logits) on 16 synthetic scenes is enough to exercise every step: the
contract check, both targets, mIoU verification through the runtime's mapping, the report,
the head kept in float on request, a budget that cannot be met and the contract errors. The
export check is exercised with a torch copy of the same network.
"""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from typer.testing import CliRunner

from edgevision.backends.ort import OrtRunner
from edgevision.bundle import HEADLINE_KEYS, Bundle
from edgevision.compile import BuildConfig, build_bundle, check_tensorrt_qdq
from edgevision.errors import BudgetExceededError, BuildError, SpecError
from edgevision.tasks.segment.build import BUILD, SegmentationExportCheck
from edgevision.tasks.segment.evaluate import SegmentationEvaluation
from tests.segment_helpers import (
    save,
    segmentation_spec,
    square_segmenter_model,
    square_segmenter_onnx,
    write_square_dataset,
)

pytestmark = pytest.mark.slow

ARTIFACTS = {"fp32", "int8-cpu", "int8-trt"}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("seg-build")


@pytest.fixture(scope="module")
def data(work) -> Path:
    return write_square_dataset(work / "data", images=16, seed=7)


def _spec_file(path: Path, **kw) -> Path:
    path.write_text(json.dumps(segmentation_spec(**kw).to_dict()))
    return path


@pytest.fixture(scope="module")
def inputs(work) -> tuple[Path, Path]:
    return square_segmenter_onnx(work / "seg.onnx"), _spec_file(work / "spec.json")


def _config(model: Path, spec: Path, out: Path, data: Path, **kw) -> BuildConfig:
    base = dict(
        input=model,
        spec=spec,
        out=out,
        calib=str(data / "images"),
        eval=data,
        calib_size=16,
        threads=1,
        deploy_iterations=3,
        latency_iterations=0,
        advise=False,
    )
    return BuildConfig(**(base | kw))


@pytest.fixture(scope="module")
def built(inputs, data, work) -> Path:
    from edgevision.cli.app import app

    model, spec = inputs
    out = work / "bundle"
    args = ["build", str(model), "--spec", str(spec), "--calib", str(data / "images")]
    args += ["--eval", str(data), "--out", str(out), "--calib-size", "16", "--threads", "1"]
    args += ["--max-drop", "3", "--no-deploy-by-latency"]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "mIoU" in result.output
    return out


def test_bundle_open_knows_the_miou_headline(built):
    assert HEADLINE_KEYS["mIoU"] == "miou"
    Bundle.open(built)  # the accuracy section's mIoU figures are checked


def test_bundle_from_a_segmenter_onnx_through_the_cli(built):
    bundle = Bundle.open(built)  # every hash verified
    assert bundle.spec.task == "segmentation" and bundle.spec.segmentation.output == "logits"
    assert set(bundle.artifacts) == ARTIFACTS
    assert {"iou_per_class.png", "report.json", "report.md"} <= set(bundle.manifest["files"])
    for name in ARTIFACTS:
        graph = onnx.load(str(bundle.path(bundle.artifacts[name].file))).graph
        (out,) = graph.output
        dims = [d.dim_value or d.dim_param for d in out.type.tensor_type.shape.dim]
        assert out.name == "logits" and dims[1:] == [2, 8, 12] and isinstance(dims[0], str)
    assert check_tensorrt_qdq(str(bundle.path(bundle.artifacts["int8-trt"].file))) == []
    with OrtRunner(bundle.path(bundle.artifacts["int8-cpu"].file)) as runner:
        assert runner.infer(np.zeros((3, 3, 64, 96), np.float32))["logits"].shape == (3, 2, 8, 12)


def test_verified_by_miou_for_fp32_and_every_int8_artifact(built):
    report = json.loads((built / "report.json").read_text())
    acc = report["accuracy"]
    assert acc["metric"] == "mIoU" and acc["images"] == 16 and acc["pixels"] > 0
    assert set(acc["models"]) == ARTIFACTS
    fp32 = acc["models"]["fp32"]
    assert fp32["miou"] > 60 and set(fp32["per_class"]) == {"background", "square"}
    for name in ("int8-cpu", "int8-trt"):
        m = acc["models"][name]
        assert m["drop_points"] == pytest.approx(fp32["miou"] - m["miou"], abs=2e-3)
        assert abs(m["drop_points"]) < 3 and m["agreement"] > 95
        assert {"per_class_drop", "per_class_dice", "mean_dice"} <= set(m)
    assert report["float_default"] is None  # plain INT8 by default
    assert report["accuracy_budget"]["met"]
    assert len(acc["confusion"]["matrix"]) == 2
    md = (built / "report.md").read_text()
    assert "mIoU" in md and "IoU per class" in md and "iou_per_class.png" in md


def test_the_head_stays_float_on_request(inputs, data, tmp_path):
    model, spec = inputs
    result = build_bundle(
        _config(
            model,
            spec,
            tmp_path / "head",
            data,
            targets=("cpu",),
            deploy_by_latency=False,
            float_head="head",
        )
    )
    head = result.report["float_default"]
    assert head["final_layers"] == ["classifier"] and head["nodes"] == ["classifier"]
    assert result.manifest["artifacts"]["int8-cpu"]["float_nodes"] == ["classifier"]
    q = onnx.load(str(result.out / "model.int8.cpu.onnx"))
    dequantized = {n.output[0] for n in q.graph.node if n.op_type == "DequantizeLinear"}
    conv = next(n for n in q.graph.node if n.name == "classifier")
    assert conv.input[1] not in dequantized  # float weights
    assert "Kept in float" in (result.out / "report.md").read_text()


def _renamed(path: Path, new: str) -> Path:
    model = square_segmenter_model(64, 96)
    model.graph.output[0].name = new
    model.graph.node[-1].output[0] = new
    return save(model, path)


def test_a_bad_segmenter_onnx_is_refused_with_the_contract(inputs, data, tmp_path):
    model, spec = inputs
    out = tmp_path / "b"
    wrong = _renamed(tmp_path / "wrong.onnx", "out")
    with pytest.raises(BuildError, match="'out'") as info:
        build_bundle(_config(wrong, spec, out, data))
    assert "'logits' [batch, C, h, w]" in info.value.fix
    three = _spec_file(tmp_path / "three.json", labels=("background", "square", "disc"))
    with pytest.raises(BuildError, match="3 labels") as info:
        build_bundle(_config(model, three, out, data))
    assert "'logits' [batch, C, h, w]" in info.value.fix
    flat = square_segmenter_model(64, 96)
    del flat.graph.output[0].type.tensor_type.shape.dim[1]
    with pytest.raises(BuildError, match="rank 3"):
        build_bundle(_config(save(flat, tmp_path / "flat.onnx"), spec, out, data))
    classmap = square_segmenter_onnx(tmp_path / "cm.onnx", output="classmap")
    with pytest.raises(SpecError, match="classmap"):
        build_bundle(_config(classmap, spec, out, data))
    assert not out.exists()


def test_a_class_map_segmenter_builds(data, tmp_path):
    model = square_segmenter_onnx(tmp_path / "cm.onnx", output="classmap")
    spec = _spec_file(tmp_path / "cm.json", output="classmap")
    result = build_bundle(
        _config(model, spec, tmp_path / "cm", data, targets=("cpu",), deploy_by_latency=False)
    )
    assert result.evaluation.score("int8-cpu") > 60
    graph = onnx.load(str(result.out / "model.int8.cpu.onnx")).graph
    assert [o.name for o in graph.output] == ["classes"]
    assert {"iou_per_class.png", "confusion_fp32.png", "examples.png"} <= set(
        result.manifest["files"]
    )


def test_a_budget_that_cannot_be_met_writes_nothing(built, inputs, data, tmp_path, monkeypatch):
    model, spec = inputs
    out = tmp_path / "bundle"
    shutil.copytree(built, out)  # an earlier bundle at --out stays as it was
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = BUILD.evaluate

    def int8_misses_every_square(models, eval_set, spec, *args, **kwargs):
        # FP32 perfect, every INT8 variant calls every pixel background: 50 points lost
        ev = real(models, eval_set, spec, *args, **kwargs)
        truth = ev.confusions[ev.reference].sum(axis=1)
        perfect = np.diag(truth)
        blind = np.zeros_like(perfect)
        blind[:, 0] = truth
        conf = {n: perfect if n == ev.reference else blind for n in ev.confusions}
        total = ev.agreement_pixels[ev.reference][1]
        agree = {n: (total if n == ev.reference else 0, total) for n in ev.confusions}
        return SegmentationEvaluation(ev.labels, ev.source, conf, agree, ev.n)

    monkeypatch.setattr(BUILD, "evaluate", int8_misses_every_square)
    with pytest.raises(BudgetExceededError, match="mIoU") as info:
        build_bundle(_config(model, spec, out, data, max_drop=0.5, max_float_layers=2))
    assert "not written" in info.value.message
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def _torch_copy(onnx_model: onnx.ModelProto, nudge: float = 0.0):
    """The square segmenter's network in torch, weights from the ONNX (``nudge``: added to
    the classifier's square weight, an export that went wrong)."""
    import torch

    weights = {i.name: numpy_helper.to_array(i).copy() for i in onnx_model.graph.initializer}
    weights["cls_w"][1, 0] += nudge

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = {k: torch.from_numpy(v) for k, v in weights.items()}

        def forward(self, x):
            for level in range(3):
                w, b = self.w[f"conv{level}_w"], self.w[f"conv{level}_b"]
                x = torch.relu(torch.nn.functional.conv2d(x, w, b, stride=2, padding=1))
            return torch.nn.functional.conv2d(x, self.w["cls_w"], self.w["cls_b"])

    return Net().eval()


def test_the_export_check_compares_logits_and_class_maps(inputs, data, monkeypatch):
    from edgevision.data.images import read_image
    from edgevision.preprocess import preprocess_batch

    model, _ = inputs
    spec = segmentation_spec()
    monkeypatch.setattr(BUILD, "export_module", lambda m, s: m)  # the copy is the graph
    images = preprocess_batch(
        [read_image(p) for p in sorted((data / "images").glob("*.png"))[:6]], spec
    )
    check = BUILD.check_export(
        _torch_copy(onnx.load(str(model))), model, images, spec, atol=1e-4, batch_size=4
    )
    assert isinstance(check, SegmentationExportCheck) and check.ok
    assert check.logits_max_abs_diff < 1e-4 and check.pixel_agreement == 100.0
    assert check.miou_onnx == pytest.approx(100.0) and check.pixels == 6 * 8 * 12
    assert "mIoU against PyTorch" in BUILD.describe_check(check.to_dict())
    with pytest.raises(BuildError, match="disagrees with PyTorch") as info:
        BUILD.check_export(_torch_copy(onnx.load(str(model)), nudge=2.0), model, images, spec)
    assert "ONNX" in info.value.message and "mIoU" in info.value.message


def test_a_bundle_rebuilt_from_its_own_fp32(built, data, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(json.loads((built / "manifest.json").read_text())["spec"]))
    result = build_bundle(
        replace(
            _config(built / "model.fp32.onnx", spec, tmp_path / "again", data),
            targets=("tensorrt",),
            deploy_by_latency=False,
        )
    )
    assert result.report["source"]["kind"] == "onnx" and result.evaluation.n == 16
    assert set(result.manifest["artifacts"]) == {"fp32", "int8-trt"}


def test_inspect_shows_the_segmentation_output_contract(built):
    from typer.testing import CliRunner

    from edgevision.cli.app import app

    result = CliRunner().invoke(app, ["inspect", str(built)], env={"COLUMNS": "220"})
    assert result.exit_code == 0, result.output
    assert (
        "segmentation" in result.output and "logits [batch, classes, h, w] float" in result.output
    )
    assert "mIoU" in result.output
