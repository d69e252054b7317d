"""build_bundle end to end: from a RUN folder, from ONNX + spec, and the ways it must refuse."""

import json
from dataclasses import replace

import numpy as np
import pytest

from edgevision.backends.ort import OrtRunner
from edgevision.bundle import Bundle
from edgevision.compile import BuildConfig, build_bundle, check_tensorrt_qdq
from edgevision.compile.evaluate import Evaluation
from edgevision.errors import (
    BudgetExceededError,
    BuildError,
    ConfigError,
    OutputError,
    RegistryError,
    SpecError,
)
from edgevision.fileio import sha256_file
from edgevision.spec import ModelSpec
from tests.compile.conftest import LABELS


@pytest.fixture
def spec_file(spec, tmp_path):
    return spec.save(tmp_path / "spec.json")


def _onnx_config(fp32_onnx, spec_file, data_dir, tmp_path, **kw):
    base = dict(
        input=fp32_onnx,
        out=tmp_path / "out",
        spec=spec_file,
        calib=str(data_dir),
        calib_size=16,
        eval=data_dir,
        targets=("cpu",),
        threads=1,
        cache_dir=tmp_path / "cache",
    )
    return BuildConfig(**(base | kw))


def test_bundle_from_a_run_folder(built, run_dir):
    bundle = Bundle.open(built.out)  # verifies every hash
    m = bundle.manifest
    assert set(m["files"]) == {
        "model.fp32.onnx",
        "model.int8.cpu.onnx",
        "model.int8.trt.onnx",
        "calibration.json",
        "report.json",
        "report.md",
        "accuracy_per_class.png",
    }
    assert {a: (x.precision, x.target) for a, x in bundle.artifacts.items()} == {
        "fp32": ("fp32", "any"),
        "int8-cpu": ("int8", "cpu"),
        "int8-trt": ("int8", "tensorrt"),
    }
    assert bundle.spec.labels == LABELS
    calib = json.loads(bundle.path("calibration.json").read_text())
    assert m["calibration"]["manifest_sha256"] == calib["manifest_sha256"]
    assert m["calibration"]["method"] == "percentile"  # the classifier's default
    assert m["calibration"]["size"] == 16
    assert len(calib["files"]) == 16 and all(len(f["sha256"]) == 64 for f in calib["files"])
    assert set(m["versions"]) >= {"torch", "onnx", "onnxruntime"} and m["built_at"]
    assert m["build"]["time_s"] > 0 and m["build"]["source"]["kind"] == "checkpoint"
    assert m["build"]["source"]["sha256"] == sha256_file(run_dir / "checkpoint_best.pt")
    models = m["accuracy"]["models"]
    assert set(models) == {"fp32", "int8-cpu", "int8-trt"}
    assert m["accuracy"]["images"] == 9  # 3 test images per class
    assert {"drop_points", "agreement", "per_class_drop"} <= set(models["int8-cpu"])
    report = json.loads(bundle.path("report.json").read_text())
    assert report["accuracy"] == m["accuracy"] and "timings_s" in report
    assert "| int8-cpu |" in bundle.path("report.md").read_text()
    assert bundle.path("accuracy_per_class.png").read_bytes()[:4] == b"\x89PNG"
    assert check_tensorrt_qdq(bundle.path("model.int8.trt.onnx")) == []
    with OrtRunner.from_bundle(bundle, threads=1) as runner:
        assert runner.name == "ort:int8-cpu"
        x = np.zeros(bundle.spec.input_shape(2), np.float32)
        assert runner.infer(x)["logits"].shape == (2, 3)


def test_bundle_from_onnx_and_spec(fp32_onnx, spec_file, data_dir, tmp_path):
    result = build_bundle(_onnx_config(fp32_onnx, spec_file, data_dir, tmp_path))
    bundle = Bundle.open(result.out)
    assert set(bundle.artifacts) == {"fp32", "int8-cpu"}
    assert bundle.manifest["build"]["exporter"] is None
    assert bundle.manifest["build"]["source"]["kind"] == "onnx"
    assert result.export_check is None
    assert result.evaluation.n == 30 and result.evaluation.source.startswith("folder")
    # Same model, same calibration manifest, same spec: the ranges come from the cache.
    again = build_bundle(_onnx_config(fp32_onnx, spec_file, data_dir, tmp_path, out=tmp_path / "b"))
    assert again.ranges.from_cache


def test_wrong_or_missing_spec(fp32_onnx, data_dir, run_dir, tmp_path):
    four = ModelSpec(labels=(*LABELS, "d"), input_size=(32, 32)).save(tmp_path / "four.json")
    with pytest.raises(SpecError, match="predicts 3 classes but the ModelSpec has 4 labels"):
        build_bundle(_onnx_config(fp32_onnx, four, data_dir, tmp_path))
    big = ModelSpec(labels=LABELS, input_size=(64, 64)).save(tmp_path / "big.json")
    with pytest.raises(SpecError, match=r"takes input .*32, 32\] but the spec says"):
        build_bundle(_onnx_config(fp32_onnx, big, data_dir, tmp_path))
    with pytest.raises(SpecError, match="needs its ModelSpec"):
        build_bundle(_onnx_config(fp32_onnx, None, data_dir, tmp_path))
    other = ModelSpec(labels=("x", "y", "z"), input_size=(32, 32)).save(tmp_path / "xyz.json")
    with pytest.raises(SpecError, match="differs from the spec stored in checkpoint"):
        build_bundle(BuildConfig(input=run_dir, out=tmp_path / "o", spec=other))


def test_max_drop_failure_writes_nothing(fp32_onnx, spec_file, data_dir, tmp_path, monkeypatch):
    from edgevision.tasks.classify.build import BUILD

    out = tmp_path / "out"
    config = _onnx_config(fp32_onnx, spec_file, data_dir, tmp_path, max_drop=0.5)
    build_bundle(
        replace(config, max_drop=None)
    )  # an earlier bundle; without the gate it is written
    assert Bundle.open(out).artifacts
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def bad_evaluate(models, eval_set, spec, *args, **kwargs):
        y = np.array([0, 1, 2, 0])
        wrong = {n: (y + (n != "fp32")) % 3 for n in models}
        return Evaluation(spec.labels, eval_set.source, y, wrong)

    monkeypatch.setattr(BUILD, "evaluate", bad_evaluate)  # the task's metric, every step
    with pytest.raises(BudgetExceededError, match="int8-cpu drops 100.00 points"):
        build_bundle(config)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_without_a_labelled_set(fp32_onnx, spec_file, data_dir, tmp_path):
    config = _onnx_config(fp32_onnx, spec_file, data_dir, tmp_path, eval=None)
    result = build_bundle(config)
    assert result.evaluation is None and result.manifest["accuracy"] is None
    assert any("accuracy not verified" in w for w in result.warnings)
    assert "Not evaluated" in (result.out / "report.md").read_text()
    with pytest.raises(ConfigError, match="--max-drop needs a labelled held-out set"):
        build_bundle(replace(config, max_drop=1.0))


def test_bad_options_fail_before_work(built, run_dir, tmp_path):
    with pytest.raises(BuildError, match="already a bundle"):
        build_bundle(BuildConfig(input=built.out, out=tmp_path / "x"))
    bad = {
        "calib_size": (8, ConfigError, "too small"),
        "max_drop": (-1.0, ConfigError, "negative"),
        "targets": (("cpu", "npu"), RegistryError, "cpu, tensorrt"),
        "method": ("kl", RegistryError, "entropy, minmax, percentile"),
    }
    for field, (value, error, message) in bad.items():
        with pytest.raises(error, match=message):
            build_bundle(BuildConfig(input=run_dir, out=tmp_path / "x", **{field: value}))
    with pytest.raises(BuildError, match="does not exist"):
        build_bundle(BuildConfig(input=tmp_path / "nothing", out=tmp_path / "x"))


def test_out_never_replaces_what_is_not_a_bundle(fp32_onnx, spec_file, data_dir, tmp_path):
    precious = tmp_path / "thesis"
    (precious / "chapters").mkdir(parents=True)
    (precious / "chapters" / "one.tex").write_text("years of work")
    afile = tmp_path / "f.onnx"
    afile.write_bytes(b"not mine")
    foreign = tmp_path / "other"
    foreign.mkdir()
    (foreign / "manifest.json").write_text('{"name": "some web app"}')
    for out, message in ((precious, "not empty"), (afile, "not a folder"), (foreign, "not empty")):
        with pytest.raises(OutputError, match=message):
            build_bundle(_onnx_config(fp32_onnx, spec_file, data_dir, tmp_path, out=out))
    assert (precious / "chapters" / "one.tex").read_text() == "years of work"
    assert afile.read_bytes() == b"not mine"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_out_replaces_an_earlier_bundle_or_fills_an_empty_folder(
    fp32_onnx, spec_file, data_dir, tmp_path
):
    empty = tmp_path / "empty"
    empty.mkdir()
    config = _onnx_config(fp32_onnx, spec_file, data_dir, tmp_path, out=empty, eval=None)
    first = build_bundle(config)
    assert Bundle.open(first.out).artifacts
    again = build_bundle(config)  # an earlier bundle is the tool's own: replaced atomically
    assert Bundle.open(again.out).artifacts


def test_force_replaces_a_foreign_folder(fp32_onnx, spec_file, data_dir, tmp_path):
    folder = tmp_path / "scratch"
    folder.mkdir()
    (folder / "notes.txt").write_text("old")
    config = _onnx_config(fp32_onnx, spec_file, data_dir, tmp_path, out=folder, eval=None)
    build_bundle(replace(config, force=True))
    assert not (folder / "notes.txt").exists() and (folder / "manifest.json").is_file()


def test_an_empty_onnx_file_says_so(spec_file, data_dir, tmp_path):
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(BuildError, match=r"is empty \(0 bytes\)") as info:
        build_bundle(_onnx_config(empty, spec_file, data_dir, tmp_path))
    assert "opset" not in str(info.value)


def test_dynamic_height_and_width_are_fixed_to_the_spec(spec_file, data_dir, tmp_path):
    import onnx

    from tests.helpers import tiny_classifier_onnx

    dynamic = tiny_classifier_onnx(tmp_path / "dyn.onnx", size=("height", "width"))
    config = _onnx_config(dynamic, spec_file, data_dir, tmp_path, eval=None)
    result = build_bundle(config)
    assert any("dynamic dims [?, 3, ?, ?]: fixed to the spec's" in w for w in result.warnings)
    bundle = Bundle.open(result.out)
    for art in bundle.artifacts.values():
        model = onnx.load(str(bundle.path(art.file)))
        dims = [d.dim_value or d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
        assert dims == ["batch", 3, 32, 32], (art.name, dims)
