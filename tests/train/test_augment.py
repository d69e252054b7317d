import numpy as np
import pytest

from edgevision.errors import RegistryError
from edgevision.train.augment import PRESETS, Augmenter, HorizontalFlip


@pytest.fixture
def image():
    img = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    img.setflags(write=False)  # as the ImageStore hands it out
    return img


@pytest.mark.parametrize("preset", PRESETS.names())
def test_presets_are_seeded_and_leave_the_input_alone(preset, image):
    aug = Augmenter(preset)
    a = aug(image, np.random.default_rng([1, 2, 3]))
    b = aug(image, np.random.default_rng([1, 2, 3]))
    assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
    assert np.array_equal(a, b)
    if preset != "none":
        c = aug(image, np.random.default_rng([1, 2, 4]))
        assert not np.array_equal(a, c)


def test_hflip_is_off_unless_asked(image):
    assert not any(isinstance(op, HorizontalFlip) for name in PRESETS for op in PRESETS.get(name))
    assert not any(isinstance(op, HorizontalFlip) for op in Augmenter("strong").ops)
    flips = Augmenter("none", hflip=True)
    outs = [flips(image, np.random.default_rng(i)) for i in range(20)]
    assert any(np.array_equal(o, image[:, ::-1]) for o in outs)
    assert any(np.array_equal(o, image) for o in outs)


def test_none_is_falsy_and_unknown_preset_lists_names():
    assert not Augmenter("none")
    with pytest.raises(RegistryError, match="light"):
        Augmenter("wild")
