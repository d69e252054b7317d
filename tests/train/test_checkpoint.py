import pytest
import torch

from edgevision.errors import EdgeVisionError
from edgevision.spec import ModelSpec
from edgevision.train.backbones import create_model
from edgevision.train.checkpoint import BEST, load_checkpoint, save_checkpoint


def test_default_backbone_has_imagenet_weights():
    model = create_model(num_classes=3)
    assert model.get_classifier().out_features == 3
    # The shipped weights are real: BN running stats are far from their init values (0 / 1).
    assert model.bn1.running_var.mean().item() != pytest.approx(1.0, abs=1e-3)


def test_roundtrip(tmp_path):
    spec = ModelSpec(labels=("a", "b"), input_size=(32, 32))
    model = create_model(num_classes=2, weights=None).eval()
    save_checkpoint(tmp_path / BEST, model, spec, "efficientnet_lite0", {"lr": 0.1}, epoch=3)
    ck = load_checkpoint(tmp_path)
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(ck.model(x), model(x))
    assert ck.spec == spec and ck.config == {"lr": 0.1} and ck.extra["epoch"] == 3


class Evil:
    pass


def test_rejects_pickles_and_missing(tmp_path):
    # Any non-allowlisted object would need unpickling arbitrary code.
    torch.save({"format": "edgevision-checkpoint", "obj": Evil()}, tmp_path / "e.pt")
    with pytest.raises(EdgeVisionError, match="pickled Python objects and is refused") as info:
        load_checkpoint(tmp_path / "e.pt")
    assert "\n" not in info.value.message and "weights_only=False" not in str(info.value)
    (tmp_path / "junk.pt").write_bytes(b"garbage")
    with pytest.raises(EdgeVisionError, match="not a PyTorch file, or is truncated"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(EdgeVisionError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
