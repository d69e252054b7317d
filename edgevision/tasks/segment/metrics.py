"""Segmentation metrics from their exact definitions, over a dataset's summed confusion matrix.

numpy only (the build and the benchmarks import it; training passes its tensors as arrays).
Pixels whose ground truth is ``ignore_index`` (255) are left out everywhere. For class ``c``,
with ``TP`` / ``FP`` / ``FN`` its pixels counted over the whole set (not averaged per image,
the Cityscapes / PASCAL VOC convention):

* IoU ``= TP / (TP + FP + FN)``; mIoU is the mean over classes that occur in the ground truth
  or the predictions (a class with an empty union is undefined: NaN, left out of the mean);
* Dice ``= 2 TP / (2 TP + FP + FN)`` (the medical convention; ``F1`` of the pixels);
* pixel accuracy ``= sum TP / labelled pixels`` (a side figure: a large background hides a
  missed small class).

``confusion[t, p]`` counts pixels of true class ``t`` predicted as ``p``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgevision.errors import DataError
from edgevision.tasks.segment.spec import IGNORE_INDEX


def confusion(
    pred: np.ndarray, truth: np.ndarray, n_classes: int, ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """The ``(n_classes, n_classes)`` int64 confusion matrix of one class map against its mask.

    ``pred`` and ``truth`` are integer maps of the same shape; truth pixels equal to
    ``ignore_index`` are skipped. A predicted id outside ``0..n_classes-1`` (or a true one that
    is not ignored) is a `DataError` naming it.
    """
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    if pred.shape != truth.shape:
        raise DataError(
            f"class map shape {pred.shape} differs from the mask's {truth.shape}",
            "map the prediction onto the mask's pixels first (segment.geometry)",
        )
    keep = truth != ignore_index
    t = truth[keep].astype(np.int64, copy=False)
    p = pred[keep].astype(np.int64, copy=False)
    for name, ids in (("mask", t), ("prediction", p)):
        if ids.size and (ids.min() < 0 or ids.max() >= n_classes):
            bad = int(ids[(ids < 0) | (ids >= n_classes)][0])
            raise DataError(
                f"the {name} holds class id {bad}, outside 0..{n_classes - 1}",
                f"class ids index the {n_classes} labels; {ignore_index} marks unlabelled pixels",
            )
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )


@dataclass(frozen=True)
class SegmentationScores:
    """Per-class IoU and Dice (NaN where a class is absent from truth and prediction), mIoU,
    mean Dice and pixel accuracy, all in [0, 1]; ``support`` is each class's true pixels."""

    iou: np.ndarray
    dice: np.ndarray
    miou: float
    mean_dice: float
    pixel_accuracy: float
    support: np.ndarray

    def to_dict(self, labels: tuple[str, ...] | list[str]) -> dict:
        """JSON-ready, in percent (None for an undefined class)."""

        def pct(x: float) -> float | None:
            return None if np.isnan(x) else round(100.0 * float(x), 3)

        return {
            "miou": pct(self.miou),
            "mean_dice": pct(self.mean_dice),
            "pixel_accuracy": pct(self.pixel_accuracy),
            "per_class": {
                str(name): {
                    "iou": pct(self.iou[i]),
                    "dice": pct(self.dice[i]),
                    "pixels": int(self.support[i]),
                }
                for i, name in enumerate(labels)
            },
        }


def scores(conf: np.ndarray) -> SegmentationScores:
    """The scores of a summed confusion matrix (see the module docstring)."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    fp = conf.sum(axis=0) - tp
    fn = conf.sum(axis=1) - tp
    union = tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        dice = np.where(union > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    total = conf.sum()
    defined = ~np.isnan(iou)
    return SegmentationScores(
        iou=iou,
        dice=dice,
        miou=float(iou[defined].mean()) if defined.any() else float("nan"),
        mean_dice=float(dice[defined].mean()) if defined.any() else float("nan"),
        pixel_accuracy=float(tp.sum() / total) if total else float("nan"),
        support=conf.sum(axis=1).astype(np.int64),
    )
