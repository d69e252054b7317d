"""A segmentation bundle in the runtime: the head's mask, areas and free distance, and a run.

The head is fed hand-made outputs; the end-to-end run uses a real (torch-free) ONNX segmenter
built here: ``logits`` [N, 2, H/8, W/8] whose class 1 is where the frame is bright.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgevision.errors import ConfigError
from edgevision.runtime.segment import SegmentationFrame, SegmentationHead, runtime_head
from edgevision.spec import ModelSpec
from edgevision.tasks.segment.spec import SegmentationOptions

LABELS = ("background", "road", "car")


def _spec(output="logits", drivable=None, resize="stretch", size=(32, 48)) -> ModelSpec:
    return ModelSpec(
        labels=LABELS,
        task="segmentation",
        input_size=size,
        resize=resize,
        segmentation=SegmentationOptions(output=output, drivable=drivable),
    )


def _scene(h=32, w=48) -> np.ndarray:
    """Class ids over the model input: road in the lower half, a car on it, background above."""
    cmap = np.zeros((h, w), np.uint8)
    cmap[h // 2 :] = 1
    cmap[h // 2 : 3 * h // 4, w // 4 : w // 2] = 2
    return cmap


def _logits(cmap: np.ndarray, stride: int = 8) -> np.ndarray:
    """[1, C, h/stride, w/stride] logits whose argmax is ``cmap`` sampled at the cell centres."""
    cells = cmap[stride // 2 :: stride, stride // 2 :: stride]
    one_hot = (np.arange(len(LABELS))[:, None, None] == cells[None]).astype(np.float32)
    return (one_hot * 4.0 - 2.0)[None]


def test_head_maps_logits_onto_the_frame_with_areas_and_free_distance():
    spec = _spec(drivable="road")
    head = SegmentationHead(spec)
    cmap = _scene()
    found = head({"logits": _logits(cmap, 1)}, (96, 64), t=0.0)  # the frame is twice the input
    assert isinstance(found, SegmentationFrame)
    assert found.mask.shape == (64, 96) and found.mask.dtype == np.uint8
    np.testing.assert_array_equal(found.mask, np.kron(cmap, np.ones((2, 2), np.uint8)))
    assert list(found.areas) == list(LABELS)  # every label, in class-id order
    assert found.areas == {"background": 0.5, "road": 0.4375, "car": 0.0625}
    # the centre column (x = 48: input 24) is road for the lower 32 rows
    assert found.free_distance == pytest.approx(0.5)
    assert set(found.timings) == {"argmax", "upsample"}
    assert all(v >= 0 for v in found.timings.values())
    assert found.best == ("road", 0.4375)
    assert found.topk(5) == [("road", 0.4375), ("car", 0.0625)]
    # Stride-8 logits are upsampled to the input before the argmax: every cell's centre keeps
    # its class, the boundaries between cells follow the interpolated logits.
    coarse = head({"logits": _logits(cmap)}, (96, 64), t=0.0).mask
    cells = cmap[4::8, 4::8]
    np.testing.assert_array_equal(coarse[8::16, 8::16], cells)
    event = found.to_event()
    assert event == {"areas": found.areas, "free_distance": 0.5} == found.summary
    json.dumps(event)
    fields = found.result_fields()
    assert fields["mask"] is found.mask and fields["segmentation"] == event and fields["known"]


def test_free_distance_only_with_a_drivable_class_and_the_car_blocks_it():
    cmap = _scene()
    cmap[16:24, 20:28] = 2  # the car now sits on the centre column
    assert (
        SegmentationHead(_spec())({"logits": _logits(cmap, 1)}, (48, 32), 0.0).free_distance is None
    )
    found = SegmentationHead(_spec(drivable="road"))({"logits": _logits(cmap, 1)}, (48, 32), 0.0)
    assert found.free_distance == pytest.approx(8 / 32)  # road rows 24..31, then the car


def test_a_classmap_output_and_a_center_crop_leave_unseen_pixels_out_of_the_areas():
    spec = _spec(output="classmap", resize="center_crop", size=(32, 32))
    head = SegmentationHead(spec)
    classes = np.ones((1, 32, 32), np.uint8)
    found = head({"classes": classes}, (80, 40), 0.0)  # a wide frame: its sides are cut away
    unseen = found.mask == 255
    assert unseen[:, :5].all() and unseen[:, -5:].all() and not unseen[5:35, 25:55].any()
    assert found.areas == {"background": 0.0, "road": 1.0, "car": 0.0}  # of the seen pixels
    assert found.to_event()["free_distance"] is None


def test_only_background_is_not_known_and_a_threshold_raises_the_bar():
    spec = _spec()
    blank = SegmentationHead(spec)({"logits": _logits(np.zeros((32, 48), np.uint8))}, (48, 32))
    assert blank.best is None and blank.topk(3) == [] and not blank.result_fields()["known"]
    strict = SegmentationHead(spec, threshold=0.5)({"logits": _logits(_scene(), 1)}, (48, 32))
    assert strict.best is None and strict.topk(1) == [("road", 0.4375)]
    with pytest.raises(ConfigError, match="not an area fraction"):
        SegmentationHead(spec, threshold=1.5)


def test_head_refuses_outputs_that_do_not_fit_its_spec():
    head = SegmentationHead(_spec())
    with pytest.raises(ConfigError, match="lack 'logits'"):
        head({"boxes": np.zeros((1, 1, 4), np.float32)}, (48, 32), 0.0)
    with pytest.raises(ConfigError, match=r"expected \[batch, classes, h, w\]"):
        head({"logits": np.zeros((3, 4, 6), np.float32)}, (48, 32), 0.0)
    with pytest.raises(ConfigError, match="2 classes but the spec has 3 labels"):
        head({"logits": np.zeros((1, 2, 4, 6), np.float32)}, (48, 32), 0.0)
    with pytest.raises(ConfigError, match="lack 'classes'"):
        SegmentationHead(_spec(output="classmap"))({"logits": _logits(_scene())}, (48, 32), 0.0)
    with pytest.raises(ConfigError, match="no segmentation section"):
        SegmentationHead(ModelSpec(labels=("a",), task="detection", input_size=(8, 8)))


def test_runtime_head_is_the_registered_one_and_ignores_tracking():
    from edgevision.tasks import get_task

    task = get_task("segmentation")
    make = task.load(task.runtime)
    assert make is runtime_head
    head = make(_spec(), threshold=None, tracker=object(), tracking=True)
    assert isinstance(head, SegmentationHead) and head.stages == ("argmax", "upsample")
    assert getattr(head, "flush", None) is None  # no tracks to end


def test_runtime_modules_import_no_torch():
    code = (
        "import sys, edgevision.runtime.segment, edgevision.tasks.segment.geometry, "
        "edgevision.tasks.segment.postprocess, edgevision.tasks.segment.draw; "
        "print(sorted(m for m in ('torch', 'torchvision', 'tensorrt', 'timm', 'onnx') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


# --- end to end: a real ONNX segmenter in the pipeline --------------------------------------


def _bright_segmenter_onnx(path, height: int, width: int):
    """``input`` [N, 3, H, W] (pixels / 255) → ``logits`` [N, 2, H/8, W/8]: class 1 where an
    8 x 8 cell is more than half bright."""
    n = helper.make_node
    nodes = [
        n("ReduceMean", ["input"], ["grey"], axes=[1], keepdims=1),
        n("AveragePool", ["grey"], ["cells"], kernel_shape=[8, 8], strides=[8, 8]),
        n("Sub", ["cells", "half"], ["fg"]),
        n("Neg", ["fg"], ["bg"]),
        n("Concat", ["bg", "fg"], ["logits"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "bright_segmenter",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, height, width])],
        [
            helper.make_tensor_value_info(
                "logits", TensorProto.FLOAT, ["N", 2, height // 8, width // 8]
            )
        ],
        [numpy_helper.from_array(np.asarray(np.float32(0.5)), "half")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    import onnx

    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def seg_bundle(tmp_path):
    from edgevision.bundle import write_bundle

    size = (64, 96)
    spec = ModelSpec(
        labels=("background", "square"),
        task="segmentation",
        input_size=size,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
    )
    onnx_path = _bright_segmenter_onnx(tmp_path / "seg.onnx", *size)
    return write_bundle(
        tmp_path / "seg-bundle",
        {"model.fp32.onnx": onnx_path},
        spec,
        {"fp32": {"file": "model.fp32.onnx", "precision": "fp32", "target": "any"}},
    )


def test_a_segmentation_bundle_runs_in_the_pipeline(seg_bundle, tmp_path):
    from edgevision.runtime import Pipeline
    from tests.helpers import square_clip

    clip = square_clip(tmp_path / "square.mp4", frames=8, visible=range(2, 6), side=32)
    results = list(Pipeline(seg_bundle, clip, threads=1))
    assert len(results) == 8
    for r in results:
        assert r.mask.shape == (128, 192) and set(r.segmentation) == {"areas", "free_distance"}
        assert {"postprocess.argmax", "postprocess.upsample"} <= set(r.timings)
    shown = results[3]  # the 32 px square at x = 26..58, y = 40..72 of the 192 x 128 frame
    assert shown.label == "square" and shown.known
    ys, xs = np.nonzero(shown.mask == 1)
    assert abs(xs.min() - 26) <= 16 and abs(xs.max() + 1 - 58) <= 16
    assert abs(ys.min() - 40) <= 16 and abs(ys.max() + 1 - 72) <= 16
    assert shown.score == pytest.approx((shown.mask == 1).mean(), abs=1e-4)
    assert results[0].label == "none" and not results[0].known
    assert results[0].segmentation["areas"] == {"background": 1.0, "square": 0.0}
