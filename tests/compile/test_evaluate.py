import numpy as np
import pytest

from edgevision.compile.evaluate import (
    Evaluation,
    check_max_drop,
    eval_set_from_folder,
    eval_set_from_split,
    evaluate,
)
from edgevision.data.split import Split
from edgevision.errors import BudgetExceededError, DataError
from edgevision.spec import ModelSpec
from tests.compile.conftest import LABELS, make_image_tree, write_images
from tests.helpers import tiny_classifier_onnx


def _evaluation():
    y = np.array([0, 0, 1, 1, 2, 2, 2, 2])
    return Evaluation(
        LABELS,
        "hand-made",
        y,
        {
            "fp32": np.array([0, 0, 1, 1, 2, 2, 2, 0]),  # 7/8
            "int8-cpu": np.array([0, 1, 1, 1, 2, 2, 0, 0]),  # 5/8
        },
    )


def test_metrics():
    ev = _evaluation()
    assert ev.top1("fp32") == 87.5 and ev.top1("int8-cpu") == 62.5
    assert ev.drop("int8-cpu") == 25.0
    assert ev.agreement("int8-cpu") == 75.0  # differs on images 1 and 6
    assert ev.per_class("int8-cpu") == {"a": 50.0, "b": 100.0, "c": 50.0}
    assert ev.per_class_drop("int8-cpu") == {"a": 50.0, "b": 0.0, "c": 25.0}
    summary = ev.summary()
    assert summary["models"]["int8-cpu"]["drop_points"] == 25.0
    assert "drop_points" not in summary["models"]["fp32"]
    assert summary["class_counts"] == {"a": 2, "b": 2, "c": 4}


def test_max_drop_gate():
    ev = _evaluation()
    check_max_drop(ev, None)
    check_max_drop(ev, 25.0)
    with pytest.raises(BudgetExceededError, match=r"int8-cpu drops 25.00 points.*not written"):
        check_max_drop(ev, 0.5)


def test_evaluate_runs_all_models_and_skips_corrupt(tmp_path):
    spec = ModelSpec(labels=LABELS, input_size=(32, 48))
    data = make_image_tree(tmp_path / "eval", per_class=4)
    (data / "b" / "broken.png").write_bytes(b"")
    fp32 = tiny_classifier_onnx(tmp_path / "m.onnx")
    other = tiny_classifier_onnx(tmp_path / "o.onnx", seed=9)
    eval_set = eval_set_from_folder(data, spec)
    assert len(eval_set.items) == 13
    ev = evaluate({"fp32": fp32, "other": other}, eval_set, spec, threads=1, batch_size=5)
    assert ev.n == 12 and len(ev.skipped) == 1 and ev.skipped[0]["path"].endswith("broken.png")
    assert ev.reference == "fp32" and set(ev.predictions) == {"fp32", "other"}
    same = evaluate({"fp32": fp32, "copy": fp32}, eval_set, spec, threads=1)
    assert same.agreement("copy") == 100.0 and same.drop("copy") == 0.0


def test_eval_folder_errors(tmp_path):
    spec = ModelSpec(labels=LABELS, input_size=(32, 32))
    write_images(tmp_path / "eval" / "zebra", 2, seed=0)
    with pytest.raises(DataError, match="'zebra'.*not one of the model's labels"):
        eval_set_from_folder(tmp_path / "eval", spec)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no labelled images"):
        eval_set_from_folder(tmp_path / "empty", spec)
    with pytest.raises(DataError, match="does not exist"):
        eval_set_from_folder(tmp_path / "nope", spec)


def test_eval_set_from_split_prefers_test_then_val(data_dir):
    spec = ModelSpec(labels=LABELS, input_size=(32, 32))
    split = Split(data_dir, list(LABELS), {"train": [], "val": [("a/000.png", 0)], "test": []})
    assert eval_set_from_split(split, spec).source.startswith("val split")
    split.items["test"] = [("c/001.png", 2)]
    found = eval_set_from_split(split, spec)
    assert found.source.startswith("test split") and found.items[0][1] == 2
    assert eval_set_from_split(Split(data_dir, list(LABELS), {"train": []}), spec) is None
