"""Torch datasets for detection: ``(preprocess(augment(image)), boxes in input pixels)``.

Box-aware augmentation uses `torchvision.transforms.v2` with `tv_tensors.BoundingBoxes` (the
boxes move with the pixels, and `SanitizeBoundingBoxes` drops the ones pushed out of view).
It runs on the uint8 image before `preprocess`, so the network always sees
``preprocess(image, spec)``; boxes then follow `box_transform` into the model input. Each
sample's draws are a function of (seed, epoch, index) alone. Horizontal flips are off unless
asked for: a mirrored sign is another sign.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgevision.data.detection import DetectionSample
from edgevision.preprocess import preprocess
from edgevision.tasks.detect.geometry import box_transform, valid_boxes
from edgevision.train.data import SplitDataset

MIN_BOX_PX = 1.0  # boxes smaller than this in the model input are dropped


def make_augment(level: str, hflip: bool = False, fill: int = 114) -> Any:
    """The v2 pipeline for ``level`` (none, light, default, strong); None for none."""
    from torchvision.transforms import v2

    if level == "none" and not hflip:
        return None
    strength = {"none": 0.0, "light": 0.5, "default": 1.0, "strong": 1.5}[level]
    ops: list[Any] = []
    if strength:
        s = strength
        ops += [
            v2.RandomApply([v2.ColorJitter(0.3 * s, 0.3 * s, 0.3 * s)], p=0.8),
            v2.RandomApply([v2.RandomZoomOut(fill=fill, side_range=(1.0, 1.0 + 0.5 * s))], 0.3),
            v2.RandomAffine(
                degrees=2.0 * s,
                translate=(0.1 * s, 0.1 * s),
                scale=(max(0.5, 1 - 0.3 * s), 1 + 0.3 * s),
                fill=fill,
            ),
            v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 1.2 * s))], p=0.2),
        ]
    if hflip:
        ops.append(v2.RandomHorizontalFlip())
    ops.append(v2.SanitizeBoundingBoxes(min_size=2.0))
    return v2.Compose(ops)


class DetectionDataset(SplitDataset):
    """``(tensor, target)``: ``target = {"boxes": [M, 4] input pixels, "labels": [M]}``."""

    items: list[tuple[Path, DetectionSample]]

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The stored image (BGR uint8) and its boxes (frame pixels) and labels."""
        path, sample = self.items[index]
        return self.store.get(path), sample.boxes_array(), sample.labels_array()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        img, boxes, labels = self.raw(index)
        if self.augment is not None:
            img, boxes, labels = self._augment(img, boxes, labels, index)
        h, w = img.shape[:2]
        boxes = box_transform(self.spec, w, h).to_input(boxes)
        keep = valid_boxes(boxes, MIN_BOX_PX)
        target = {
            "boxes": torch.from_numpy(boxes[keep]),
            "labels": torch.from_numpy(labels[keep].astype(np.int64)),
        }
        return torch.from_numpy(preprocess(img, self.spec)[0]), target

    def _augment(self, img: np.ndarray, boxes: np.ndarray, labels: np.ndarray, index: int):
        from torchvision import tv_tensors

        h, w = img.shape[:2]
        target = {
            "boxes": tv_tensors.BoundingBoxes(
                torch.from_numpy(boxes), format="XYXY", canvas_size=(h, w)
            ),
            "labels": torch.from_numpy(labels.astype(np.int64)),
        }
        out, target = self._augment_v2(img, target, index)
        return out, target["boxes"].numpy().astype(np.float32), target["labels"].numpy()


def collate(batch: list[tuple[torch.Tensor, dict[str, torch.Tensor]]]):
    """Images stacked, targets kept as a list (a different box count per image)."""
    images = torch.stack([x for x, _ in batch])
    return images, [t for _, t in batch]
