"""Segmentation's build hooks: one ``logits`` / ``classes`` output, mIoU verification.

* The exported graph is `edgevision.tasks.segment.model.export_module`'s: the one output of
  ``spec.segmentation.output`` (``logits`` [N, C, h, w] or ``classes`` [N, H, W] uint8); a
  user's ONNX must follow the same contract (`edgevision.tasks.segment.onnx_contract`).
* The export check compares PyTorch with ONNX Runtime on preprocessed images: the max abs
  difference of the logits (a class map: none, its ids are compared), the percentage of equal
  class-map pixels, and the mIoU of ONNX's class maps against PyTorch's own: ONNX must be
  within 0.1 point of PyTorch (100) — a pixel whose top two logits tie may flip either way,
  which is not an export error.
* Verification is mIoU at the masks' resolution through the runtime's mapping
  (`edgevision.tasks.segment.evaluate`); ``--max-drop`` is in its points and the agreement is
  the percentage of pixels whose INT8 class equals FP32's.
* Float by default: nothing, plain INT8 (``float_head = "none"``, measured: `PLAIN_WHY`).
  ``--float-head head`` keeps the head walk (`float_head`: the final 1x1 classifier convs and
  what follows them) in float, ``--float-head tail`` only what follows the convs (Add; a class
  map's Resize, ArgMax, Cast), so a benchmark can compare them with plain INT8.
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

log = logging.getLogger("edgevision.compile.segment")

MIOU_TOLERANCE = 0.1  # mIoU points ONNX may differ from PyTorch in the export check
# Measured on a trained LR-ASPP (efficientnet_lite0, 4 classes, synthetic road scenes, 96x128,
# 48 held-out frames, minmax on 128 images): FP32 mIoU 64.80; plain INT8 cpu 64.93 / trt 65.23
# (pixel agreement 99.73 / 99.75 %); head in float 65.05 / 65.11 (99.76 / 99.79 %). The
# lowest-SQNR layers were the head's (the gated branch's Resize + high_classifier 26 dB, its
# sigmoid-gate Mul 29 dB), yet keeping either in float left the mIoU where plain INT8 had it.
PLAIN_WHY = (
    "a segmenter's output is an argmax over per-pixel logits: INT8 noise moves only pixels "
    "whose top two classes nearly tie (object boundaries), and on a trained LR-ASPP keeping "
    "its final 1x1 classifier convs in float changed mIoU by under 0.2 point (within noise), "
    "so the default is plain INT8; --max-drop's layer search keeps layers in float where a "
    "model needs it"
)
FLOAT_HEAD_WHY = {
    "head": "the head's final 1x1 classifier convs and everything after them (the Add "
    "joining LR-ASPP's branches, a class map's Resize, ArgMax and Cast) stay in float: the "
    "layers whose output is the logits themselves",
    "tail": "what follows the head's final classifier convs (Add, Resize, ArgMax, Cast) stays "
    "in float (--float-head tail); the convs read INT8 inputs and weights but, with nothing "
    "quantized after them, compute and output in float",
}


@dataclass(frozen=True)
class SegmentationExportCheck:
    """PyTorch vs ONNX Runtime on the same preprocessed images (a segmenter)."""

    images: int
    kind: str  # "logits" or "classmap"
    pixels: int  # class-map pixels compared (at the output's resolution)
    logits_max_abs_diff: float | None  # None for a class map
    pixel_agreement: float  # % of pixels with the same class
    miou_torch: float  # points, against PyTorch's class maps (100 by definition)
    miou_onnx: float
    atol: float

    @property
    def max_abs_diff(self) -> float | None:
        return self.logits_max_abs_diff

    @property
    def ok(self) -> bool:
        diff = self.logits_max_abs_diff
        return (diff is None or diff <= self.atol) and (
            self.miou_torch - self.miou_onnx <= MIOU_TOLERANCE
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "max_abs_diff": self.max_abs_diff,
            "miou_tolerance": MIOU_TOLERANCE,
        }


def describe(check: dict[str, Any]) -> str:
    """The export check in one line."""
    diff = check.get("logits_max_abs_diff")
    head = f"max abs diff logits {diff:.3g}, " if diff is not None else ""
    return (
        f"{head}{check['pixel_agreement']:.3f}% of {check['pixels']} class-map pixels equal "
        f"over {check['images']} images; mIoU against PyTorch's class maps: PyTorch "
        f"{check['miou_torch']:.2f}, ONNX {check['miou_onnx']:.2f}"
    )


def _class_maps(output: np.ndarray, kind: str) -> np.ndarray:
    """A batch's output → its class maps [N, h, w] (logits: argmax over C)."""
    if kind == "logits":
        return np.argmax(output, axis=1).astype(np.uint8)
    return np.asarray(output).astype(np.uint8, copy=False)


def check_segmentation_export(
    model: Any,
    onnx_path: str | os.PathLike[str],
    images: np.ndarray,
    spec: Any,
    atol: float = 1e-3,
    threads: int = 0,
    batch_size: int = 16,
    track: Any = None,
    **_: Any,
) -> SegmentationExportCheck:
    """Run ``images`` through the PyTorch segmenter's deployed graph and the ONNX; compare.

    Raises `BuildError` with every number when the logits differ by more than ``atol`` or the
    mIoU of ONNX's class maps against PyTorch's is more than 0.1 point below PyTorch's 100.
    """
    import torch

    from edgevision.backends.ort import OrtRunner
    from edgevision.compile.progress import silent
    from edgevision.tasks.segment.metrics import confusion, scores

    if len(images) == 0:
        raise BuildError("check_export got no images", "give at least one preprocessed image")
    options = spec.segmentation
    kind, key = options.output, options.output_name
    graph = BUILD.export_module(model, spec).eval()
    n_classes = len(spec.labels)
    conf = np.zeros((n_classes, n_classes), np.int64)
    diff: float | None = 0.0 if kind == "logits" else None
    same = pixels = 0
    batches = [images[i : i + batch_size] for i in range(0, len(images), batch_size)]
    with OrtRunner(onnx_path, threads=threads) as runner, torch.no_grad():
        for batch in (track or silent)(batches, len(batches), "check export"):
            ref = graph(torch.from_numpy(np.ascontiguousarray(batch))).numpy()
            got = runner.infer(batch)[key]
            if ref.shape != got.shape:
                raise BuildError(
                    f"the ONNX export's {key!r} is {list(got.shape)} but PyTorch's is "
                    f"{list(ref.shape)}",
                    "try the other exporter (--exporter)",
                )
            if diff is not None:
                diff = max(diff, float(np.max(np.abs(ref.astype(np.float64) - got))))
            ref_map, got_map = _class_maps(ref, kind), _class_maps(got, kind)
            same += int(np.count_nonzero(ref_map == got_map))
            pixels += ref_map.size
            conf += confusion(got_map, ref_map, n_classes, ignore_index=-1)
    own = scores(np.diag(conf.sum(axis=1)))  # PyTorch against itself: its defined classes
    got_score = scores(conf)
    result = SegmentationExportCheck(
        images=len(images),
        kind=kind,
        pixels=pixels,
        logits_max_abs_diff=diff,
        pixel_agreement=100.0 * same / pixels if pixels else 100.0,
        miou_torch=100.0 * own.miou if not np.isnan(own.miou) else 100.0,
        miou_onnx=100.0 * got_score.miou if not np.isnan(got_score.miou) else 100.0,
        atol=atol,
    )
    log.info("export check: %s", describe(result.to_dict()))
    if not result.ok:
        tol = f"logits {atol:g}, " if kind == "logits" else ""
        raise BuildError(
            f"the ONNX export disagrees with PyTorch: {describe(result.to_dict())} "
            f"(tolerances: {tol}mIoU {MIOU_TOLERANCE} point)",
            "try the other exporter (--exporter), or check the model for train-mode layers",
        )
    return result


def float_head(prep: Path, spec: Any, mode: str = "head") -> tuple[tuple[str, ...], dict]:
    """The head's nodes in the prepared model ``prep`` and their report record.

    ``mode`` ``"head"``: the final weighted layers (on LR-ASPP its two 1x1 classifier convs)
    and every node after them; ``"tail"``: only the nodes after them. The benchmark keeps
    these in float (``--float-head head``) to compare with plain INT8.
    """
    from edgevision.tasks.onnx_head import head_in_float

    return head_in_float(prep, spec.segmentation.outputs, mode, FLOAT_HEAD_WHY)


class SegmentationBuild(BuildHooks):
    """Hooks for ``task == "segmentation"``."""

    task = "segmentation"
    plot_file = "iou_per_class.png"  # = edgevision.tasks.segment.report.PLOT
    # Agreement is the % of frame pixels whose INT8 class equals FP32's: pixels whose top two
    # logits nearly tie (boundaries, upsampled from stride 8) flip with any noise, so 99 % of
    # pixels would fail good builds; 95 % still catches a class that INT8 loses.
    min_agreement = 95.0
    float_head = "none"  # plain INT8 by default (PLAIN_WHY); --float-head head/tail to compare
    float_head_why = FLOAT_HEAD_WHY
    contract = "edgevision.tasks.segment.onnx_contract:check_segmenter_onnx"
    split_class = "edgevision.data.segmentation:SegmentationSplit"
    eval_sets = "edgevision.tasks.segment.evaluate"
    evaluator = "edgevision.tasks.segment.evaluate:evaluate_segmentation"

    def output_names(self, spec: Any) -> tuple[str, ...]:
        return tuple(spec.segmentation.outputs)

    def class_axis(self, spec: Any) -> tuple[str, int] | None:
        # logits [N, C, h, w]: axis 1; a class map has no class axis
        return (spec.segmentation.output_name, 1) if spec.segmentation.output == "logits" else None

    def export_module(self, model: Any, spec: Any) -> Any:
        from edgevision.tasks.segment.model import export_module

        return export_module(model, spec)

    def check_export(
        self, model: Any, onnx_path: Path, images: Any, spec: Any, **options: Any
    ) -> Any:
        return check_segmentation_export(model, onnx_path, images, spec, **options)

    def plot(self, evaluation: Any, out: Path) -> Path:
        from edgevision.tasks.segment.report import plot_iou_per_class

        # The bundle's other figures (confusion matrix, overlays) come from `report_files`.
        return plot_iou_per_class(evaluation, Path(out))

    def report_files(self, evaluation: Any, folder: Path) -> dict[str, Path]:
        """Every report PNG (bundle name → path): the per-class IoU bars, FP32's confusion
        matrix and the example overlays."""
        from edgevision.tasks.segment.report import write_figures

        return write_figures(evaluation, folder)

    def markdown(self, evaluation: Any) -> str | None:
        from edgevision.tasks.segment.report import FIGURES

        default = f"\nThe default for a segmenter is plain INT8 (no layer in float): {PLAIN_WHY}.\n"
        return evaluation.markdown(list(FIGURES)) + default

    def describe_check(self, check: dict[str, Any]) -> str:
        return describe(check)


BUILD = SegmentationBuild()

__all__ = [
    "BUILD",
    "FLOAT_HEAD_WHY",
    "PLAIN_WHY",
    "SegmentationBuild",
    "SegmentationExportCheck",
    "check_segmentation_export",
    "float_head",
]
