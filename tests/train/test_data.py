"""The tensor a model trains on is the tensor the runtime feeds it (one pixel path)."""

import torch

from edgevision.data.dataset import DEFAULT_RATIOS, ImageStore, scan_dataset
from edgevision.data.images import read_image
from edgevision.preprocess import preprocess
from edgevision.spec import ModelSpec
from edgevision.train.augment import Augmenter
from edgevision.train.config import TrainConfig
from edgevision.train.data import make_datasets


def test_training_tensor_is_bit_identical_to_inference(tiny_data):
    store = ImageStore()
    split = scan_dataset(tiny_data, store=store)
    spec = ModelSpec(labels=split.labels, input_size=(36, 44))
    # The train split without augmentation, and val (never augmented), against the runtime path.
    plain = make_datasets(split, spec, store, Augmenter("none"), seed=0)
    augmented = make_datasets(split, spec, store, Augmenter("default"), seed=0)
    for datasets, names in ((plain, ("train", "val", "test")), (augmented, ("val", "test"))):
        for name in names:
            for i, (path, label) in enumerate(split.paths(name)):
                x, y = datasets[name][i]
                expected = torch.from_numpy(preprocess(read_image(path), spec)[0])
                assert y == label and x.dtype == torch.float32
                assert torch.equal(x, expected), (name, path)
    # Augmentation does change the training tensors, deterministically per (seed, epoch, index).
    train = augmented["train"]
    first = train[0][0]
    assert not torch.equal(first, plain["train"][0][0])
    assert torch.equal(first, train[0][0])
    train.set_epoch(1)
    assert not torch.equal(first, train[0][0])


def test_default_ratios_agree():
    assert TrainConfig(data="x").split == DEFAULT_RATIOS
