import pytest
import torch

from edgevision.errors import EdgeVisionError
from edgevision.train.backbones import create_model
from edgevision.train.freeze import apply_freeze, parse_freeze, set_train_mode, stages


def trainable(model) -> set[str]:
    return {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}


@pytest.fixture(scope="module")
def lite0():
    return create_model("efficientnet_lite0", num_classes=4, weights=None)


def test_parse():
    assert parse_freeze("full").stages == -1
    assert parse_freeze("head").stages == 0
    assert parse_freeze(" LAST:3 ").stages == 3
    for bad in ("last", "last:-1", "some", "last:x"):
        with pytest.raises(EdgeVisionError, match="freeze strategy"):
            parse_freeze(bad)


def test_efficientnet_stages(lite0):
    groups = stages(lite0)
    assert len(groups) == 8  # stem + blocks.0..6 (conv_head/bn2 go with blocks.6)
    assert groups[0][0].startswith("conv_stem")
    assert any(n.startswith("conv_head") for n in groups[-1])
    assert not any(n.startswith("classifier") for g in groups for n in g)


def test_strategies_on_efficientnet(lite0):
    apply_freeze(lite0, "head")
    assert trainable(lite0) == {"classifier"}
    apply_freeze(lite0, "last:1")
    names = {n for n, p in lite0.named_parameters() if p.requires_grad}
    assert {n.split(".")[0] for n in names} == {"blocks", "conv_head", "bn2", "classifier"}
    assert {n.split(".")[1] for n in names if n.startswith("blocks.")} == {"6"}
    apply_freeze(lite0, "last:2")
    assert {
        n.split(".")[1]
        for n, p in lite0.named_parameters()
        if p.requires_grad and n.startswith("blocks.")
    } == {"5", "6"}
    t, total = apply_freeze(lite0, "full")
    assert t == total
    with pytest.raises(EdgeVisionError, match="only 8 stages"):
        apply_freeze(lite0, "last:9")


def test_generic_timm_model():
    model = create_model("test_resnet", num_classes=3, weights=None)
    apply_freeze(model, "last:1")
    assert trainable(model) == {"layer4", "fc"}


def test_frozen_batchnorm_keeps_its_statistics(lite0):
    apply_freeze(lite0, "last:1")
    set_train_mode(lite0)
    assert lite0.training and not lite0.bn1.training and not lite0.blocks[0][0].bn1.training
    assert lite0.bn2.training and lite0.blocks[6][0].bn1.training
    before = lite0.bn1.running_mean.clone()
    trained_before = lite0.bn2.running_mean.clone()
    with torch.no_grad():
        lite0(torch.randn(2, 3, 32, 32) * 3 + 1)
    assert torch.equal(lite0.bn1.running_mean, before)
    assert not torch.equal(lite0.bn2.running_mean, trained_before)
