"""Class maps follow the pixels through every resize mode, into the model input and back."""

import numpy as np
import pytest

from edgevision.errors import ConfigError, DataError
from edgevision.preprocess import resize
from edgevision.spec import ModelSpec
from edgevision.tasks.detect.geometry import box_transform
from edgevision.tasks.segment.geometry import class_map, mask_to_frame, mask_to_input

MODES = ["stretch", "letterbox", "center_crop"]


def _spec(mode: str, size=(192, 256), **kw) -> ModelSpec:
    return ModelSpec(
        labels=("bg", "a", "b"), task="segmentation", input_size=size, resize=mode, **kw
    )


def _rect_frame(w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """A white rectangle on a black frame, and its class-2 mask."""
    x0, y0, x1, y1 = round(w * 0.2), round(h * 0.2), round(w * 0.75), round(h * 0.8)
    img = np.zeros((h, w, 3), np.uint8)
    img[y0:y1, x0:x1] = 255
    mask = np.zeros((h, w), np.uint8)
    mask[y0:y1, x0:x1] = 2
    return img, mask


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _extent(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask == 2)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("frame_w", "frame_h"), [(320, 240), (240, 320), (500, 200), (97, 61)])
def test_a_stride_8_map_of_the_image_lands_back_on_the_rectangle(mode, frame_w, frame_h):
    spec = _spec(mode, (384, 512))
    img, truth = _rect_frame(frame_w, frame_h)
    seen_by_model = (resize(img, spec)[:, :, 0] > 127).astype(np.uint8) * 2  # the model input
    stride8 = seen_by_model[4::8, 4::8]  # what a stride-8 decoder predicts: each cell's centre
    assert stride8.shape == (48, 64)
    back = mask_to_frame(stride8, spec, frame_w, frame_h)
    assert back.shape == (frame_h, frame_w) and back.dtype == np.uint8
    assert back.flags.c_contiguous  # OpenCV (overlay, PNG) takes it without a copy
    seen = back != 255
    if mode != "center_crop":
        assert seen.all()
    assert _iou(back[seen] == 2, truth[seen] == 2) > 0.9
    # every edge within one decoder cell (8 input pixels) of where it is on the frame
    t = box_transform(spec, frame_w, frame_h)
    cell = np.array([8 / t.sx, 8 / t.sy] * 2)
    exact = _extent(np.where(seen, truth, 0))
    assert (np.abs(_extent(back) - exact) <= np.maximum(cell, 1.0)).all(), (_extent(back), exact)


@pytest.mark.parametrize(("frame_w", "frame_h"), [(512, 384), (128, 96), (256, 192)])
def test_stretch_at_stride_1_is_exact_where_the_sizes_divide(frame_w, frame_h):
    spec = _spec("stretch")
    img, truth = _rect_frame(frame_w, frame_h)
    if frame_w > 256:  # downscaling by 2 blends pixel pairs: keep the edges on even pixels
        truth = np.zeros_like(truth)
        truth[100:300, 200:400] = 2
        img = np.repeat(truth[:, :, None], 3, axis=2) * 127
    seen_by_model = (resize(img, spec)[:, :, 0] > 127).astype(np.uint8) * 2
    np.testing.assert_array_equal(mask_to_frame(seen_by_model, spec, frame_w, frame_h), truth)
    np.testing.assert_array_equal(mask_to_input(truth, spec), seen_by_model)


@pytest.mark.parametrize(
    ("mode", "size", "frame_w", "frame_h", "crop_ratio"),
    [
        ("stretch", (192, 256), 128, 96, 0.875),  # 2x up
        ("stretch", (192, 256), 256, 192, 0.875),  # same size
        ("letterbox", (192, 256), 64, 64, 0.875),  # 3x up, bars left and right
        ("letterbox", (192, 256), 128, 48, 0.875),  # 2x up, bars top and bottom
        ("center_crop", (160, 160), 100, 80, 1.0),  # 2x up, the sides cut away
    ],
)
def test_mask_to_input_then_mask_to_frame_is_the_identity_on_seen_pixels(
    mode, size, frame_w, frame_h, crop_ratio
):
    spec = _spec(mode, size, crop_ratio=crop_ratio)
    truth = np.random.default_rng(0).integers(0, 3, (frame_h, frame_w), dtype=np.uint8)
    inp = mask_to_input(truth, spec)
    assert inp.shape == size and inp.dtype == np.uint8
    back = mask_to_frame(inp, spec, frame_w, frame_h)
    seen = back != 255
    np.testing.assert_array_equal(back[seen], truth[seen])
    if mode == "center_crop":  # 200 px resized width, 20 cut each side = 10 frame columns
        assert (back[:, :10] == 255).all() and (back[:, -10:] == 255).all()
        assert seen[:, 10:-10].all()
    else:
        assert seen.all()


@pytest.mark.parametrize(("frame_w", "frame_h"), [(640, 480), (480, 640), (1000, 300)])
def test_center_crop_marks_exactly_the_unseen_frame_pixels(frame_w, frame_h):
    spec = _spec("center_crop", (224, 224))
    t = box_transform(spec, frame_w, frame_h)
    back = mask_to_frame(np.ones((28, 28), np.uint8), spec, frame_w, frame_h)
    inside = []
    for axis, n, s, d in ((1, frame_w, t.sx, t.dx), (0, frame_h, t.sy, t.dy)):
        centre = (np.arange(n) + 0.5) * s + d  # each frame pixel's centre in the input
        inside.append((centre >= 0) & (centre < 224))
        np.testing.assert_array_equal((back == 255).all(axis=1 - axis), ~inside[-1])
    cols, rows = inside
    assert (back[np.ix_(rows, cols)] == 1).all()
    assert 0 < rows.sum() < frame_h and 0 < cols.sum() < frame_w  # both axes are cut


def test_letterbox_bars_are_ignored_in_the_input():
    spec = _spec("letterbox")  # 200x100 → 256x128 in a 256x192 input: 32-row bars
    inp = mask_to_input(np.ones((100, 200), np.uint8), spec)
    assert (inp[:32] == 255).all() and (inp[160:] == 255).all()
    assert (inp[32:160] == 1).all()


def test_a_reduced_map_scales_by_input_over_map_size():
    spec = _spec("stretch", (64, 96))
    cols = np.tile(np.arange(12, dtype=np.uint8), (8, 1))  # map column index, an H/8 x W/8 map
    rows = np.repeat(np.arange(8, dtype=np.uint8)[:, None], 12, axis=1)
    assert (mask_to_frame(cols, spec, 96, 64)[0] == np.arange(96) // 8).all()
    assert (mask_to_frame(rows, spec, 96, 64)[:, 0] == np.arange(64) // 8).all()
    # a map at a quarter of the input on a frame twice the input: 16 frame pixels per cell
    quarter = np.tile(np.arange(24, dtype=np.uint8), (16, 1))
    assert (mask_to_frame(quarter, spec, 192, 128)[5] == np.arange(192) // 8).all()


def test_the_mapping_is_cached_but_each_result_is_its_own():
    spec = _spec("center_crop")
    a = mask_to_frame(np.zeros((24, 32), np.uint8), spec, 320, 240)
    b = mask_to_frame(np.ones((24, 32), np.uint8), spec, 320, 240)
    a[:] = 7
    assert (b[b != 255] == 1).all() and a.flags.writeable


def test_class_map_of_logits_and_of_class_ids():
    logits = np.zeros((3, 2, 4), np.float32)
    logits[1, 0] = 1.0
    logits[2, 1, 2:] = 5.0
    assert class_map(logits, "logits").tolist() == [[1, 1, 1, 1], [0, 0, 2, 2]]
    assert class_map(logits, "logits").dtype == np.uint8
    ids = np.array([[0, 2], [1, 1]], np.uint8)
    assert class_map(ids, "classmap") is ids  # no copy
    wide = class_map(ids.astype(np.int64), "classmap")
    assert wide.dtype == np.uint8 and wide.tolist() == ids.tolist()


@pytest.mark.parametrize(
    ("output", "kind", "match"),
    [
        (np.zeros((1, 3, 4, 4), np.float32), "logits", r"\[classes, h, w\]"),
        (np.zeros((4, 4), np.float32), "logits", r"\[classes, h, w\]"),
        (np.zeros((1, 4, 4), np.uint8), "classmap", r"\[H, W\]"),
        (np.zeros((4, 4), np.float32), "classmap", "integer class ids"),
        (np.full((4, 4), 300, np.int32), "classmap", "outside 0..255"),
        (np.zeros((4, 4), np.uint8), "probabilities", "not known"),
    ],
)
def test_class_map_refuses_outputs_that_do_not_fit(output, kind, match):
    with pytest.raises(ConfigError, match=match):
        class_map(output, kind)


def test_bad_maps_and_frame_sizes_are_data_errors():
    spec = _spec("stretch")
    with pytest.raises(DataError, match="2-D"):
        mask_to_frame(np.zeros((1, 24, 32), np.uint8), spec, 64, 48)
    with pytest.raises(DataError, match="2-D"):
        mask_to_input(np.zeros((48, 64, 3), np.uint8), spec)
    with pytest.raises(DataError, match="integer class ids"):
        mask_to_input(np.zeros((48, 64), np.float32), spec)
    with pytest.raises(DataError, match="outside 0..255"):
        mask_to_input(np.full((48, 64), -1, np.int16), spec)
    with pytest.raises(DataError, match="frame size"):
        mask_to_frame(np.zeros((24, 32), np.uint8), spec, 0, 48)


def test_logits_upsampled_before_the_argmax_match_training_and_keep_thin_classes():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(4, 30, 40)).astype(np.float32)
    ours = class_map(logits, "logits", (240, 320))
    up = torch.nn.functional.interpolate(
        torch.from_numpy(logits)[None], size=(240, 320), mode="bilinear", align_corners=False
    )
    assert ours.shape == (240, 320) and ours.dtype == np.uint8
    assert (ours == up[0].argmax(0).numpy()).mean() > 0.999  # float rounding at exact ties only
    # A stripe a third of a stride-8 cell wide: lost by a nearest-scaled low-resolution argmax,
    # kept (in part) by the upsampled logits, as training measures it.
    stripe = np.zeros((2, 4, 4), np.float32)
    stripe[0] = 1.0
    stripe[1, :, 1] = 1.4  # class 1 wins one column of cells by a little
    coarse = class_map(stripe, "logits")
    fine = class_map(stripe, "logits", (32, 32))
    assert coarse.sum() == 4 and 0 < int(fine.sum()) < 32 * 8  # narrower than a cell column
    assert np.array_equal(class_map(stripe, "logits", (4, 4)), coarse)  # same size: no resize
