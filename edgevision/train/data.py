"""Torch datasets and loaders over a `Split`, feeding exactly ``preprocess(image, spec)``.

Images come from an `ImageStore` (decoded once, kept in memory while small). Augmentation, when
on, edits the uint8 BGR image before `preprocess`; without it the tensor is bit-identical to
what the runtime computes from ``read_image(path)``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset

from edgevision.data.dataset import ImageStore
from edgevision.data.split import Split
from edgevision.preprocess import preprocess
from edgevision.spec import ModelSpec
from edgevision.train.augment import Augmenter
from edgevision.train.distributed import DistContext


class ImageDataset(Dataset):
    """``(tensor, label)`` pairs: ``tensor = preprocess(augment(image), spec)[0]``."""

    def __init__(
        self,
        items: list[tuple[Path, int]],
        spec: ModelSpec,
        store: ImageStore,
        augment: Augmenter | None = None,
        seed: int = 0,
    ) -> None:
        self.items = items
        self.spec = spec
        self.store = store
        self.augment = augment if augment else None
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Augmentation draws depend on the epoch (and the seed and index, nothing else)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

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
    split: Split, spec: ModelSpec, store: ImageStore, augment: Augmenter, seed: int
) -> dict[str, ImageDataset]:
    """Train (augmented), val and test datasets of a split."""
    return {
        name: ImageDataset(
            split.paths(name), spec, store, augment if name == "train" else None, seed
        )
        for name in split.items
    }
