import json

import pytest

from edgevision.errors import SpecError
from edgevision.spec import ModelSpec


def test_roundtrip(tmp_path, spec):
    path = spec.save(tmp_path / "spec.json")
    assert ModelSpec.load(path) == spec
    assert json.loads(path.read_text())["schema_version"] == 1


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
