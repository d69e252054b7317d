"""The segmentation loss: cross-entropy at the mask's resolution plus soft Dice, 255 ignored."""

import pytest
import torch
import torch.nn.functional as F

from edgevision.tasks.segment.loss import DICE_WEIGHT, dice_loss, segmentation_loss, upsampled


def _blocks(low: torch.Tensor, stride: int = 8) -> torch.Tensor:
    """A [N, h, w] class map → [N, h*stride, w*stride], each id a stride x stride block."""
    return low.repeat_interleave(stride, 1).repeat_interleave(stride, 2)


def test_perfect_logits_cost_nothing():
    torch.manual_seed(0)
    # vertical stripes: bilinear upsampling keeps every pixel's own class far ahead (at a
    # corner of four blocks the three others could outweigh it)
    low = torch.randint(0, 4, (2, 1, 8)).expand(2, 6, 8)
    logits = 1000.0 * F.one_hot(low, 4).permute(0, 3, 1, 2).float()  # [2, 4, 6, 8]
    loss, parts = segmentation_loss(logits, _blocks(low))  # upsampled to [2, 48, 64]
    assert float(loss) < 1e-3 and set(parts) == {"ce", "dice"}
    wrong, _ = segmentation_loss(-logits, _blocks(low))
    assert float(wrong) > 100


def test_ignored_pixels_count_neither_in_the_sum_nor_in_the_mean():
    torch.manual_seed(1)
    logits = torch.randn(2, 3, 16, 16, requires_grad=True)
    target = torch.randint(0, 3, (2, 16, 16))
    target[:, :, :5] = 255
    ce, _ = segmentation_loss(logits, target, dice_weight=0.0)
    keep = target != 255
    expected = F.cross_entropy(logits.permute(0, 2, 3, 1)[keep], target[keep])
    assert torch.allclose(ce, expected)
    loss, _ = segmentation_loss(logits, target)  # with the Dice term
    loss.backward()
    assert float(logits.grad[:, :, :, :5].abs().max()) == 0.0  # same resolution: no blur
    # what the model says there changes nothing
    edited = logits.detach().clone()
    edited[:, :, :, :5] = 50 * torch.randn(2, 3, 16, 5)
    assert torch.allclose(segmentation_loss(edited, target)[0], loss.detach())


def test_logits_are_upsampled_bilinearly_to_the_mask():
    logits = torch.randn(1, 2, 4, 5)
    target = torch.randint(0, 2, (1, 32, 40))
    loss, _ = segmentation_loss(logits, target, dice_weight=0.0)
    up = F.interpolate(logits, size=(32, 40), mode="bilinear", align_corners=False)
    assert torch.allclose(loss, F.cross_entropy(up, target))
    assert upsampled(up, (32, 40)) is up


def test_an_all_ignore_batch_is_zero_with_a_gradient():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss, parts = segmentation_loss(logits, torch.full((1, 32, 32), 255))
    loss.backward()
    assert float(loss.detach()) == 0.0 and parts == {"ce": 0.0, "dice": 0.0}
    assert float(logits.grad.abs().max()) == 0.0


def test_dice_term_is_added_with_its_weight():
    assert DICE_WEIGHT == 0.5  # measured (see the loss module)
    low = torch.tensor([[[0, 1], [2, 1]]])
    perfect = 1000.0 * F.one_hot(low, 3).permute(0, 3, 1, 2).float()
    assert float(dice_loss(perfect, low)) < 1e-3
    assert float(dice_loss(-perfect, low)) > 0.5
    loss, parts = segmentation_loss(-perfect, low, dice_weight=0.5)
    assert set(parts) == {"ce", "dice"}
    assert float(loss) == pytest.approx(parts["ce"] + 0.5 * parts["dice"], rel=1e-5)
    # a class only in ignored pixels is not averaged in
    target = torch.tensor([[[0, 255], [0, 0]]])
    only_zero = 1000.0 * F.one_hot(torch.zeros_like(low), 3).permute(0, 3, 1, 2).float()
    assert float(dice_loss(only_zero, target)) < 1e-3
