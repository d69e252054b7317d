"""The detector: shapes of the raw and exported outputs, decoding, freezing, backbones."""

import pytest
import torch

from edgevision.errors import EdgeVisionError
from edgevision.tasks.detect.model import DetectorExport, create_detector, make_points
from edgevision.train.freeze import apply_freeze

SIZE = (64, 96)


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)
    return create_detector("test_efficientnet", 3, SIZE, weights=None).eval()


def test_raw_and_exported_shapes(detector):
    points = (8 * 12) + (4 * 6) + (2 * 3)
    cls, box, quality = detector(torch.zeros(2, 3, *SIZE))
    assert cls.shape == (2, points, 3) and box.shape == (2, points, 4)
    assert quality.shape == (2, points)
    boxes, scores = DetectorExport(detector, 50)(torch.zeros(2, 3, *SIZE))
    assert boxes.shape == (2, 50, 4) and scores.shape == (2, 50, 3)
    assert float(scores.min()) >= 0 and float(scores.max()) <= 1
    h, w = SIZE
    assert float(boxes[..., 0::2].max()) <= w and float(boxes[..., 1::2].max()) <= h
    assert float(boxes.min()) >= 0
    # more candidates than points: every point is kept
    assert DetectorExport(detector, 10_000)(torch.zeros(1, 3, *SIZE))[0].shape[1] == points


def test_exported_candidates_are_the_top_scoring_points(detector):
    x = torch.randn(1, 3, *SIZE)
    cls, box, quality = detector(x)
    best = detector.scores(cls, quality).amax(-1).topk(5).values
    _, scores = DetectorExport(detector, 5)(x)
    assert torch.allclose(scores.amax(-1), best)


def test_points_are_cell_centres():
    points, strides = make_points((16, 32), (8, 16))
    assert points[0].tolist() == [4.0, 4.0] and points[1].tolist() == [12.0, 4.0]
    assert strides.tolist().count(8.0) == 8 and strides.tolist().count(16.0) == 2


def test_decode_is_distances_from_the_point(detector):
    raw = torch.zeros(1, detector.points.shape[0], 4)
    boxes = detector.decode(raw)
    side = torch.nn.functional.softplus(torch.zeros(())) * detector.strides[0]
    p = detector.points[0]
    expected = torch.stack([p[0] - side, p[1] - side, p[0] + side, p[1] + side]).clamp(min=0)
    assert torch.allclose(boxes[0, 0], expected)


def test_head_freeze_trains_neck_and_head_only():
    model = create_detector("test_efficientnet", 2, SIZE, weights=None)
    trainable, total = apply_freeze(model, "head")
    assert 0 < trainable < total
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    apply_freeze(model, "last:1")
    stages = model.freeze_stages()
    assert len(stages) >= 2 and all(n.startswith("backbone.") for n in stages[-1])
    assert any(p.requires_grad for n, p in model.named_parameters() if n in set(stages[-1]))


def test_shipped_weights_reach_the_detector_backbone():
    from edgevision.train.backbones import create_model

    full = create_model("efficientnet_lite0", 2, "default")
    det = create_detector("efficientnet_lite0", 2, (64, 64), "default")
    assert torch.equal(det.backbone.conv_stem.weight, full.conv_stem.weight)
    scratch = create_detector("efficientnet_lite0", 2, (64, 64), None)
    assert not torch.equal(scratch.backbone.conv_stem.weight, full.conv_stem.weight)


def test_a_backbone_without_the_detector_strides_is_refused():
    with pytest.raises(EdgeVisionError, match="strides|features_only"):
        create_detector("test_vit", 2, (64, 64), None)


def test_head_shares_convs_but_keeps_each_levels_norm_statistics():
    from edgevision.tasks.detect.model import Head

    torch.manual_seed(0)
    head = Head(3, channels=8, levels=3).train()
    # three levels with very different statistics, as a backbone's stride 8/16/32 maps have
    feats = [torch.randn(4, 8, 8, 8) * s + s for s in (0.5, 2.0, 8.0)]
    for _ in range(50):
        head(feats)
    spread = [norms[0].running_var.mean().item() for norms in head.cls_tower.norms]
    assert spread[0] < spread[1] < spread[2]  # one running average per level, not one for all
    assert len(head.cls_tower.convs) == len(head.box_tower.convs)  # one set of convs
    trained = [o.clone() for o in head(feats)]
    head.eval()  # inference normalises each level as training did: outputs barely move
    for before, after in zip(trained, head(feats), strict=True):
        assert torch.allclose(before, after, atol=0.1 * float(before.abs().max()) + 1e-3)


def test_a_checkpoint_from_before_the_per_level_norms_loads_exactly():
    from torch import nn

    from edgevision.tasks.detect.model import Head

    torch.manual_seed(0)
    head = Head(3, channels=8, levels=3).eval()

    def old_tower() -> nn.Sequential:  # the earlier layout: Conv+BN+ReLU shared by every level
        layers = []
        for _ in range(2):
            norm = nn.BatchNorm2d(8)
            norm.running_mean.uniform_(-1, 1)
            norm.running_var.uniform_(0.5, 2)
            norm.weight.data.uniform_(0.5, 1.5)
            layers.append(nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1, bias=False), norm, nn.ReLU()))
        return nn.Sequential(*layers).eval()

    cls_old, box_old = old_tower(), old_tower()
    state = {k: v for k, v in head.state_dict().items() if "tower" not in k}
    state.update({f"cls_tower.{k}": v for k, v in cls_old.state_dict().items()})
    state.update({f"box_tower.{k}": v for k, v in box_old.state_dict().items()})
    head.load_state_dict(state)  # strict: every old key is mapped, every new key is filled
    f = torch.randn(2, 8, 6, 6)
    for level in range(3):
        assert torch.allclose(head.cls_tower(f, level), cls_old(f), atol=1e-6)
        assert torch.allclose(head.box_tower(f, level), box_old(f), atol=1e-6)
