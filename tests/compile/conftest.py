"""Small data for the build tests: 32 px images, a tiny timm model's checkpoint, one bundle.

The expensive things (the RUN folder, one end-to-end build with the default exporter) are
session-scoped and shared; tests that change them make their own copies.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgevision.data.split import Split
from edgevision.spec import ModelSpec

LABELS = ("a", "b", "c")
SIZE = (32, 32)
PER_CLASS = 10
TEST_PER_CLASS = 3
BACKBONE = "test_efficientnet"  # timm's ~100k-parameter EfficientNet for tests


def write_images(folder: Path, n: int, seed: int, base: int = 0, side: int = 40) -> list[Path]:
    """``n`` PNG images around grey level ``base`` (+ noise)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        img = np.clip(base + rng.integers(0, 90, (side, side, 3)), 0, 255).astype(np.uint8)
        paths.append(folder / f"{i:03d}.png")
        cv2.imwrite(str(paths[-1]), img)
    return paths


def make_image_tree(root: Path, labels=LABELS, per_class: int = PER_CLASS) -> Path:
    """An ImageFolder ``root/<label>/NNN.png``; classes differ in brightness."""
    for i, label in enumerate(labels):
        write_images(root / label, per_class, seed=i, base=60 * i)
    return root


def make_split(data: Path, labels=LABELS) -> Split:
    items: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
    for y, label in enumerate(labels):
        for p in sorted((data / label).glob("*.png")):
            split = "test" if int(p.stem) >= PER_CLASS - TEST_PER_CLASS else "train"
            items[split].append((f"{label}/{p.name}", y))
    return Split(data, list(labels), items)


def make_run(run: Path, data: Path, seed: int = 0) -> Path:
    """A RUN folder as `edgevision train` leaves it: checkpoint_best.pt + split.json."""
    import torch

    from edgevision.train.backbones import create_model
    from edgevision.train.checkpoint import BEST, save_checkpoint

    torch.manual_seed(seed)
    spec = ModelSpec(labels=LABELS, input_size=SIZE)
    model = create_model(BACKBONE, num_classes=len(LABELS), weights=None).eval()
    save_checkpoint(run / BEST, model, spec, BACKBONE, {"epochs": 0})
    make_split(data).save(run / "split.json")
    return run


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return make_image_tree(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory, data_dir) -> Path:
    return make_run(tmp_path_factory.mktemp("run"), data_dir)


@pytest.fixture(scope="session")
def spec() -> ModelSpec:
    return ModelSpec(labels=LABELS, input_size=SIZE)


@pytest.fixture(scope="session")
def built(tmp_path_factory, run_dir):
    """One end-to-end build from the RUN folder with the default (dynamo) exporter."""
    from edgevision.compile import BuildConfig, build_bundle

    root = tmp_path_factory.mktemp("built")
    # The deployment choice is timing-dependent on a model this small (INT8 ~ FP32): it has
    # its own tests (test_deploy.py); here int8-cpu is deployed unmeasured, deterministically.
    config = BuildConfig(
        input=run_dir,
        out=root / "bundle",
        calib_size=16,
        cache_dir=root / "cache",
        threads=1,
        deploy_by_latency=False,
    )
    return build_bundle(config)


@pytest.fixture(scope="session")
def fp32_onnx(built) -> Path:
    """The exported FP32 model of the session's bundle (an ONNX input for other builds)."""
    return built.out / "model.fp32.onnx"


@pytest.fixture
def bundle_copy(built, tmp_path) -> Path:
    """A private copy of the session's bundle, for tests that tamper with it."""
    return Path(shutil.copytree(built.out, tmp_path / "bundle"))


TINY_SPEC = ModelSpec(labels=("a", "b", "c"), input_size=(32, 48))


@pytest.fixture(scope="session")
def quantized(tmp_path_factory):
    """The tiny classifier, pre-processed, calibrated once and quantized for both targets."""
    from edgevision.compile.calibrate import calibrate
    from edgevision.compile.calibration import collect_calibration
    from edgevision.compile.pipeline import normalize_onnx
    from edgevision.compile.quantize import TARGETS, prepare_for_quantization, quantize_for_target
    from tests.helpers import tiny_classifier_onnx

    root = tmp_path_factory.mktemp("q")
    fp32 = normalize_onnx(tiny_classifier_onnx(root / "raw.onnx"), root / "m.onnx")
    prep = prepare_for_quantization(fp32, root / "prep.onnx")
    write_images(root / "calib", 16, seed=3)
    calib = collect_calibration(root / "calib", TINY_SPEC)
    ranges = calibrate(prep, calib, TINY_SPEC, cache_dir=root / "cache", threads=1)
    out = {t: quantize_for_target(prep, ranges, t, root / f"{t}.onnx") for t in TARGETS.names()}
    return {"fp32": fp32, "prep": prep, "ranges": ranges, "calib": calib, **out}
