"""Torch datasets for segmentation: ``(preprocess(augment(image)), mask in input pixels)``.

Mask-aware augmentation uses `torchvision.transforms.v2` with `tv_tensors.Mask`: geometric
transforms (scale jitter with a shift and a slight rotation, a horizontal flip when asked for)
move the image and its mask together, the mask by nearest neighbour and with 255 (ignore)
where the image is filled; photometric ones (colour jitter, blur) touch the image only. It
runs on the uint8 image before `preprocess`, so the network always sees
``preprocess(image, spec)``; the mask then follows the image into the model input exactly as
`edgevision.preprocess.resize` moves it (`edgevision.tasks.segment.geometry.mask_to_input`:
nearest neighbour at pixel centres, letterbox bars 255). Each sample's draws are a function
of (seed, epoch, index) alone. Horizontal flips are off unless asked for (``--hflip``): road
scenes are left/right asymmetric (the side of the road the traffic keeps to).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgevision.data.dataset import ImageStore
from edgevision.data.segmentation import SegmentationSample, read_mask
from edgevision.preprocess import preprocess
from edgevision.spec import ModelSpec
from edgevision.tasks.segment.geometry import mask_to_input
from edgevision.tasks.segment.spec import IGNORE_INDEX
from edgevision.train.data import SplitDataset

MASK_CACHE_BYTES = 512 << 20  # decoded masks kept in memory (a mask is 1 byte per pixel)
STRENGTH = {"none": 0.0, "light": 0.5, "default": 1.0, "strong": 1.5}


def make_augment(level: str, hflip: bool = False, fill: int = 114) -> Any:
    """The v2 pipeline for ``level`` (none, light, default, strong); None for none.

    Geometric: scale jitter (zoom out to ``1 - 0.3 s``, in to ``1 + 0.5 s``) with a shift of up
    to ``0.1 s`` and a rotation of up to ``2 s`` degrees (``s`` the level's strength; the image
    bilinear, filled with ``fill``; the mask nearest, filled with 255). Photometric, image
    only: colour jitter and, sometimes, a blur.
    """
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    if level == "none" and not hflip:
        return None
    s = STRENGTH[level]
    ops: list[Any] = []
    if s:
        ops += [
            v2.RandomAffine(
                degrees=2.0 * s,
                translate=(0.1 * s, 0.1 * s),
                scale=(max(0.5, 1 - 0.3 * s), 1 + 0.5 * s),
                interpolation=v2.InterpolationMode.BILINEAR,
                fill={tv_tensors.Image: fill, tv_tensors.Mask: IGNORE_INDEX},
            ),
            v2.RandomApply([v2.ColorJitter(0.3 * s, 0.3 * s, 0.3 * s)], p=0.8),
            v2.RandomApply([v2.GaussianBlur(5, sigma=(0.1, 1.2 * s))], p=0.2),
        ]
    if hflip:
        ops.append(v2.RandomHorizontalFlip())
    return v2.Compose(ops)


class _MaskStore:
    """Decode-once masks (`read_mask`), kept until ``limit_bytes`` is reached."""

    def __init__(self, limit_bytes: int = MASK_CACHE_BYTES) -> None:
        self.limit_bytes = int(limit_bytes)
        self.used_bytes = 0
        self._masks: dict[Path, np.ndarray] = {}

    def get(self, path: Path) -> np.ndarray:
        mask = self._masks.get(path)
        if mask is None:
            mask = read_mask(path)
            mask.setflags(write=False)
            if self.used_bytes + mask.nbytes <= self.limit_bytes:
                self._masks[path] = mask
                self.used_bytes += mask.nbytes
        return mask


class SegmentationDataset(SplitDataset):
    """``(tensor [3, H, W] float32, mask [H, W] uint8)``: the mask in the model input's
    pixels, 255 where unlabelled (or outside the augmented image)."""

    items: list[tuple[Path, Path, SegmentationSample]]

    def __init__(
        self,
        items: list[tuple[Path, Path, SegmentationSample]],
        spec: ModelSpec,
        store: ImageStore,
        augment: Any = None,
        seed: int = 0,
    ) -> None:
        super().__init__(items, spec, store, augment, seed)
        self.masks = _MaskStore()

    def raw(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The stored image (BGR uint8) and its mask (class ids, the image's pixels)."""
        image, mask, _ = self.items[index]
        return self.store.get(image), self.masks.get(mask)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        img, mask = self.raw(index)
        if self.augment is not None:
            img, mask = self._augment(img, mask, index)
        target = mask_to_input(mask, self.spec)
        return torch.from_numpy(preprocess(img, self.spec)[0]), torch.from_numpy(target)

    def _augment(
        self, img: np.ndarray, mask: np.ndarray, index: int
    ) -> tuple[np.ndarray, np.ndarray]:
        from torchvision import tv_tensors

        out, target = self._augment_v2(img, tv_tensors.Mask(torch.from_numpy(mask.copy())), index)
        return out, np.ascontiguousarray(target.numpy())
