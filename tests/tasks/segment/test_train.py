"""`edgevision train` on segmentation data: datasets and augmentation, the run folder, the
checkpoint."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgevision.data.dataset import ImageStore
from edgevision.data.images import read_image
from edgevision.data.segmentation import read_mask, scan_segmentation
from edgevision.data.synth_segment import generate_segmentation_dataset
from edgevision.errors import EdgeVisionError
from edgevision.preprocess import preprocess
from edgevision.spec import ModelSpec
from edgevision.tasks.segment.data import SegmentationDataset, make_augment
from edgevision.tasks.segment.geometry import mask_to_input
from edgevision.tasks.segment.train import TRAINER
from edgevision.train import TrainConfig, train
from edgevision.train.checkpoint import BEST, load_checkpoint

LABELS = ["background", "road", "lane_marking", "sign"]


@pytest.fixture(scope="module")
def seg_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("seg") / "data"
    path, _ = generate_segmentation_dataset(out, count=16, seed=3, size=(96, 64), progress=False)
    return path


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _spec(resize: str = "stretch", size: tuple[int, int] = (48, 64)) -> ModelSpec:
    return ModelSpec(
        labels=tuple(LABELS), task="segmentation", input_size=size, resize=resize, pad_value=114
    )


def _dataset(data: Path, augment=None, spec: ModelSpec | None = None) -> SegmentationDataset:
    split = scan_segmentation(data, (0.5, 0.25, 0.25), seed=0)
    return SegmentationDataset(split.paths("train"), spec or _spec(), ImageStore(), augment)


def _config(data: Path, out: Path, **changes) -> TrainConfig:
    base = {
        "data": str(data),
        "out": str(out),
        "backbone": "test_efficientnet",
        "weights": None,
        "size": "64x48",
        "batch_size": 4,
        "epochs": 2,
        "threads": 1,
        "quiet": True,
        "split": (0.5, 0.25, 0.25),
    }
    return TrainConfig(**{**base, **changes})


# ----------------------------------------------------------------------------- datasets


def test_unaugmented_samples_are_exactly_what_the_runtime_sees(seg_data):
    dataset = _dataset(seg_data)
    image, mask, _ = dataset.items[0]
    x, y = dataset[0]
    spec = dataset.spec
    assert torch.equal(x, torch.from_numpy(preprocess(read_image(image), spec)[0]))
    assert y.dtype == torch.uint8 and y.shape == spec.input_size
    assert np.array_equal(y.numpy(), mask_to_input(read_mask(mask), spec))


def test_letterboxed_masks_ignore_the_bars():
    spec = _spec("letterbox", (64, 64))
    mask = np.ones((32, 64), np.uint8)  # 2:1 → bars of 16 rows above and below
    out = mask_to_input(mask, spec)
    assert out.shape == (64, 64)
    assert (out[:16] == 255).all() and (out[-16:] == 255).all() and (out[16:48] == 1).all()


def test_augmentation_moves_image_and_mask_together_and_is_seeded(seg_data):
    flip = _dataset(seg_data, make_augment("none", hflip=True))
    plain = _dataset(seg_data)
    flipped = [i for i in range(len(flip)) if not torch.equal(flip[i][1], plain[i][1])]
    assert flipped  # some draws flip
    i = flipped[0]
    assert torch.equal(flip[i][1], plain[i][1].flip(-1))  # the mask follows the image
    assert torch.equal(flip[i][0], plain[i][0].flip(-1))

    aug = _dataset(seg_data, make_augment("default"))
    x0, y0 = aug[0]
    assert torch.equal(aug[0][0], x0) and torch.equal(aug[0][1], y0)  # (seed, epoch, index)
    aug.set_epoch(1)
    assert not torch.equal(aug[0][0], x0)
    ids = set(torch.cat([aug[i][1].flatten() for i in range(len(aug))]).unique().tolist())
    assert ids <= {*range(len(LABELS)), 255}  # nearest neighbour: no blended ids
    assert make_augment("none") is None


# ----------------------------------------------------------------------------- training


def test_monitors_are_the_segmentation_ones():
    TRAINER.check_monitor("val_miou")
    with pytest.raises(EdgeVisionError, match="val_miou"):
        TRAINER.check_monitor("val_map")


@pytest.mark.slow
def test_segmentation_run_folder_has_the_report(seg_data, tmp_path):
    result = train(_config(seg_data, tmp_path / "run"))
    run = result.run_dir
    config = result.config
    assert config["task"] == "segmentation"  # inferred from images/ + masks/
    assert config["monitor"] == "val_miou" and config["resize"] == "stretch"
    assert config["augment"] == "light"
    for name in (
        "metrics.json",
        "report.txt",
        "curves.png",
        "iou_per_class.png",
        "confusion_val.png",
        "confusion_test.png",
        "split.json",
        "spec.json",
        BEST,
    ):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    for split in ("val", "test"):
        m = metrics[split]
        assert 0.0 <= m["miou"] <= 100.0 and 0.0 <= m["pixel_accuracy"] <= 100.0
        assert set(m["per_class"]) == set(LABELS)
        assert np.asarray(m["confusion"]).shape == (len(LABELS), len(LABELS))
    entry = metrics["history"][0]
    assert 0.0 <= entry["val_miou"] <= 1.0
    assert entry["train_loss_ce"] > 0 and entry["train_loss_dice"] > 0
    assert "mIoU" in (run / "report.txt").read_text()
    spec = ModelSpec.load(run / "spec.json")
    assert spec.task == "segmentation" and spec.input_size == (48, 64)
    assert spec.segmentation.outputs == ("logits",) and spec.segmentation.drivable == "road"
    assert json.loads((run / "split.json").read_text())["task"] == "segmentation"

    # the checkpoint rebuilds the same segmenter
    ckpt = load_checkpoint(run)
    assert ckpt.spec.task == "segmentation"
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        assert torch.allclose(ckpt.model(x), result.model(x), atol=1e-5)
