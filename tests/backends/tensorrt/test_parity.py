"""engine_parity: engine outputs vs FP32 ONNX Runtime, and the build step calling it."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edgevision.backends.ort.runner import OrtRunner
from edgevision.backends.tensorrt.build import build_engine
from edgevision.backends.tensorrt.parity import calibration_images, engine_parity
from edgevision.bundle import Bundle
from edgevision.errors import DataError
from edgevision.preprocess import preprocess
from tests.backends.tensorrt.bundles import make_trt_bundle


def _frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.integers(0, 256, size=(40, 60, 3), dtype=np.uint8) for _ in range(n)]


def _reference(bundle: Bundle, frames: list[np.ndarray]) -> np.ndarray:
    with OrtRunner(bundle.path("model.fp32.onnx"), threads=1) as ort:
        return np.concatenate([ort.infer(preprocess(f, bundle.spec))["logits"] for f in frames])


def test_same_model_agrees_fully(trt, trt_bundle):
    record = build_engine(trt_bundle, parity_images=[])
    assert record.parity is None
    report = engine_parity(Bundle.open(trt_bundle), record, _frames(5))
    assert report["images"] == 5 and report["top1_agreement"] == 1.0
    assert report["max_abs_error"] < 1e-5 and report["reference"] == "fp32 onnxruntime"


def test_disagreement_and_error_are_measured(trt, trt_bundle, gpu):
    record = build_engine(trt_bundle, parity_images=[])
    fixed = np.array([[0.0, 0.0, 5.0]], np.float32)  # the "engine" always answers class 2
    gpu.kernel = lambda inputs: {"logits": np.repeat(fixed, len(inputs["input"]), axis=0)}
    frames = _frames(6)
    bundle = Bundle.open(trt_bundle)
    ref = _reference(bundle, frames)
    report = engine_parity(bundle, record, frames)
    assert report["top1_agreement"] == pytest.approx(np.mean(ref.argmax(1) == 2))
    assert report["max_abs_error"] == pytest.approx(np.abs(ref - fixed).max(), rel=1e-6)
    assert report["mean_abs_error"] == pytest.approx(np.abs(ref - fixed).mean(), rel=1e-5)


def test_parity_needs_images(trt, trt_bundle):
    record = build_engine(trt_bundle, parity_images=[])
    with pytest.raises(DataError, match="at least one image"):
        engine_parity(trt_bundle, record, [])


def test_build_reports_parity_on_reachable_calibration_images(trt, tmp_path):
    images = tmp_path / "calib"
    images.mkdir()
    for i, frame in enumerate(_frames(3)):
        cv2.imwrite(str(images / f"{i}.png"), frame)
    calib = {  # the edgevision-calibration manifest written by edgevision.compile.calibration
        "format": "edgevision-calibration",
        "root": str(images),
        "files": [{"path": f"{i}.png", "sha256": "0" * 64} for i in (0, 1, 2)]
        + [{"path": "gone.png", "sha256": "0" * 64}],
    }
    root = make_trt_bundle(tmp_path, extra={"calibration.json": json.dumps(calib).encode()})
    assert [p.name for p in calibration_images(Bundle.open(root))] == ["0.png", "1.png", "2.png"]
    record = build_engine(root)
    assert record.parity["images"] == 3 and record.parity["top1_agreement"] == 1.0
    saved = Bundle.open(root).manifest["engines"][record.file]
    assert saved["parity"] == record.parity


def test_real_qdq_model_builds_and_is_compared_with_fp32(trt, tmp_path):
    """A symmetric INT8 Q/DQ artifact goes through the parser; the fake engine runs the Q/DQ
    graph, so the parity figures are those of real INT8 arithmetic against FP32."""
    root = make_trt_bundle(tmp_path, qdq=True)
    record = build_engine(root, parity_images=_frames(8))
    parity = record.parity
    assert parity["images"] == 8 and 0.0 < parity["max_abs_error"] < 0.1
    assert parity["top1_agreement"] >= 0.75


def test_no_calibration_manifest_means_no_parity(trt, trt_bundle):
    assert calibration_images(Bundle.open(trt_bundle)) == []
    assert build_engine(trt_bundle).parity is None


def test_top_class_of_logits_and_of_a_detectors_scores():
    from edgevision.backends.tensorrt.parity import _top_class

    assert _top_class(np.array([[0.1, 0.7, 0.2]])) == 1
    scores = np.zeros((1, 4, 3))
    scores[0, 2, 0] = 0.9  # the best candidate (the third) is class 0
    scores[0, 0, 2] = 0.5
    assert _top_class(scores) == 0
