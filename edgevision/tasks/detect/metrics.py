"""Detection metrics with COCO's exact definitions: mAP, per-class AP, PR curves, score matching.

`coco_map` hands the boxes to ``pycocotools``' ``COCOeval`` (the reference implementation, not a
re-derivation) and reads its ``eval`` arrays: mAP@[.5:.95], AP50/AP75, AP by object area, AR and
the 101-point precision/recall curve at IoU 0.5 per class. The numbers are read from the arrays
rather than from ``summarize()``, whose first line assumes ``maxDets`` holds 100.

Torch-free and import-light: the runtime, `build`'s verification and `profile` import this
module, so ``pycocotools`` is imported inside `coco_map` only, and this module needs NumPy alone.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgevision.errors import ConfigError, DataError, DependencyError

TRAIN_FIX = "pip install 'edgevision[train]'"


@dataclass
class Detections:
    """One image's detections: ``boxes`` (N, 4) ``[x0, y0, x1, y1]`` input pixels, ``scores``
    (N,) and ``labels`` (N,) indices into the label list."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        self.boxes = _as_boxes(self.boxes)
        self.scores = np.asarray(self.scores)
        self.labels = np.asarray(self.labels)

    def __len__(self) -> int:
        return len(self.boxes)


@dataclass
class Truth:
    """One image's ground truth: ``boxes`` (M, 4) ``[x0, y0, x1, y1]`` pixels, ``labels`` (M,)."""

    boxes: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        self.boxes = _as_boxes(self.boxes)
        self.labels = np.asarray(self.labels)

    def __len__(self) -> int:
        return len(self.boxes)


def _as_boxes(boxes: Any) -> np.ndarray:
    # An image without boxes often arrives as [] or np.zeros(0): shape (0,) means (0, 4).
    array = np.asarray(boxes)
    return array.reshape(0, 4) if array.size == 0 else array


# -- validation ----------------------------------------------------------------------------
def _check_boxes(boxes: np.ndarray, where: str) -> None:
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise DataError(
            f"{where}.boxes has shape {boxes.shape}; expected (N, 4)",
            "give one [x0, y0, x1, y1] row per box, in pixels",
        )
    if not np.issubdtype(boxes.dtype, np.number) or np.issubdtype(boxes.dtype, np.complexfloating):
        raise DataError(f"{where}.boxes has dtype {boxes.dtype}; expected numbers")
    if not np.isfinite(boxes).all():
        row = int(np.flatnonzero(~np.isfinite(boxes).all(axis=1))[0])
        raise DataError(
            f"{where}.boxes[{row}] is {boxes[row].tolist()}: not finite (NaN or inf)",
            "drop or fix boxes the model or the annotation produced as NaN/inf",
        )
    bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{where}.boxes[{row}] is {boxes[row].tolist()}: x1 < x0 or y1 < y0",
            "boxes are [x0, y0, x1, y1] corners (convert [x, y, w, h] or [cx, cy, w, h] first)",
        )


def _check_labels(labels: np.ndarray, count: int, n_labels: int | None, where: str) -> None:
    if labels.shape != (count,):
        raise DataError(
            f"{where}.labels has shape {labels.shape}; expected ({count},), one per box"
        )
    if count == 0:
        return
    if not np.issubdtype(labels.dtype, np.number) or (labels != np.round(labels)).any():
        raise DataError(f"{where}.labels must be integer label indices; got {labels.tolist()}")
    bad = (labels < 0) | (labels >= (n_labels if n_labels is not None else np.inf))
    if bad.any():
        value = labels[int(np.flatnonzero(bad)[0])].item()
        valid = f"0..{n_labels - 1} ({n_labels} labels)" if n_labels is not None else ">= 0"
        raise DataError(
            f"{where}.labels holds {value!r}, outside {valid}",
            "labels are indices into the label list; pass the same list the model was trained on",
        )


def _check_scores(scores: np.ndarray, count: int, where: str) -> None:
    if scores.shape != (count,):
        raise DataError(
            f"{where}.scores has shape {scores.shape}; expected ({count},), one per box"
        )
    if count and not np.issubdtype(scores.dtype, np.number):
        raise DataError(f"{where}.scores has dtype {scores.dtype}; expected numbers")
    if count and not np.isfinite(scores).all():
        row = int(np.flatnonzero(~np.isfinite(scores))[0])
        raise DataError(f"{where}.scores[{row}] is {scores[row]!r}: not finite")


def validate(
    truths: Sequence[Truth], preds: Sequence[Detections], n_labels: int | None = None
) -> None:
    """Raise `DataError` naming the first image and field that is not usable for evaluation.

    Labels are checked against ``0..n_labels - 1``, or only for being indices without
    ``n_labels``.
    """
    if len(truths) != len(preds):
        raise DataError(
            f"{len(truths)} ground-truth images but {len(preds)} prediction sets",
            "pass one Detections per image, in the order of the ground truth (empty if none)",
        )
    if n_labels is not None and n_labels < 1:
        raise DataError("the label list is empty", "pass the model's labels")
    for i, (truth, pred) in enumerate(zip(truths, preds, strict=True)):
        _check_boxes(truth.boxes, f"truths[{i}]")
        _check_labels(truth.labels, len(truth.boxes), n_labels, f"truths[{i}]")
        _check_boxes(pred.boxes, f"preds[{i}]")
        _check_scores(pred.scores, len(pred.boxes), f"preds[{i}]")
        _check_labels(pred.labels, len(pred.boxes), n_labels, f"preds[{i}]")


# -- IoU and greedy matching ----------------------------------------------------------------
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU (N, M) of ``[x0, y0, x1, y1]`` boxes ``a`` (N, 4) and ``b`` (M, 4).

    Areas are ``(x1 - x0) * (y1 - y0)``, as in COCO (no +1); a pair of empty boxes has IoU 0.
    """
    a = _as_boxes(a).astype(np.float64)
    b = _as_boxes(b).astype(np.float64)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _match_image(truth: Truth, pred: Detections, iou: float) -> np.ndarray:
    """Per detection: matched to a ground-truth box (True) or not, greedily by score, per class."""
    matched = np.zeros(len(pred), dtype=bool)
    for label in np.unique(pred.labels):
        dets = np.flatnonzero(pred.labels == label)
        dets = dets[np.argsort(-pred.scores[dets], kind="mergesort")]
        gts = np.flatnonzero(truth.labels == label)
        if not len(gts):
            continue
        ious = box_iou(pred.boxes[dets], truth.boxes[gts])
        taken = np.zeros(len(gts), dtype=bool)
        for row, det in enumerate(dets):
            # COCO: the free ground-truth box of highest IoU at or above the threshold.
            candidates = np.where(taken, -1.0, ious[row])
            best = int(np.argmax(candidates))
            if candidates[best] >= iou:
                taken[best] = True
                matched[det] = True
    return matched


def match_scores(
    truths: Sequence[Truth], preds: Sequence[Detections], iou: float = 0.5
) -> dict[str, Any]:
    """Match detections to ground truth greedily per class by descending score (COCO style).

    Returns ``mean_score`` (mean score of the matched detections, None when none matched),
    ``matched`` and ``unmatched`` (detection counts), ``missed`` (ground-truth boxes left
    unmatched) and ``iou``: what an INT8 build's score compression is checked against.
    """
    if not 0.0 < iou <= 1.0:
        raise ConfigError(f"iou {iou!r} is outside (0, 1]", "use an IoU threshold such as 0.5")
    validate(truths, preds)
    scores: list[np.ndarray] = []
    unmatched = missed = 0
    for truth, pred in zip(truths, preds, strict=True):
        matched = _match_image(truth, pred, iou)
        scores.append(pred.scores[matched].astype(np.float64))
        unmatched += int((~matched).sum())
        missed += len(truth) - int(matched.sum())
    hits = np.concatenate(scores) if scores else np.zeros(0)
    return {
        "mean_score": float(hits.mean()) if hits.size else None,
        "matched": int(hits.size),
        "unmatched": unmatched,
        "missed": missed,
        "iou": float(iou),
    }


# -- COCO mAP --------------------------------------------------------------------------------
def _import_pycocotools() -> tuple[Any, Any]:
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as exc:
        raise DependencyError(
            f"COCO mAP needs pycocotools, which cannot be imported ({exc})", TRAIN_FIX
        ) from None
    return COCO, COCOeval


def _xywh(boxes: np.ndarray) -> list[list[float]]:
    boxes = boxes.astype(np.float64)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).tolist()


def _coco_gt(coco_cls: Any, truths: Sequence[Truth], labels: Sequence[str]) -> Any:
    images, annotations = [], []
    for i, truth in enumerate(truths):
        images.append({"id": i + 1})
        for box, label in zip(_xywh(truth.boxes), truth.labels.tolist(), strict=True):
            # Annotation ids start at 1: COCOeval takes id 0 for "matched nothing".
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": int(label) + 1,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(labels)]
    gt = coco_cls()
    gt.dataset = {"images": images, "annotations": annotations, "categories": categories}
    gt.createIndex()
    return gt


def _coco_dt(coco_cls: Any, gt: Any, preds: Sequence[Detections]) -> Any:
    results = [
        {"image_id": i + 1, "category_id": int(label) + 1, "bbox": box, "score": float(score)}
        for i, pred in enumerate(preds)
        for box, label, score in zip(
            _xywh(pred.boxes), pred.labels.tolist(), pred.scores.tolist(), strict=True
        )
    ]
    if results:
        return gt.loadRes(results)
    # loadRes reads results[0]: an empty result set is built by hand.
    dt = coco_cls()
    dt.dataset = {"images": list(gt.dataset["images"]), "annotations": []}
    dt.dataset["categories"] = list(gt.dataset["categories"])
    dt.createIndex()
    return dt


def _mean(values: np.ndarray) -> float | None:
    # COCO marks "no ground truth here" with -1; a mean over nothing is None (COCO's -1).
    valid = values[values > -1]
    return float(np.mean(valid)) if valid.size else None


def coco_map(
    truths: Sequence[Truth],
    preds: Sequence[Detections],
    labels: Sequence[str],
    max_dets: int = 100,
) -> dict[str, Any]:
    """COCO box metrics of ``preds`` against ``truths`` (one entry per image, same order).

    Returns a JSON-ready dict: ``map`` (AP@[.5:.95]), ``map50``, ``map75``, ``map_small``,
    ``map_medium``, ``map_large`` (None where there are no such objects), ``ar100`` (AR at
    ``max_dets``), ``per_class`` and ``per_class_ap50`` ({label: AP or None without ground
    truth}), ``images``, ``boxes`` (ground truth), ``detections``, and ``pr50``: {label:
    {"recall": 101 points, "precision": 101 values} at IoU 0.5, or None without ground truth}.
    """
    if isinstance(max_dets, bool) or not isinstance(max_dets, int) or max_dets < 1:
        raise ConfigError(f"max_dets {max_dets!r} is not a positive integer", "use e.g. 100")
    labels = list(labels)
    validate(truths, preds, len(labels))
    coco_cls, eval_cls = _import_pycocotools()
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        gt = _coco_gt(coco_cls, truths, labels)
        evaluator = eval_cls(gt, _coco_dt(coco_cls, gt, preds), "bbox")
        evaluator.params.maxDets = [1, 10, max_dets]
        evaluator.evaluate()
        evaluator.accumulate()
    return _summary(evaluator, truths, preds, labels, max_dets)


def _summary(
    evaluator: Any,
    truths: Sequence[Truth],
    preds: Sequence[Detections],
    labels: list[str],
    max_dets: int,
) -> dict[str, Any]:
    # precision: [iou T, recall R, class K, area A (all, small, medium, large), max_dets M];
    # evaluate() sorts maxDets, so max_dets is not always the last column.
    column = list(evaluator.params.maxDets).index(max_dets)
    precision = evaluator.eval["precision"][..., column]
    recall = evaluator.eval["recall"][..., column]  # [T, K, A]
    iou50 = int(np.argmin(np.abs(evaluator.params.iouThrs - 0.5)))
    iou75 = int(np.argmin(np.abs(evaluator.params.iouThrs - 0.75)))
    rec_thrs = [float(r) for r in evaluator.params.recThrs]
    per_class, per_class_ap50, pr50 = {}, {}, {}
    for k, name in enumerate(labels):
        per_class[name] = _mean(precision[:, :, k, 0])
        per_class_ap50[name] = _mean(precision[iou50, :, k, 0])
        curve = precision[iou50, :, k, 0]
        valid = bool((curve > -1).all())
        pr50[name] = {"recall": rec_thrs, "precision": curve.tolist()} if valid else None
    return {
        "map": _zero_if_none(_mean(precision[:, :, :, 0])),
        "map50": _zero_if_none(_mean(precision[iou50, :, :, 0])),
        "map75": _zero_if_none(_mean(precision[iou75, :, :, 0])),
        "map_small": _mean(precision[:, :, :, 1]),
        "map_medium": _mean(precision[:, :, :, 2]),
        "map_large": _mean(precision[:, :, :, 3]),
        "ar100": _zero_if_none(_mean(recall[:, :, 0])),
        "per_class": per_class,
        "per_class_ap50": per_class_ap50,
        "images": len(truths),
        "boxes": int(sum(len(t) for t in truths)),
        "detections": int(sum(len(p) for p in preds)),
        "pr50": pr50,
    }


def _zero_if_none(value: float | None) -> float:
    # Without any ground truth nothing can be found: the headline numbers are 0, not missing.
    return 0.0 if value is None else value


__all__ = ["Detections", "Truth", "box_iou", "coco_map", "match_scores", "validate"]
