"""Detection's build hooks: ``boxes`` + ``scores`` out, mAP verification, a float head.

* The exported graph is `DetectorExport`: the top-K candidates (``spec.detection.candidates``),
  decoded in the graph; a user's ONNX must follow the same contract
  (`edgevision.tasks.detect.onnx_contract`).
* The export check compares PyTorch with ONNX Runtime on preprocessed images: the max abs
  difference of boxes (pixels) and scores at the candidates whose rank is unambiguous (a
  top-K over near-equal scores may order two candidates either way, which is not an export
  error), and the mAP of each against PyTorch's own detections at the spec's threshold:
  ONNX must be within 0.1 point of PyTorch.
* Verification is COCO mAP@[.5:.95] (`edgevision.tasks.detect.evaluate`); ``--max-drop`` is in
  its points.
* By default every INT8 artifact keeps what follows the head's final box/score layers (decode,
  sigmoid, top-K) in float: where published detector PTQ losses concentrate. The final layers
  themselves are INT8 and the float tail reads their dequantized output (`FLOAT_HEAD_WHY`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgevision.errors import BuildError
from edgevision.tasks.building import BuildHooks
from edgevision.tasks.detect.spec import BOXES, SCORES

log = logging.getLogger("edgevision.compile.detect")

MAP_TOLERANCE = 0.1  # mAP points ONNX may differ from PyTorch in the export check
RANK_GAP = 1e-4  # candidates closer than this in score to a neighbour are not compared
FLOAT_HEAD_WHY = {
    "head": "the head's final box-regression and score layers and everything after them "
    "(decode, sigmoid, top-K) stay in float (--float-head head): that is where published "
    "detector PTQ losses concentrate (Ultralytics keeps its Detect head's output convs, DFL "
    "and sigmoid in FP16); --float-head tail, the default, keeps only what follows them",
    "tail": "what follows the head's final box-regression and score layers (decode, sigmoid, "
    "top-K) stays in float: that is where published detector PTQ losses concentrate "
    "(Ultralytics keeps its Detect head's DFL and sigmoid in FP16), and on the demo detector "
    "quantizing it cost 2.5 / 5.9 mAP points (cpu / tensorrt); the final layers themselves "
    "are INT8 and the float tail reads their dequantized output, as accurate as keeping "
    "them float too (--float-head head) and about 1.3x faster on the CPU; --float-head none "
    "quantizes everything",
}


@dataclass(frozen=True)
class DetectionExportCheck:
    """PyTorch vs ONNX Runtime on the same preprocessed images (a detector)."""

    images: int
    compared: int  # candidates whose rank is unambiguous, over all images
    boxes_max_abs_diff: float  # pixels
    scores_max_abs_diff: float
    map_torch: float  # points, against PyTorch's detections at the spec's threshold
    map_onnx: float
    reference_boxes: int  # PyTorch's detections those mAPs are measured against
    atol: float
    box_atol: float

    @property
    def max_abs_diff(self) -> float:
        return max(self.boxes_max_abs_diff, self.scores_max_abs_diff)

    @property
    def ok(self) -> bool:
        return (
            self.boxes_max_abs_diff <= self.box_atol
            and self.scores_max_abs_diff <= self.atol
            and self.map_torch - self.map_onnx <= MAP_TOLERANCE
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"max_abs_diff": self.max_abs_diff, "map_tolerance": MAP_TOLERANCE}


def _unambiguous(max_scores: np.ndarray) -> np.ndarray:
    """Positions of a descending top-K whose score is clear of both neighbours (not the last)."""
    k = max_scores.shape[-1]
    gap = np.abs(np.diff(max_scores, axis=-1)) > RANK_GAP  # [N, K-1]
    clear = np.ones(max_scores.shape, dtype=bool)
    clear[..., 1:] &= gap
    clear[..., :-1] &= gap
    clear[..., k - 1] = False  # the K-th may be swapped with the (K+1)-th, which is not output
    return clear


def _detections(boxes: np.ndarray, scores: np.ndarray, spec: Any, threshold: float) -> Any:
    """One image's candidates → class-aware NMS'd detections in model-input pixels."""
    from edgevision.tasks.detect.metrics import Detections
    from edgevision.tasks.detect.postprocess import batched_nms

    cand, label = np.nonzero(scores > threshold)
    b, s = boxes[cand], scores[cand, label]
    options = spec.detection
    keep = batched_nms(b, s, label, options.iou_threshold)[: options.max_detections]
    return Detections(b[keep], s[keep], label[keep].astype(np.int64))


def fidelity_map(
    reference: tuple[np.ndarray, np.ndarray], got: tuple[np.ndarray, np.ndarray], spec: Any
) -> tuple[float, float, int]:
    """mAP points of ``reference``'s and ``got``'s detections (boxes [N,K,4], scores [N,K,C])
    against ``reference``'s own at the spec's threshold, and how many boxes that truth has."""
    from edgevision.tasks.detect.evaluate import EVAL_THRESHOLD
    from edgevision.tasks.detect.metrics import Truth, coco_map

    thr = spec.detection.score_threshold
    truths, ref, out = [], [], []
    for i in range(len(reference[0])):
        pseudo = _detections(reference[0][i], reference[1][i], spec, thr)
        truths.append(Truth(pseudo.boxes, pseudo.labels))
        ref.append(_detections(reference[0][i], reference[1][i], spec, EVAL_THRESHOLD))
        out.append(_detections(got[0][i], got[1][i], spec, EVAL_THRESHOLD))
    labels = list(spec.labels)
    a = coco_map(truths, ref, labels)["map"]
    b = coco_map(truths, out, labels)["map"]
    return 100 * a, 100 * b, sum(len(t) for t in truths)


def check_detection_export(
    model: Any,
    onnx_path: str | os.PathLike[str],
    images: np.ndarray,
    spec: Any,
    atol: float = 1e-3,
    threads: int = 0,
    batch_size: int = 16,
    track: Any = None,
    **_: Any,
) -> DetectionExportCheck:
    """Run ``images`` through the PyTorch detector's deployed graph and the ONNX; compare.

    Raises `BuildError` with every number when boxes (tolerance ``atol`` × the input's longer
    side, in pixels), scores (``atol``) or the mAP (0.1 point) differ more.
    """
    import torch

    from edgevision.backends.ort import OrtRunner
    from edgevision.compile.progress import silent
    from edgevision.tasks.detect.model import DetectorExport

    if len(images) == 0:
        raise BuildError("check_export got no images", "give at least one preprocessed image")
    graph = model if isinstance(model, DetectorExport) else DetectorExport(model, _k(spec))
    graph.eval()
    ref_b, ref_s, got_b, got_s = [], [], [], []
    batches = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    with OrtRunner(onnx_path, threads=threads) as runner, torch.no_grad():
        for batch in (track or silent)(batches, len(batches), "check export"):
            boxes, scores = graph(torch.from_numpy(np.ascontiguousarray(batch)))
            ref_b.append(boxes.numpy())
            ref_s.append(scores.numpy())
            out = runner.infer(batch)
            got_b.append(out[BOXES])
            got_s.append(out[SCORES])
    rb, rs, gb, gs = (np.concatenate(x) for x in (ref_b, ref_s, got_b, got_s))
    clear = _unambiguous(rs.max(-1))
    box_diff = float(np.abs(rb - gb)[clear].max()) if clear.any() else 0.0
    score_diff = float(np.abs(rs - gs)[clear].max()) if clear.any() else 0.0
    map_torch, map_onnx, n_ref = fidelity_map((rb, rs), (gb, gs), spec)
    result = DetectionExportCheck(
        images=len(images),
        compared=int(clear.sum()),
        boxes_max_abs_diff=box_diff,
        scores_max_abs_diff=score_diff,
        map_torch=map_torch,
        map_onnx=map_onnx,
        reference_boxes=n_ref,
        atol=atol,
        box_atol=atol * max(spec.input_size),
    )
    log.info("export check: %s", describe(result.to_dict()))
    if not result.ok:
        raise BuildError(
            f"the ONNX export disagrees with PyTorch: {describe(result.to_dict())} (tolerances: "
            f"boxes {result.box_atol:.3g} px, scores {atol:g}, mAP {MAP_TOLERANCE} point)",
            "try the other exporter (--exporter), or check the model for train-mode layers",
        )
    return result


def describe(check: dict[str, Any]) -> str:
    """The export check in one line."""
    return (
        f"max abs diff boxes {check['boxes_max_abs_diff']:.3g} px, scores "
        f"{check['scores_max_abs_diff']:.3g} over {check['compared']} candidates of "
        f"{check['images']} images; mAP against PyTorch's {check['reference_boxes']} "
        f"detections: PyTorch {check['map_torch']:.2f}, ONNX {check['map_onnx']:.2f}"
    )


def _k(spec: Any) -> int:
    return int(spec.detection.candidates)


class DetectionBuild(BuildHooks):
    """Hooks for ``task == "detection"``."""

    task = "detection"
    plot_file = "ap_per_class.png"  # = edgevision.tasks.detect.evaluate.PLOT
    # Agreement is the F1 of INT8's detections against FP32's at the score threshold: a box
    # whose score sits near the threshold flips either way with any change of its score (the
    # demo detector's INT8: 95.7-96.6 % with mAP unchanged), so 99 % would fail every build.
    float_head = "tail"  # what follows the head's final layers stays float (FLOAT_HEAD_WHY)
    float_head_why = FLOAT_HEAD_WHY
    min_agreement = 90.0
    contract = "edgevision.tasks.detect.onnx_contract:check_detector_onnx"
    split_class = "edgevision.data.detection:DetectionSplit"
    eval_sets = "edgevision.tasks.detect.evaluate"
    evaluator = "edgevision.tasks.detect.evaluate:evaluate_detection"

    def output_names(self, spec: Any) -> tuple[str, ...]:
        return tuple(spec.detection.outputs)

    def export_module(self, model: Any, spec: Any) -> Any:
        from edgevision.tasks.detect.model import DetectorExport

        return model if isinstance(model, DetectorExport) else DetectorExport(model, _k(spec))

    def check_export(
        self, model: Any, onnx_path: Path, images: Any, spec: Any, **options: Any
    ) -> Any:
        return check_detection_export(model, onnx_path, images, spec, **options)

    def plot(self, evaluation: Any, out: Path) -> Path:
        from edgevision.tasks.detect.evaluate import plot_ap_per_class

        return plot_ap_per_class(evaluation, out)

    def markdown(self, evaluation: Any) -> str | None:
        return evaluation.markdown()

    def describe_check(self, check: dict[str, Any]) -> str:
        return describe(check)


BUILD = DetectionBuild()

__all__ = ["BUILD", "DetectionBuild", "DetectionExportCheck", "check_detection_export"]
