"""Build's verify step for detectors: COCO mAP of FP32 and each INT8 artifact on held-out images.

The detection counterpart of `edgevision.compile.evaluate`: `evaluate_detection` runs every ONNX
model over the same decoded, preprocessed batches and postprocesses each image on its own frame;
the result, a `DetectionEvaluation`, offers the interface the generic build steps use on the
classification `Evaluation` (``score``, ``drop``, ``agreement``, ``per_class``, ``summary``) with
mAP@[.5:.95] as the score, plus what INT8 does to a detector's confidences (`confidence`).

Torch-free: NumPy, ONNX Runtime (through `OrtRunner`) and pycocotools (through `coco_map`);
matplotlib is imported by `plot_ap_per_class` only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from edgevision.compile.evaluate import (
    REFERENCE,
    Comparison,
    batched,
    check_dataset_labels,
    decode_batches,
    format_cell,
    held_out,
    ort_runners,
    reference_of,
    scan_skipped,
)
from edgevision.compile.progress import Tracker, silent
from edgevision.data.detection import DetectionSample, is_detection_dataset, scan_detection
from edgevision.errors import BuildError, DataError
from edgevision.preprocess import preprocess_batch
from edgevision.spec import ModelSpec
from edgevision.tasks.detect.metrics import Detections, Truth, _match_image, coco_map

if TYPE_CHECKING:
    from edgevision.data.detection import DetectionSplit

log = logging.getLogger(__name__)

EVAL_THRESHOLD = 0.001  # detections kept for mAP: the whole precision/recall curve
MATCH_IOU = 0.5  # IoU of the agreement and confidence figures
PLOT = "ap_per_class.png"


@dataclass
class DetectionEvalSet:
    """Annotated images: ``items`` are (path, ground truth in the image's pixels, label indices
    into the spec's labels). ``skipped`` lists images the dataset scan could not use."""

    items: list[tuple[Path, Truth]]
    source: str
    skipped: list[dict[str, str]] = field(default_factory=list)


def eval_set_from_split(split: DetectionSplit, spec: ModelSpec) -> DetectionEvalSet | None:
    """The split's test images (else its validation images), labels mapped onto the spec's."""
    name = held_out(split, log)
    if name is None:
        return None
    index = _label_map(split.labels, spec, split.root)
    items = [(path, _truth(sample, index)) for path, sample in split.paths(name)]
    return DetectionEvalSet(items, f"{name} split of {split.root}")


def eval_set_from_folder(root: str | os.PathLike[str], spec: ModelSpec) -> DetectionEvalSet:
    """Every usable image of a COCO or YOLO detection dataset folder (all of its splits).

    The folder is read with `scan_detection`; images it cannot decode are left out and listed in
    ``skipped``. Its class names must all be labels of the spec.
    """
    root = Path(root)
    if not is_detection_dataset(root):
        raise DataError(
            f"evaluation folder {root} is not a detection dataset"
            + ("" if root.is_dir() else " (it does not exist)"),
            "give --eval a folder with images/ + annotations.json (COCO), or images/ + labels/ + "
            "data.yaml or classes.txt (YOLO), or train/ val/ test/ folders of either",
        )
    split = scan_detection(root)
    index = _label_map(split.labels, spec, root)
    samples = sorted(
        (sample for samples in split.items.values() for sample in samples), key=lambda s: s.path
    )
    if not samples:
        raise DataError(
            f"evaluation folder {root} has no usable images",
            "add annotated images to it (images without boxes count as negatives)",
        )
    items = [(split.root / s.path, _truth(s, index)) for s in samples]
    skipped = scan_skipped(split, root, log)
    return DetectionEvalSet(items, f"{split.format} dataset {root}", skipped)


def _label_map(names: Sequence[str], spec: ModelSpec, where: Path) -> np.ndarray:
    """Dataset label index → the spec's label index, by name."""
    fix = "evaluate on data annotated with the model's classes only (drop or rename the others)"
    check_dataset_labels(names, spec, where, "label(s)", fix)
    return np.asarray([spec.labels.index(name) for name in names], dtype=np.int64)


def _truth(sample: DetectionSample, index: np.ndarray) -> Truth:
    return Truth(sample.boxes_array(), index[sample.labels_array()])


@dataclass
class DetectionEvaluation(Comparison):
    """Detections of several models on the same images, compared with ``reference``.

    ``predictions`` hold, per model and image, the detections above `EVAL_THRESHOLD` in frame
    pixels after class-aware NMS (so COCO mAP sees the whole precision/recall curve, as training
    measures it); ``score_threshold`` is the spec's operating point, where `agreement` and
    `confidence` look. Those two read ``runtime_predictions`` where a model has them: the same
    candidates after the runtime's default class-agnostic NMS (one label per object, what
    ``edgevision run`` reports); NMS keeps a box only against higher-scoring ones, so cutting
    those at ``score_threshold`` gives exactly the runtime's detections there.
    """

    metric: ClassVar[str] = "mAP@[.5:.95]"
    agreement_what: ClassVar[str] = "F1 of its detections against FP32's at the score threshold"

    labels: tuple[str, ...]
    source: str
    truths: list[Truth]
    predictions: dict[str, list[Detections]]
    score_threshold: float
    skipped: list[dict[str, str]] = field(default_factory=list)
    reference: str = REFERENCE
    runtime_predictions: dict[str, list[Detections]] = field(default_factory=dict)
    _coco: dict[str, dict[str, Any]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _matched: dict[str, list[np.ndarray]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def n(self) -> int:
        return len(self.truths)

    @property
    def boxes(self) -> int:
        """Ground-truth boxes over all images."""
        return int(sum(len(t) for t in self.truths))

    # -- COCO metrics -----------------------------------------------------------------------
    def coco(self, name: str) -> dict[str, Any]:
        """`coco_map`'s result for ``name`` (fractions 0..1), computed once per model."""
        if name not in self._coco:
            self._coco[name] = coco_map(self.truths, self.predictions[name], self.labels)
        return self._coco[name]

    def score(self, name: str) -> float:
        """mAP@[.5:.95] of ``name`` in percent."""
        return 100 * self.coco(name)["map"]

    def map50(self, name: str) -> float:
        """mAP@.5 of ``name`` in percent."""
        return 100 * self.coco(name)["map50"]

    def map75(self, name: str) -> float:
        """mAP@.75 of ``name`` in percent."""
        return 100 * self.coco(name)["map75"]

    def per_class(self, name: str) -> dict[str, float | None]:
        """AP@[.5:.95] per class in percent (None for a class without ground truth)."""
        return _percent(self.coco(name)["per_class"])

    def per_class_ap50(self, name: str) -> dict[str, float | None]:
        """AP@.5 per class in percent (None for a class without ground truth)."""
        return _percent(self.coco(name)["per_class_ap50"])

    # -- the operating point ----------------------------------------------------------------
    def operating(self, name: str) -> list[Detections]:
        """``name``'s detections as the runtime's NMS keeps them (``runtime_predictions``, else
        ``predictions``), above `EVAL_THRESHOLD`."""
        return self.runtime_predictions.get(name, self.predictions[name])

    def at_threshold(self, name: str) -> list[Detections]:
        """``name``'s detections with score >= ``score_threshold``: what the runtime reports."""
        return [_keep(d, d.scores >= self.score_threshold) for d in self.operating(name)]

    def agreement(self, name: str) -> float:
        """How far ``name``'s detections agree with the reference's at the operating point, in %.

        Both models' detections with score >= ``score_threshold`` are taken; the reference's are
        treated as ground truth and ``name``'s are matched to them greedily by descending score,
        same class, IoU >= 0.5 (COCO's matching, `metrics._match_image`). The result is the F1
        over all images, ``2 * matched / (detections of name + detections of the reference)``:
        100 when both report the same objects, and 100 when neither reports anything anywhere.
        """
        matched = total = 0
        ref = self.at_threshold(self.reference)
        for mine, theirs in zip(self.at_threshold(name), ref, strict=True):
            matched += int(_match_image(Truth(theirs.boxes, theirs.labels), mine, MATCH_IOU).sum())
            total += len(mine) + len(theirs)
        return 100.0 if total == 0 else 100 * 2 * matched / total

    def _matches(self, name: str) -> list[np.ndarray]:
        """Per image, whether each of ``name``'s detections matches ground truth (IoU 0.5).

        Greedy matching by descending score means a detection's match depends only on the
        higher-scoring ones, so these flags also hold for every threshold above `EVAL_THRESHOLD`.
        """
        if name not in self._matched:
            self._matched[name] = [
                _match_image(t, d, MATCH_IOU)
                for t, d in zip(self.truths, self.operating(name), strict=True)
            ]
        return self._matched[name]

    def _pr_at(self, name: str, threshold: float) -> tuple[float | None, float | None]:
        """(precision, recall) as fractions at ``score >= threshold``; None where undefined."""
        kept = hits = 0
        for pred, flags in zip(self.operating(name), self._matches(name), strict=True):
            mask = pred.scores >= threshold
            kept += int(mask.sum())
            hits += int(flags[mask].sum())
        return (hits / kept if kept else None), (hits / self.boxes if self.boxes else None)

    def confidence(self, name: str) -> dict[str, float | None]:
        """What the model's confidences look like against ground truth (IoU 0.5).

        * ``mean_matched_score``: mean score of the detections that match a ground-truth box,
          over all kept detections (score >= `EVAL_THRESHOLD`, not the operating point, so the
          figure is not cut off by the threshold: scores compressed by x0.8 read x0.8);
        * ``precision`` / ``recall`` in percent at score >= ``score_threshold``;
        * ``threshold_for_reference_precision``: the smallest threshold ``t`` (one of the
          model's own scores) at which this model's precision at ``score >= t`` is at least the
          reference's precision at ``score_threshold``; None if no threshold gets there (or the
          reference reports nothing there). For the reference it can sit below its own
          threshold; for an INT8 build whose confidences shrank it shows how far to lower it.
        """
        matched_scores = [
            p.scores[f] for p, f in zip(self.operating(name), self._matches(name), strict=True)
        ]
        hits = np.concatenate(matched_scores) if matched_scores else np.zeros(0)
        precision, recall = self._pr_at(name, self.score_threshold)
        return {
            "mean_matched_score": float(hits.mean()) if hits.size else None,
            "precision": None if precision is None else 100 * precision,
            "recall": None if recall is None else 100 * recall,
            "threshold_for_reference_precision": self._threshold_for(name),
        }

    def _threshold_for(self, name: str) -> float | None:
        target, _ = self._pr_at(self.reference, self.score_threshold)
        preds = self.operating(name)
        if target is None or not any(len(p) for p in preds):
            return None
        scores = np.concatenate([p.scores for p in preds]).astype(np.float64)
        flags = np.concatenate(self._matches(name))
        order = np.argsort(-scores, kind="mergesort")
        scores, hits = scores[order], np.cumsum(flags[order])
        # the last detection of each run of equal scores: "score >= t" keeps the whole run
        ends = np.flatnonzero(np.r_[scores[1:] != scores[:-1], True])
        precision = hits[ends] / (ends + 1)
        ok = np.flatnonzero(precision >= target - 1e-12)
        return float(scores[ends[ok[-1]]]) if ok.size else None

    # -- reports ----------------------------------------------------------------------------
    def class_counts(self) -> dict[str, int]:
        """Ground-truth boxes per label."""
        counts = dict.fromkeys(self.labels, 0)
        for truth in self.truths:
            for y in truth.labels.tolist():
                counts[self.labels[int(y)]] += 1
        return counts

    def summary(self) -> dict[str, Any]:
        """The accuracy report (JSON-ready); mAP, AP, precision and recall in percent."""
        models = {}
        for name in self.predictions:
            entry: dict[str, Any] = {
                "map": round(self.score(name), 3),
                "map50": round(self.map50(name), 3),
                "map75": round(self.map75(name), 3),
                "per_class": _rounded(self.per_class(name)),
                "per_class_ap50": _rounded(self.per_class_ap50(name)),
            }
            entry |= {  # scores and thresholds are 0..1: more digits than the percentages
                k: None if v is None else round(v, 3 if k in ("precision", "recall") else 5)
                for k, v in self.confidence(name).items()
            }
            if name != self.reference:
                entry |= {
                    "drop_points": round(self.drop(name), 3),
                    "drop_map50": round(self.map50(self.reference) - self.map50(name), 3),
                    "agreement": round(self.agreement(name), 3),
                    "per_class_drop": _rounded(self.per_class_drop(name)),
                }
            models[name] = entry
        return {
            "metric": self.metric,
            "source": self.source,
            "images": self.n,
            "boxes": self.boxes,
            "skipped": len(self.skipped),
            "reference": self.reference,
            "score_threshold": float(self.score_threshold),
            "class_counts": self.class_counts(),
            "models": models,
        }

    def markdown(self) -> str:
        """The report.md section: mAP, drop, agreement and confidences, then AP per class."""
        t = f"{self.score_threshold:g}"
        lines = [
            f"{self.n} images ({self.boxes} boxes) of the {self.source}"
            + (f", {len(self.skipped)} unreadable skipped" if self.skipped else "")
            + f"; operating point: score >= {t}"
            + (", class-agnostic NMS as `edgevision run`" if self.runtime_predictions else "")
            + ".",
            "",
            f"| artifact | {self.metric} (%) | mAP@.5 (%) | drop (points) | agreement with "
            f"{self.reference} (%) | mean matched score | threshold keeping {self.reference} "
            "precision |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name in self.predictions:
            conf = self.confidence(name)
            own = name == self.reference
            lines.append(
                f"| {name} | {self.score(name):.2f} | {self.map50(name):.2f} | "
                f"{'—' if own else f'{self.drop(name):.2f}'} | "
                f"{'—' if own else f'{self.agreement(name):.2f}'} | "
                f"{format_cell(conf['mean_matched_score'], '.3f')} | "
                f"{format_cell(conf['threshold_for_reference_precision'], '.3f')} |"
            )
        lines += self.per_class_table("AP@[.5:.95] per class (%):", "boxes")
        lines += ["", f"![AP per class]({PLOT})"]
        return "\n".join(lines) + "\n"


def _keep(det: Detections, mask: np.ndarray) -> Detections:
    return Detections(det.boxes[mask], det.scores[mask], det.labels[mask])


def _percent(values: Mapping[str, float | None]) -> dict[str, float | None]:
    return {k: None if v is None else 100 * v for k, v in values.items()}


def _rounded(values: Mapping[str, float | None]) -> dict[str, float | None]:
    return {k: None if v is None else round(v, 3) for k, v in values.items()}


def evaluate_detection(
    models: Mapping[str, str | os.PathLike[str]],
    eval_set: DetectionEvalSet,
    spec: ModelSpec,
    threads: int = 0,
    batch_size: int = 32,
    track: Tracker = silent,
) -> DetectionEvaluation:
    """Run every ONNX detector in ``models`` (name → path) over ``eval_set`` with ONNX Runtime.

    Images are decoded and preprocessed once per batch and fed to all models; each image's
    ``boxes``/``scores`` are postprocessed (NMS, max detections) on its own frame size at
    `EVAL_THRESHOLD`, twice: class-aware for mAP (``predictions``) and class-agnostic as the
    runtime does for the operating-point figures (``runtime_predictions``). Unreadable files are
    skipped and counted. The first model (``fp32`` when present) is the reference.
    """
    from edgevision.tasks.detect.postprocess import postprocess

    names = list(models)
    reference = reference_of(models)
    boxes_key, scores_key = spec.detection.outputs
    preds: dict[str, list[Detections]] = {n: [] for n in names}
    runtime: dict[str, list[Detections]] = {n: [] for n in names}
    truths: list[Truth] = []
    skipped: list[dict[str, str]] = list(eval_set.skipped)
    batches = batched(eval_set.items, batch_size)
    with ort_runners(models, names, threads) as runners:
        for frames, batch_truths in track(
            decode_batches(batches, skipped), len(batches), "evaluate"
        ):
            x = preprocess_batch(frames, spec)
            sizes = [(f.shape[1], f.shape[0]) for f in frames]
            for name, runner in zip(names, runners, strict=True):
                out = runner.infer(x)
                if boxes_key not in out or scores_key not in out:
                    raise BuildError(
                        f"model {name} ({models[name]}) has outputs {sorted(out)}; a detector "
                        f"needs {boxes_key!r} [N, K, 4] and {scores_key!r} [N, K, classes]",
                        "export the detector with edgevision (its graph names the outputs)",
                    )
                boxes, scores = out[boxes_key], out[scores_key]
                if len(boxes) != len(frames) or len(scores) != len(frames):
                    raise BuildError(
                        f"model {name} returned {len(boxes)} box and {len(scores)} score rows "
                        f"for a batch of {len(frames)} images",
                        "export the detector with a dynamic batch dimension",
                    )
                for b, s, size in zip(boxes, scores, sizes, strict=True):
                    preds[name].append(postprocess(b, s, spec, size, EVAL_THRESHOLD))
                    runtime[name].append(postprocess(b, s, spec, size, EVAL_THRESHOLD, True))
            truths.extend(batch_truths)
    if len(skipped) > len(eval_set.skipped):
        log.warning(
            "skipped %d unreadable evaluation image(s)", len(skipped) - len(eval_set.skipped)
        )
    return DetectionEvaluation(
        spec.labels,
        eval_set.source,
        truths,
        preds,
        float(spec.detection.score_threshold),
        skipped,
        reference,
        runtime,
    )


def plot_ap_per_class(evaluation: DetectionEvaluation, out: str | os.PathLike[str]) -> Path:
    """Grouped bars: AP@[.5:.95] per class for FP32 and each INT8 artifact (matplotlib, Agg)."""
    from edgevision.compile.report import plot_per_class_bars

    title = f"AP per class, {evaluation.n} images, {evaluation.boxes} boxes ({evaluation.source})"
    return plot_per_class_bars(evaluation, "AP@[.5:.95] (%)", title, out)


__all__ = [
    "EVAL_THRESHOLD",
    "PLOT",
    "DetectionEvalSet",
    "DetectionEvaluation",
    "eval_set_from_folder",
    "eval_set_from_split",
    "evaluate_detection",
    "plot_ap_per_class",
]
