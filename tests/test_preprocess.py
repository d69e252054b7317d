import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgevision.errors import DataError
from edgevision.preprocess import preprocess, preprocess_batch, resize
from edgevision.spec import ModelSpec


def test_shape_dtype_layout(spec, bgr_image):
    x = preprocess(bgr_image, spec)
    assert x.shape == (1, 3, 32, 48) and x.dtype == np.float32
    nhwc = ModelSpec(labels=spec.labels, input_size=(32, 48), layout="NHWC")
    y = preprocess(bgr_image, nhwc)
    assert y.shape == (1, 32, 48, 3)
    np.testing.assert_array_equal(x[0].transpose(1, 2, 0), y[0])


def test_channel_order_and_normalisation():
    img = np.zeros((10, 10, 3), np.uint8)
    img[..., 0] = 255  # pure blue in BGR
    rgb = ModelSpec(labels=("a", "b"), input_size=(10, 10), mean=(0, 0, 0), std=(1, 1, 1))
    bgr = ModelSpec(
        labels=("a", "b"), input_size=(10, 10), mean=(0, 0, 0), std=(1, 1, 1), channel_order="BGR"
    )
    assert preprocess(img, rgb)[0, 2].min() == 1.0 and preprocess(img, rgb)[0, 0].max() == 0.0
    assert preprocess(img, bgr)[0, 0].min() == 1.0
    norm = ModelSpec(labels=("a", "b"), input_size=(10, 10), mean=(0.5,) * 3, std=(0.5,) * 3)
    np.testing.assert_allclose(preprocess(img, norm)[0, 2], 1.0)
    np.testing.assert_allclose(preprocess(img, norm)[0, 0], -1.0)


def test_letterbox_pads_and_keeps_aspect():
    img = np.full((20, 40, 3), 200, np.uint8)
    spec = ModelSpec(labels=("a", "b"), input_size=(40, 40), resize="letterbox", pad_value=7)
    out = resize(img, spec)
    assert out.shape == (40, 40, 3)
    assert (out[:10] == 7).all() and (out[30:] == 7).all() and (out[10:30] == 200).all()


def test_center_crop_takes_the_middle():
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, 50:150] = 255
    spec = ModelSpec(labels=("a", "b"), input_size=(50, 50), resize="center_crop", crop_ratio=1.0)
    assert (resize(img, spec) == 255).all()


def test_grey_and_bgra_accepted(bgr_image, spec):
    grey = cv2.cvtColor(bgr_image, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(bgr_image, cv2.COLOR_BGR2BGRA)
    assert preprocess(grey, spec).shape == (1, 3, 32, 48)
    np.testing.assert_array_equal(preprocess(bgra, spec), preprocess(bgr_image, spec))


def test_bad_frames(spec):
    with pytest.raises(DataError, match="uint8"):
        preprocess(np.zeros((4, 4, 3), np.float32), spec)
    with pytest.raises(DataError, match="shape"):
        preprocess(np.zeros((4, 4, 2), np.uint8), spec)
    with pytest.raises(DataError, match="no frames"):
        preprocess_batch([], spec)


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(1, 300),
    w=st.integers(1, 300),
    mode=st.sampled_from(["stretch", "letterbox", "center_crop"]),
)
def test_any_frame_size_gives_the_input_shape(h, w, mode):
    spec = ModelSpec(labels=("a", "b"), input_size=(24, 40), resize=mode)
    frame = np.full((h, w, 3), 128, np.uint8)
    assert preprocess(frame, spec).shape == (1, 3, 24, 40)


def test_batch_equals_singles(spec, bgr_image):
    b = preprocess_batch([bgr_image, bgr_image[::-1]], spec)
    np.testing.assert_array_equal(b[1:], preprocess(bgr_image[::-1], spec))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_same_bits_as_the_plain_formula(layout, order):
    """The in-place arithmetic equals the textbook chain, bit for bit, and owns its memory."""
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    spec = ModelSpec(
        labels=("a", "b"),
        input_size=(24, 40),
        layout=layout,
        channel_order=order,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
    )
    img = resize(frame, spec)
    if order == "RGB":
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    mean = np.asarray(spec.mean, np.float32) * np.float32(255)
    inv_std = np.float32(1) / (np.asarray(spec.std, np.float32) * np.float32(255))
    want = (img.astype(np.float32) - mean) * inv_std
    if layout == "NCHW":
        want = want.transpose(2, 0, 1)
    got = preprocess(frame, spec)
    np.testing.assert_array_equal(got, want[None])
    assert got.dtype == np.float32 and got.flags.c_contiguous and got.flags.owndata
