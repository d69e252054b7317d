"""Build's verify step for segmenters: mIoU of FP32 and each INT8 artifact on held-out masks.

The segmentation counterpart of `edgevision.compile.evaluate`: `evaluate_segmentation` runs
every ONNX model over the same decoded, preprocessed batches; each image's output becomes a
class map (`geometry.class_map`) that is mapped onto the original frame exactly as the runtime
does (`geometry.mask_to_frame`: the inverse of the spec's resize, nearest neighbour) and is
scored there against the ground-truth mask, at the mask's own resolution. Per model the
per-image confusion matrices are summed (`metrics.confusion`), so IoU, Dice and mIoU are the
dataset-level figures (Cityscapes / PASCAL VOC convention), not per-image means.

The result, a `SegmentationEvaluation`, offers the interface the generic build steps use on
the classification `Evaluation` (``metric``, ``score``, ``drop``, ``agreement``,
``per_class``, ``summary``, ``predictions`` keyed by model, ``reference``, ``n``): mIoU in
percent is the score, agreement is the percentage of frame pixels where a model's class equals
FP32's.

Frame pixels the model never saw (outside a ``center_crop``) come back as 255 from
`mask_to_frame`: they are left out of the confusion matrices (counted in ``unseen_pixels``)
and of the agreement.

Torch-free: NumPy, OpenCV (through `read_image`) and ONNX Runtime (through `OrtRunner`).
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
    held_out,
    ort_runners,
    reference_of,
    scan_skipped,
)
from edgevision.compile.progress import Tracker, silent
from edgevision.errors import BuildError, DataError
from edgevision.preprocess import preprocess_batch
from edgevision.spec import ModelSpec
from edgevision.tasks.segment.metrics import SegmentationScores, confusion
from edgevision.tasks.segment.metrics import scores as confusion_scores
from edgevision.tasks.segment.spec import IGNORE_INDEX

if TYPE_CHECKING:
    from edgevision.data.segmentation import SegmentationSplit

log = logging.getLogger(__name__)

METRIC = "mIoU"
EXAMPLES = 4  # images whose class maps the evaluation keeps for the report's overlays


@dataclass
class SegmentationEvalSet:
    """Images with ground-truth masks: ``items`` are (image path, mask path) pairs.

    ``labels`` are the dataset's class names in mask-id order; `class_index` maps those ids
    onto the spec's labels by name. ``skipped`` lists images the dataset scan could not use.
    """

    items: list[tuple[Path, Path]]
    source: str
    labels: list[str]
    class_index: np.ndarray  # uint8 [256]: dataset mask id → spec label id, 255 stays 255
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        """The images' file names (the report's captions)."""
        return [image.name for image, _ in self.items]

    def read_truth(self, mask_path: Path) -> np.ndarray:
        """A ground-truth mask in the spec's class ids (255 = ignore)."""
        from edgevision.data.segmentation import read_mask

        return self.class_index[read_mask(mask_path)]


def _class_index(names: Sequence[str], spec: ModelSpec, where: Path) -> np.ndarray:
    """Dataset mask id → the spec's label id, by name (ids the dataset lacks map to ignore)."""
    fix = (
        "evaluate on masks labelled with the model's classes only (relabel the others "
        f"{IGNORE_INDEX}, ignore), or give the spec written for this dataset"
    )
    check_dataset_labels(names, spec, where, "class(es)", fix)
    index = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    index[: len(names)] = [spec.labels.index(name) for name in names]
    return index


def eval_set_from_split(split: SegmentationSplit, spec: ModelSpec) -> SegmentationEvalSet | None:
    """The split's test images (else its validation images), classes mapped onto the spec's."""
    name = held_out(split, log)
    if name is None:
        return None
    index = _class_index(split.labels, spec, split.root)
    items = [(image, mask) for image, mask, _ in split.paths(name)]
    return SegmentationEvalSet(items, f"{name} split of {split.root}", split.labels, index)


def eval_set_from_folder(root: str | os.PathLike[str], spec: ModelSpec) -> SegmentationEvalSet:
    """Every usable image of a segmentation dataset folder (all of its splits).

    The folder is read with `scan_segmentation`; images or masks it cannot use are left out
    and listed in ``skipped``. Its class names must all be labels of the spec.
    """
    from edgevision.data.segmentation import is_segmentation_dataset, scan_segmentation

    root = Path(root)
    if not is_segmentation_dataset(root):
        raise DataError(
            f"evaluation folder {root} is not a segmentation dataset"
            + ("" if root.is_dir() else " (it does not exist)"),
            "give --eval a folder with images/ + masks/ (one single-channel PNG per image, "
            "class ids, 255 = ignore) + classes.txt, or train/ val/ test/ folders of those",
        )
    split = scan_segmentation(root)
    index = _class_index(split.labels, spec, root)
    rows = sorted(
        (row for name in split.items for row in split.paths(name)), key=lambda r: r[2].path
    )
    if not rows:
        raise DataError(
            f"evaluation folder {root} has no usable images",
            "add images with their masks (masks/<stem>.png beside images/<stem>.*)",
        )
    skipped = scan_skipped(split, root, log)
    items = [(image, mask) for image, mask, _ in rows]
    return SegmentationEvalSet(
        items, f"{split.format} dataset {root}", list(split.labels), index, skipped
    )


@dataclass
class SegmentationExample:
    """One evaluation image kept for the report: its truth and every model's class map, all at
    the frame's resolution in the spec's class ids (255: ignore / not seen)."""

    image: Path
    truth: np.ndarray
    maps: dict[str, np.ndarray]


@dataclass
class SegmentationEvaluation(Comparison):
    """Segmentation of several models on the same images, compared with ``reference``.

    ``confusions`` hold each model's confusion matrix summed over the images (rows truth,
    columns prediction; pixels whose truth is ignore, or that the model never saw, left out);
    ``agreement_pixels`` each model's (pixels equal to the reference's, pixels compared).
    """

    metric: ClassVar[str] = METRIC
    agreement_what: ClassVar[str] = "pixels whose class equals FP32's"

    labels: tuple[str, ...]
    source: str
    confusions: dict[str, np.ndarray]
    agreement_pixels: dict[str, tuple[int, int]]
    images: int
    skipped: list[dict[str, str]] = field(default_factory=list)
    reference: str = REFERENCE
    unseen_pixels: int = 0  # labelled frame pixels outside what the model saw (center_crop)
    examples: list[SegmentationExample] = field(default_factory=list)
    _scores: dict[str, SegmentationScores] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def predictions(self) -> dict[str, np.ndarray]:
        """Model name → its confusion matrix: the models compared, reference first (what the
        generic build steps iterate)."""
        return self.confusions

    @property
    def n(self) -> int:
        """Images evaluated."""
        return self.images

    @property
    def pixels(self) -> int:
        """Labelled frame pixels scored (the reference's confusion total)."""
        return int(self.confusions[self.reference].sum())

    # -- metrics ----------------------------------------------------------------------------
    def scores(self, name: str) -> SegmentationScores:
        """`metrics.scores` of ``name``'s summed confusion matrix (fractions), computed once."""
        if name not in self._scores:
            self._scores[name] = confusion_scores(self.confusions[name])
        return self._scores[name]

    def score(self, name: str) -> float:
        """mIoU of ``name`` in percent (0 when no labelled pixel was scored)."""
        return _pct0(self.scores(name).miou)

    def miou(self, name: str) -> float:
        """mIoU of ``name`` in percent (= `score`)."""
        return self.score(name)

    def mean_dice(self, name: str) -> float:
        """Mean Dice of ``name`` in percent."""
        return _pct0(self.scores(name).mean_dice)

    def pixel_accuracy(self, name: str) -> float:
        """Labelled pixels ``name`` got right, in percent."""
        return _pct0(self.scores(name).pixel_accuracy)

    def per_class(self, name: str) -> dict[str, float | None]:
        """IoU per class in percent (None for a class in neither truth nor prediction)."""
        return _per_label(self.labels, self.scores(name).iou)

    def per_class_dice(self, name: str) -> dict[str, float | None]:
        """Dice per class in percent (None for a class in neither truth nor prediction)."""
        return _per_label(self.labels, self.scores(name).dice)

    def agreement(self, name: str) -> float:
        """Percent of the frame pixels (every pixel the model saw, labelled or not) where
        ``name``'s class equals the reference's; 100 for the reference and for no pixels."""
        same, total = self.agreement_pixels.get(name, (0, 0))
        return 100.0 if name == self.reference or total == 0 else 100.0 * same / total

    def class_counts(self) -> dict[str, int]:
        """Labelled ground-truth pixels per class."""
        support = self.confusions[self.reference].sum(axis=1)
        return {label: int(support[i]) for i, label in enumerate(self.labels)}

    # -- reports ----------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """The accuracy report (JSON-ready); mIoU, IoU, Dice and agreement in percent."""
        models = {}
        for name in self.confusions:
            entry: dict[str, Any] = {
                "miou": round(self.score(name), 3),
                "mean_dice": round(self.mean_dice(name), 3),
                "pixel_accuracy": round(self.pixel_accuracy(name), 3),
                "per_class": _rounded(self.per_class(name)),
                "per_class_dice": _rounded(self.per_class_dice(name)),
            }
            if name != self.reference:
                entry |= {
                    "drop_points": round(self.drop(name), 3),
                    "agreement": round(self.agreement(name), 3),
                    "per_class_drop": _rounded(self.per_class_drop(name)),
                }
            models[name] = entry
        return {
            "metric": self.metric,
            "source": self.source,
            "images": self.n,
            "pixels": self.pixels,
            "unseen_pixels": int(self.unseen_pixels),
            "skipped": len(self.skipped),
            "reference": self.reference,
            "class_counts": self.class_counts(),
            "confusion": {
                "model": self.reference,
                "rows": "truth",
                "columns": "prediction",
                "matrix": self.confusions[self.reference].astype(int).tolist(),
            },
            "models": models,
        }

    def to_dict(self) -> dict[str, Any]:
        """= `summary` (report.json's ``accuracy``)."""
        return self.summary()

    def markdown(self, figures: Sequence[str] = ()) -> str:
        """The report.md section: mIoU, Dice, drop and agreement, then IoU per class; links
        the PNGs in ``figures`` (bundle file names)."""
        lines = [
            f"{self.n} images ({self.pixels} labelled pixels, scored at the masks' resolution "
            f"through the runtime's mapping) of the {self.source}"
            + (f", {len(self.skipped)} unusable skipped" if self.skipped else "")
            + (
                f"; {self.unseen_pixels} labelled pixels outside the crop"
                if self.unseen_pixels
                else ""
            )
            + ".",
            "",
            f"| artifact | {self.metric} (%) | mean Dice (%) | pixel accuracy (%) | drop "
            f"(points) | pixel agreement with {self.reference} (%) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name in self.confusions:
            own = name == self.reference
            lines.append(
                f"| {name} | {self.score(name):.2f} | {self.mean_dice(name):.2f} | "
                f"{self.pixel_accuracy(name):.2f} | {'—' if own else f'{self.drop(name):.2f}'} | "
                f"{'—' if own else f'{self.agreement(name):.2f}'} |"
            )
        lines += self.per_class_table("IoU per class (%):", "pixels")
        if figures:
            lines.append("")
            lines += [f"![{Path(f).stem.replace('_', ' ')}]({f})" for f in figures]
        return "\n".join(lines) + "\n"


def _pct0(value: float) -> float:
    return 0.0 if np.isnan(value) else 100.0 * float(value)


def _per_label(labels: Sequence[str], values: np.ndarray) -> dict[str, float | None]:
    return {
        label: None if np.isnan(values[i]) else 100.0 * float(values[i])
        for i, label in enumerate(labels)
    }


def _rounded(values: Mapping[str, float | None]) -> dict[str, float | None]:
    return {k: None if v is None else round(v, 3) + 0.0 for k, v in values.items()}


def _truths(
    eval_set: SegmentationEvalSet,
    frames: list[np.ndarray],
    masks: list[Path],
    images: list[Path],
    skipped: list[dict[str, str]],
) -> tuple[list[np.ndarray], list[np.ndarray], list[Path]]:
    """The batch's frames whose mask reads and matches them, with those masks (spec ids)."""
    kept_frames, truths, kept_images = [], [], []
    for frame, mask_path, image in zip(frames, masks, images, strict=True):
        try:
            truth = eval_set.read_truth(mask_path)
        except DataError as exc:
            skipped.append({"path": str(mask_path), "reason": exc.message})
            continue
        if truth.shape != frame.shape[:2]:
            skipped.append(
                {
                    "path": str(mask_path),
                    "reason": f"mask is {truth.shape[1]}x{truth.shape[0]} but its image "
                    f"{image.name} is {frame.shape[1]}x{frame.shape[0]}",
                }
            )
            continue
        kept_frames.append(frame)
        truths.append(truth)
        kept_images.append(image)
    return kept_frames, truths, kept_images


def evaluate_segmentation(
    models: Mapping[str, str | os.PathLike[str]],
    eval_set: SegmentationEvalSet,
    spec: ModelSpec,
    threads: int = 0,
    batch_size: int = 32,
    track: Tracker = silent,
    examples: int = EXAMPLES,
) -> SegmentationEvaluation:
    """Run every ONNX segmenter in ``models`` (name → path) over ``eval_set`` with ONNX Runtime.

    Images are decoded and preprocessed once per batch and fed to all models; each image's
    output is turned into a class map, mapped onto the frame through the inverse of the
    spec's resize (the runtime's path) and scored against its mask. Unreadable images or
    masks are skipped and counted. The first model (``fp32`` when present) is the reference;
    the first ``examples`` images' class maps are kept for the report.
    """
    from edgevision.tasks.segment.geometry import class_map, mask_to_frame

    reference = reference_of(models)
    names = [reference, *(n for n in models if n != reference)]
    options = spec.segmentation
    key, kind = options.output_name, options.output
    n_classes = len(spec.labels)
    conf = {n: np.zeros((n_classes, n_classes), np.int64) for n in names}
    agree = dict.fromkeys(names, 0)
    compared = unseen = images = 0
    kept: list[SegmentationExample] = []
    skipped: list[dict[str, str]] = list(eval_set.skipped)
    pairs = [(image, (mask, image)) for image, mask in eval_set.items]
    batches = batched(pairs, batch_size)
    with ort_runners(models, names, threads) as runners:
        for frames, labels in track(decode_batches(batches, skipped), len(batches), "evaluate"):
            frames, truths, paths = _truths(
                eval_set, frames, [m for m, _ in labels], [i for _, i in labels], skipped
            )
            if not frames:
                continue
            x = preprocess_batch(frames, spec)
            maps: dict[str, list[np.ndarray]] = {}
            for name, runner in zip(names, runners, strict=True):
                out = runner.infer(x)
                if key not in out:
                    raise BuildError(
                        f"model {name} ({models[name]}) has outputs {sorted(out)}; this "
                        f"segmenter's spec needs {key!r} ({options.output})",
                        "export the segmenter with edgevision (its graph names the output)",
                    )
                y = out[key]
                if len(y) != len(frames):
                    raise BuildError(
                        f"model {name} returned {len(y)} rows for a batch of {len(frames)} images",
                        "export the segmenter with a dynamic batch dimension",
                    )
                maps[name] = [
                    mask_to_frame(
                        class_map(y[i], kind, spec.input_size), spec, f.shape[1], f.shape[0]
                    )
                    for i, f in enumerate(frames)
                ]
            for i, truth in enumerate(truths):
                ref = maps[reference][i]
                seen = ref != IGNORE_INDEX
                labelled = truth != IGNORE_INDEX
                unseen += int(np.count_nonzero(labelled & ~seen))
                scored = np.where(seen, truth, IGNORE_INDEX)
                compared += int(np.count_nonzero(seen))
                for name in names:
                    pred = maps[name][i]
                    conf[name] += confusion(pred, scored, n_classes, IGNORE_INDEX)
                    agree[name] += int(np.count_nonzero((pred == ref) & seen))
                if len(kept) < examples:
                    kept.append(
                        SegmentationExample(
                            paths[i], truth, {name: maps[name][i] for name in names}
                        )
                    )
            images += len(frames)
    if len(skipped) > len(eval_set.skipped):
        log.warning("skipped %d unusable evaluation image(s)", len(skipped) - len(eval_set.skipped))
    return SegmentationEvaluation(
        labels=tuple(spec.labels),
        source=eval_set.source,
        confusions=conf,
        agreement_pixels={n: (agree[n], compared) for n in names},
        images=images,
        skipped=skipped,
        reference=reference,
        unseen_pixels=unseen,
        examples=kept,
    )


__all__ = [
    "EXAMPLES",
    "METRIC",
    "SegmentationEvalSet",
    "SegmentationEvaluation",
    "SegmentationExample",
    "eval_set_from_folder",
    "eval_set_from_split",
    "evaluate_segmentation",
]
