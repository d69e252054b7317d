"""Torch datasets for detection: ``(preprocess(augment(image)), boxes in input pixels)``.

Box-aware augmentation uses `torchvision.transforms.v2` with `tv_tensors.BoundingBoxes` (the
boxes move with the pixels, and `SanitizeBoundingBoxes` drops the ones pushed out of view).
It runs on the uint8 image before `preprocess`, so the network always sees
``preprocess(image, spec)``; boxes then follow `box_transform` into the model input. Each
sample's draws are a function of (seed, epoch, index) alone. Horizontal flips are off unless
asked for: a mirrored sign is another sign.

Copy-paste (``--copy-paste N``, box-level "cut, paste and learn", Dwibedi et al. 2017): with
probability `COPY_PASTE_P` (1: always) a training image gets 1..N objects cut from other
training images at their own size (the box's pixels, background corners included), pasted where
they overlap no box, before the v2 pipeline, so a batch shows more objects for the same compute.
On the synthetic scenes it was what moved the look-alike speed limits most (README, #15).
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
COPY_PASTE_P = 1.0  # chance that a training image gets pasted objects (measured: README)
PASTE_TRIES = 10  # places tried per object before it is left out


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


def _overlaps_any(box: list[float], boxes: list[list[float]]) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in boxes)


def paste_objects(
    img: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    donors: Any,
    count: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``img`` with up to ``count`` objects pasted in, and the boxes and labels with theirs.

    ``donors`` is ``(len, get)``: ``get(j)`` returns image ``j``'s (BGR uint8, boxes [M, 4]
    pixels, labels [M]). Each object is one random box of a random donor, its whole-pixel
    rectangle copied at its own size to a place (``PASTE_TRIES`` tries) that overlaps no box
    already there, so no existing object is hidden. ``img`` is not modified.
    """
    size, get = donors
    out = img.copy()
    h, w = out.shape[:2]
    all_boxes = [list(map(float, b)) for b in boxes]
    all_labels = [int(v) for v in labels]
    for _ in range(count):
        src, src_boxes, src_labels = get(int(rng.integers(size)))
        if len(src_boxes) == 0:
            continue
        k = int(rng.integers(len(src_boxes)))
        sh, sw = src.shape[:2]
        x0, y0, x1, y1 = src_boxes[k]
        x0, y0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
        x1, y1 = min(sw, int(np.ceil(x1))), min(sh, int(np.ceil(y1)))
        ph, pw = y1 - y0, x1 - x0
        if ph < 2 or pw < 2 or ph >= h or pw >= w:
            continue
        for _try in range(PASTE_TRIES):
            px, py = int(rng.integers(0, w - pw + 1)), int(rng.integers(0, h - ph + 1))
            placed = [float(px), float(py), float(px + pw), float(py + ph)]
            if not _overlaps_any(placed, all_boxes):
                out[py : py + ph, px : px + pw] = src[y0:y1, x0:x1]
                all_boxes.append(placed)
                all_labels.append(int(src_labels[k]))
                break
    return (
        out,
        np.asarray(all_boxes, dtype=np.float32).reshape(-1, 4),
        np.asarray(all_labels, dtype=np.int64),
    )


class DetectionDataset(SplitDataset):
    """``(tensor, target)``: ``target = {"boxes": [M, 4] input pixels, "labels": [M]}``.

    ``copy_paste`` (set on the training set only): the most objects `paste_objects` adds to an
    image, drawn from this split's images (its own included); 0 turns it off.
    """

    items: list[tuple[Path, DetectionSample]]
    copy_paste: int = 0

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The stored image (BGR uint8) and its boxes (frame pixels) and labels."""
        path, sample = self.items[index]
        return self.store.get(path), sample.boxes_array(), sample.labels_array()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        img, boxes, labels = self.raw(index)
        if self.copy_paste:
            rng = np.random.default_rng([self.seed, self.epoch, index, 77])
            if rng.random() < COPY_PASTE_P:
                count = int(rng.integers(1, self.copy_paste + 1))
                img, boxes, labels = paste_objects(
                    img, boxes, labels, (len(self.items), self.raw), count, rng
                )
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
