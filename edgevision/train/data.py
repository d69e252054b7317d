"""Torch datasets and loaders over a `Split`, feeding exactly ``preprocess(image, spec)``.

Images come from an `ImageStore` (decoded once, kept in memory while small). Augmentation, when
on, edits the uint8 BGR image before `preprocess`; without it the tensor is bit-identical to
what the runtime computes from ``read_image(path)``. `SplitDataset` is every task's dataset base
(items, store, seeded per-epoch augmentation; detection and segmentation run torchvision v2
pipelines through `SplitDataset._augment_v2`); `ImageDataset` is classification's.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from edgevision.data.dataset import ImageStore
from edgevision.preprocess import preprocess
from edgevision.spec import ModelSpec
from edgevision.train.augment import Augmenter
from edgevision.train.distributed import DistContext


class SplitDataset(Dataset):
    """A split's items (each task's own tuples) over an `ImageStore`, with the augmentation
    (``None``: off) the task gives; each sample's draws are a function of (seed, epoch, index)
    alone (`set_epoch`), so any number of workers or ranks draws the same."""

    def __init__(
        self,
        items: list[Any],
        spec: ModelSpec,
        store: ImageStore,
        augment: Any = None,
        seed: int = 0,
    ) -> None:
        self.items = items
        self.spec = spec
        self.store = store
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Augmentation draws depend on the epoch (and the seed and index, nothing else)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def _augment_v2(self, img: np.ndarray, target: Any, index: int) -> tuple[np.ndarray, Any]:
        """A `torchvision.transforms.v2` pipeline (``augment``) on the BGR uint8 ``img`` and the
        ``target`` (tv_tensors) that moves with it, torch's generator seeded from (seed, epoch,
        index) and restored after; returns the BGR uint8 image and the transformed target."""
        from torchvision import tv_tensors

        seed = zlib.crc32(f"{self.seed}/{self.epoch}/{index}".encode())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            image = tv_tensors.Image(torch.from_numpy(img[:, :, ::-1].copy()).permute(2, 0, 1))
            image, target = self.augment(image, target)
        return np.ascontiguousarray(image.permute(1, 2, 0).numpy()[:, :, ::-1]), target


class ImageDataset(SplitDataset):
    """``(tensor, label)`` pairs: ``tensor = preprocess(augment(image), spec)[0]``."""

    def __init__(
        self,
        items: list[tuple[Path, int]],
        spec: ModelSpec,
        store: ImageStore,
        augment: Augmenter | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(items, spec, store, augment if augment else None, seed)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.items[index]
        img = self.store.get(path)
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            img = self.augment(img, rng)
        return torch.from_numpy(preprocess(img, self.spec)[0]), label

    @property
    def targets(self) -> list[int]:
        return [y for _, y in self.items]


def train_loader(
    dataset: Dataset,
    batch_size: int,
    ctx: DistContext,
    seed: int,
    workers: int = 0,
    collate: Callable | None = None,
) -> tuple[DataLoader, DistributedSampler]:
    """A shuffled loader over this rank's shard; call ``sampler.set_epoch(e)`` every epoch."""
    # DistributedSampler also serves a single process: its order is a function of (seed, epoch).
    sampler = DistributedSampler(
        dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed
    )
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=ctx.device.type == "cuda",
        drop_last=len(dataset) // ctx.world_size > batch_size,  # no tiny last batch for BN
        persistent_workers=workers > 0,
        collate_fn=collate,
    )
    return loader, sampler


def eval_loader(
    dataset: Dataset,
    batch_size: int,
    ctx: DistContext,
    workers: int = 0,
    collate: Callable | None = None,
) -> DataLoader:
    """An in-order loader over this rank's share (no padding: every image counted once)."""
    shard = Subset(dataset, list(range(ctx.rank, len(dataset), ctx.world_size)))
    return DataLoader(
        shard,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=ctx.device.type == "cuda",
        collate_fn=collate,
    )


def make_datasets(
    split: Any,
    spec: ModelSpec,
    store: ImageStore,
    augment: Any,
    seed: int,
    dataset: Callable[..., Dataset] = ImageDataset,
) -> dict[str, Any]:
    """Train (augmented), val and test datasets of a split: ``dataset(items, spec, store,
    augment, seed)`` per split, ``augment`` on train and ``None`` on the others (``dataset``:
    classification's `ImageDataset` unless a task gives its own)."""
    return {
        name: dataset(split.paths(name), spec, store, augment if name == "train" else None, seed)
        for name in split.items
    }
