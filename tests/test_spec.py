import json
import shutil
from pathlib import Path

import pytest

from edgevision.errors import SpecError
from edgevision.spec import SCHEMA_VERSION, ModelSpec
from edgevision.tasks.detect.spec import DetectionOptions

FIXTURES = Path(__file__).parent / "fixtures"


def test_roundtrip(tmp_path, spec):
    path = spec.save(tmp_path / "spec.json")
    assert ModelSpec.load(path) == spec
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION == 2
    assert "detection" not in json.loads(path.read_text())  # a classifier has no such section


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("schema_version", 99, "schema_version"),
        ("channel_order", "RGBA", "channel_order"),
        ("resize", "squash", "resize"),
        ("interpolation", "lanczos", "interpolation"),
        ("layout", "CHW", "layout"),
        ("input_size", [0, 224], "input_size"),
        ("crop_ratio", 1.5, "crop_ratio"),
        ("std", [0.2, 0.0, 0.2], "std"),
        ("mean", [0.5, 0.5], "mean"),
        ("labels", ["only"], "labels"),
        ("labels", ["a", "a"], "labels"),
        ("bogus", 1, "bogus"),
    ],
)
def test_strict_load_names_the_field(spec, field, value, needle):
    data = spec.to_dict()
    data[field] = value
    with pytest.raises(SpecError) as info:
        ModelSpec.from_dict(data)
    assert needle in str(info.value)


def test_missing_labels(spec):
    data = spec.to_dict()
    del data["labels"]
    with pytest.raises(SpecError, match="labels"):
        ModelSpec.from_dict(data)


def test_label_count_mismatch(spec):
    with pytest.raises(SpecError, match="predicts 5 classes"):
        ModelSpec.from_dict(spec.to_dict(), num_outputs=5)
    data = spec.to_dict() | {"num_classes": 4}
    with pytest.raises(SpecError, match="num_classes"):
        ModelSpec.from_dict(data)


def test_bad_json_file(tmp_path):
    p = tmp_path / "s.json"
    p.write_text("{not json")
    with pytest.raises(SpecError, match="not valid JSON"):
        ModelSpec.load(p)
    with pytest.raises(SpecError, match="does not exist"):
        ModelSpec.load(tmp_path / "missing.json")


# ----------------------------------------------------------------------------- the task layer


def test_version_1_spec_of_a_trained_run_reads_as_classification():
    """spec.json written by edgevision before the task layer (a real run folder's file)."""
    data = json.loads((FIXTURES / "spec_v1_run.json").read_text())
    assert data["schema_version"] == 1
    spec = ModelSpec.from_dict(data)
    assert spec.task == "classification" and spec.detection is None
    assert spec.labels == tuple(data["labels"]) and spec.schema_version == SCHEMA_VERSION
    assert ModelSpec.from_dict(spec.to_dict()) == spec


def test_version_1_bundle_manifest_spec_reads():
    """The spec inside a real version-1 bundle manifest (the demo's INT8 bundle)."""
    manifest = json.loads((FIXTURES / "manifest_v1_demo.json").read_text())
    assert manifest["spec"]["schema_version"] == 1
    spec = ModelSpec.from_dict(manifest["spec"])
    assert spec.task == "classification" and spec.num_classes == len(manifest["spec"]["labels"])


def test_version_1_bundle_opens_and_runs(tmp_path):
    """A whole bundle written by edgevision before the task layer opens, verifies and infers."""
    import numpy as np

    from edgevision.backends.ort.runner import OrtRunner
    from edgevision.bundle import Bundle

    root = shutil.copytree(FIXTURES / "bundle_v1", tmp_path / "bundle")
    assert json.loads((root / "manifest.json").read_text())["spec"]["schema_version"] == 1
    bundle = Bundle.open(root)
    assert bundle.spec.task == "classification"
    with OrtRunner.from_bundle(bundle, "fp32") as runner:
        (logits,) = runner.infer({"input": np.zeros((1, 3, 32, 48), np.float32)}).values()
    assert logits.shape == (1, 3)


@pytest.mark.parametrize(
    "change",
    [
        {"task": "detection"},  # version 1 was classification only
        {"detection": {"candidates": 10}},
    ],
)
def test_version_1_cannot_carry_version_2_fields(spec, change):
    data = {**spec.to_dict(), "schema_version": 1, **change}
    with pytest.raises(SpecError, match="version"):
        ModelSpec.from_dict(data)


def test_detection_spec_roundtrip_and_defaults(tmp_path):
    spec = ModelSpec(labels=("stop",), task="detection", input_size=(192, 256))
    assert spec.detection == DetectionOptions()
    assert spec.detection.outputs == ("boxes", "scores")
    path = spec.save(tmp_path / "spec.json")
    data = json.loads(path.read_text())
    assert data["detection"]["candidates"] == 100
    assert ModelSpec.load(path) == spec
    custom = ModelSpec.from_dict({**data, "detection": {**data["detection"], "candidates": 50}})
    assert custom.detection.candidates == 50


def test_unknown_task_lists_the_valid_ones(spec):
    with pytest.raises(SpecError) as info:
        ModelSpec.from_dict({**spec.to_dict(), "task": "pose"})
    assert "classification" in info.value.fix and "detection" in info.value.fix


def test_a_classifier_cannot_carry_a_detection_section(spec):
    with pytest.raises(SpecError, match="detection"):
        ModelSpec.from_dict({**spec.to_dict(), "detection": {"candidates": 10}})


def test_a_detector_needs_one_label_a_classifier_two():
    ModelSpec(labels=("stop",), task="detection")
    with pytest.raises(SpecError, match="at least 2"):
        ModelSpec(labels=("stop",))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("candidates", 0),
        ("candidates", 2.5),
        ("score_threshold", 1.5),
        ("iou_threshold", -0.1),
        ("max_detections", True),
        ("box_format", "cxcywh"),
        ("outputs", ["dets", "scores"]),
        ("bogus", 1),
    ],
)
def test_detection_section_is_checked_by_name(field, value):
    data = ModelSpec(labels=("stop",), task="detection").to_dict()
    data["detection"][field] = value
    with pytest.raises(SpecError) as info:
        ModelSpec.from_dict(data)
    assert field in str(info.value)


def test_detection_section_must_be_an_object():
    data = ModelSpec(labels=("stop",), task="detection").to_dict()
    data["detection"] = [1, 2]
    with pytest.raises(SpecError, match="JSON object"):
        ModelSpec.from_dict(data)


def test_a_segmentation_spec_round_trips_and_checks_its_section():
    spec = ModelSpec(
        labels=("background", "road"), task="segmentation", segmentation={"drivable": "road"}
    )
    assert spec.segmentation.output == "logits" and spec.segmentation.outputs == ("logits",)
    again = ModelSpec.from_dict(spec.to_dict())
    assert again == spec and "detection" not in spec.to_dict()
    classmap = ModelSpec(
        labels=("a", "b"), task="segmentation", segmentation={"output": "classmap"}
    )
    assert classmap.segmentation.outputs == ("classes",)
    with pytest.raises(SpecError, match="drivable 'lane' is not one of the labels"):
        ModelSpec(labels=("a", "b"), task="segmentation", segmentation={"drivable": "lane"})
    with pytest.raises(SpecError, match="segmentation.output 'mask' is not valid"):
        ModelSpec(labels=("a", "b"), task="segmentation", segmentation={"output": "mask"})
    with pytest.raises(SpecError, match="unknown field"):
        ModelSpec(labels=("a", "b"), task="segmentation", segmentation={"colour": 1})
    with pytest.raises(SpecError, match="'segmentation' section but its task is 'detection'"):
        ModelSpec(labels=("a",), task="detection", segmentation={})
    with pytest.raises(SpecError, match="at least 2 label"):
        ModelSpec(labels=("road",), task="segmentation")
