"""The segmentation loss: per-pixel cross-entropy at the target's resolution, 255 ignored.

The stride-8 logits are upsampled bilinearly (``align_corners=False``, as the exported
``classmap`` graph does) to the target mask's size, so the loss is taken where the metric is
(every input pixel) and thin structures (a lane marking a few pixels wide) are learned at
their own width, not at the logits' coarse grid. Pixels marked `IGNORE_INDEX` count neither
in the sum nor in the mean.

A soft Dice term (``dice_weight``, `DICE_WEIGHT` by default), averaged over the classes
present in the batch's labelled pixels, weights each class equally whatever its area: it lifts
thin classes (lane markings) that cross-entropy, dominated by road and background pixels,
learns late (the measurement is at `DICE_WEIGHT`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from edgevision.tasks.segment.spec import IGNORE_INDEX

# Measured on 300 synthetic road scenes (320x240, EfficientNet-Lite0, 6 epochs, 2 CPU
# threads): with 0.5 the test mIoU is 85.2 against 83.5 for cross-entropy alone, the thin
# lane markings' IoU 60.7 against 55.5, val mIoU higher at every epoch, for ~the same time.
DICE_WEIGHT = 0.5
_EPS = 1.0  # Dice smoothing (in pixels): a class with few pixels in the batch stays defined


def upsampled(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``logits`` scaled bilinearly to ``size`` (unchanged when already that size)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


def dice_loss(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """``1 - soft Dice`` of the softmax against the one-hot target, averaged over the classes
    that occur in the labelled pixels of the batch (ignored pixels are left out)."""
    n_classes = logits.shape[1]
    keep = target != ignore_index  # [N, H, W]
    prob = logits.float().softmax(1) * keep[:, None]
    one_hot = F.one_hot(torch.where(keep, target, 0), n_classes).permute(0, 3, 1, 2)
    one_hot = one_hot.to(prob.dtype) * keep[:, None]
    dims = (0, 2, 3)
    inter = (prob * one_hot).sum(dims)
    total = prob.sum(dims) + one_hot.sum(dims)
    present = (one_hot.sum(dims) > 0).to(prob.dtype)
    dice = (2 * inter + _EPS) / (total + _EPS)
    return ((1.0 - dice) * present).sum() / present.sum().clamp(min=1.0)


def segmentation_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    dice_weight: float = DICE_WEIGHT,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The batch loss of ``logits`` [N, C, h, w] against ``target`` [N, H, W] class ids and
    its parts ``{"ce", "dice"}`` (``"ce"`` alone when ``dice_weight`` is 0), as floats.

    The cross-entropy is the mean over the batch's labelled pixels; a batch without any costs
    0 (with a gradient of zeros).
    """
    target = target.long()
    full = upsampled(logits, target.shape[-2:]).float()
    labelled = (target != ignore_index).sum().clamp(min=1)
    ce = F.cross_entropy(full, target, ignore_index=ignore_index, reduction="sum") / labelled
    parts = {"ce": float(ce.detach())}
    total = ce
    if dice_weight > 0:
        dice = dice_loss(full, target, ignore_index)
        parts["dice"] = float(dice.detach())
        total = total + dice_weight * dice
    return total, parts
