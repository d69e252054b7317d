"""Backbones from timm: the input size goes to models built for one size, or fails clearly."""

import pytest
import torch

from edgevision.errors import EdgeVisionError
from edgevision.train import backbones
from edgevision.train.backbones import create_model


def test_a_vit_takes_the_training_size():
    model = create_model("vit_tiny_patch16_224", 3, weights=None, img_size=(96, 96)).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 96, 96)).shape == (2, 3)


def test_a_convnet_ignores_img_size():
    model = create_model("test_efficientnet", 3, weights=None, img_size=(40, 56)).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 40, 56)).shape == (1, 3)


def test_a_size_the_model_cannot_take_is_one_clear_error(monkeypatch):
    class FixedSize(torch.nn.Module):
        pretrained_cfg = {"input_size": (3, 224, 224)}

        def reset_classifier(self, n):
            self.n = n

        def forward(self, x):
            if x.shape[-1] != 224:
                raise RuntimeError("Input height (96) doesn't match model (224).\nmore text")
            return x

    monkeypatch.setattr(backbones, "_timm_model", lambda *a: FixedSize())
    with pytest.raises(EdgeVisionError, match=r"cannot take 96x96 input: Input height") as info:
        create_model("resnet18", 3, weights=None, img_size=(96, 96))
    assert info.value.fix == "use --size 224 (its default) or a size it supports"
    assert "\n" not in info.value.message
