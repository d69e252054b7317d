"""Step 4: verify — top-1 of FP32 and each INT8 artifact on a held-out labelled set.

The result is a structured `Evaluation` (top-1, drop in points, agreement with FP32, per-class
accuracy and drop), so an accuracy-budget search can call `evaluate` in a loop and compare.

What every task's evaluation does the same way lives here too (detection's and segmentation's
evaluators use it): the held-out part of a split (`held_out`), a dataset folder's unusable
files and class names (`scan_skipped`, `check_dataset_labels`), the batches and the ONNX
Runtime sessions of the models compared (`reference_of`, `batched`, `ort_runners`,
`decode_batches`), and `Comparison`: the drops against the reference and the report's
per-class table.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from edgevision.compile.progress import Tracker, silent
from edgevision.data.images import list_images, read_image
from edgevision.errors import BudgetExceededError, CorruptImageError, DataError
from edgevision.preprocess import preprocess_batch
from edgevision.spec import ModelSpec

if TYPE_CHECKING:
    from edgevision.data.split import Split

log = logging.getLogger(__name__)

REFERENCE = "fp32"
T = TypeVar("T")


@dataclass
class EvalSet:
    """Labelled images: ``items`` are (path, index into the spec's labels)."""

    items: list[tuple[Path, int]]
    source: str


def held_out(split: Any, logger: logging.Logger = log) -> str | None:
    """The part of ``split`` an evaluation reads: ``test``, else ``val`` (warned on
    ``logger``), None when it has neither."""
    for name in ("test", "val"):
        if split.items.get(name):
            if name != "test":
                logger.warning("the split has no test images; evaluating on its %s split", name)
            return name
    return None


def eval_set_from_split(split: Split, spec: ModelSpec) -> EvalSet | None:
    """The split's test images (else its validation images), labels mapped onto the spec's."""
    name = held_out(split)
    if name is None:
        return None
    items = [(p, _label_index(split.labels[y], spec, p)) for p, y in split.paths(name)]
    return EvalSet(items, f"{name} split of {split.root}")


def eval_set_from_folder(root: str | os.PathLike[str], spec: ModelSpec) -> EvalSet:
    """An ImageFolder: ``root/<label>/*.png``, each folder one of the spec's labels."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"evaluation folder {root} does not exist", "give --eval DIR/<label>/…")
    items = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        index = _label_index(folder.name, spec, folder)
        items.extend((p, index) for p in list_images(folder))
    if not items:
        raise DataError(
            f"evaluation folder {root} has no labelled images",
            f"lay it out as {root}/<label>/<image>, labels from the spec: {', '.join(spec.labels)}",
        )
    return EvalSet(items, f"folder {root}")


def _label_index(label: str, spec: ModelSpec, where: Path) -> int:
    if label not in spec.labels:
        raise DataError(
            f"label {label!r} ({where}) is not one of the model's labels",
            f"use only: {', '.join(spec.labels)}",
        )
    return spec.labels.index(label)


def check_dataset_labels(
    names: Sequence[str], spec: ModelSpec, where: Path, what: str, fix: str
) -> None:
    """`DataError` when a dataset's class ``names`` (of ``where``) are not all the spec's
    labels; ``what`` names them in the message (``"label(s)"``), ``fix`` is its hint."""
    missing = [name for name in names if name not in spec.labels]
    if missing:
        raise DataError(
            f"{what} {', '.join(map(repr, missing))} of {where} are not among the model's "
            f"labels ({', '.join(spec.labels)})",
            fix,
        )


def scan_skipped(split: Any, root: Path, logger: logging.Logger = log) -> list[dict[str, str]]:
    """The files a dataset scan of ``root`` could not use (warned on ``logger``), as an
    evaluation's ``skipped`` rows: ``{"path", "reason"}`` with the path under the split's root."""
    if split.skipped:
        logger.warning("%d file(s) of %s are not usable and left out", len(split.skipped), root)
    return [{"path": str(split.root / s["path"]), "reason": s["reason"]} for s in split.skipped]


class Comparison:
    """What every task's evaluation (`Evaluation`, a detector's, a segmenter's) derives the
    same way from its own `score` and `per_class`: the drops against ``reference`` and the
    report's per-class table."""

    reference: str
    labels: tuple[str, ...]
    predictions: Mapping[str, Any]  # model name → its predictions, the reference included

    def score(self, name: str) -> float:
        """The headline metric of ``name`` in percent."""
        raise NotImplementedError

    def per_class(self, name: str) -> dict[str, float | None]:
        """The per-class metric of ``name`` in percent (None for a class without a value)."""
        raise NotImplementedError

    def drop(self, name: str) -> float:
        """How many points of the headline metric ``name`` lost against the reference
        (negative: gained)."""
        return self.score(self.reference) - self.score(name)

    def per_class_drop(self, name: str) -> dict[str, float | None]:
        """Per-class points lost against the reference (None where either is undefined)."""
        ref, got = self.per_class(self.reference), self.per_class(name)
        return {
            k: None if ref[k] is None or got[k] is None else ref[k] - got[k]  # type: ignore[operator]
            for k in ref
        }

    def per_class_table(self, title: str, counted: str) -> list[str]:
        """report.md's per-class table after a blank line and ``title``: a row per label with
        its ``counted`` (the evaluation's ``class_counts()``: boxes, pixels) and every model's
        `per_class` (%)."""
        names = list(self.predictions)
        per_class = {name: self.per_class(name) for name in names}
        lines = [
            "",
            title,
            "",
            f"| class | {counted} | " + " | ".join(names) + " |",
            "|---|---:|" + "---:|" * len(names),
        ]
        counts = self.class_counts()  # type: ignore[attr-defined]
        for label in self.labels:
            cells = " | ".join(format_cell(per_class[name][label], ".2f") for name in names)
            lines.append(f"| {label} | {counts[label]} | {cells} |")
        return lines


def format_cell(value: float | None, spec: str) -> str:
    """A report.md table cell: ``value`` in ``spec``, ``—`` for None."""
    return "—" if value is None else format(value, spec)


@dataclass
class Evaluation(Comparison):
    """Predictions of several models on the same images, compared with ``reference``."""

    labels: tuple[str, ...]
    source: str
    y_true: np.ndarray
    predictions: dict[str, np.ndarray]
    skipped: list[dict[str, str]] = field(default_factory=list)
    reference: str = REFERENCE
    metric = "top-1"  # the headline `score` (a task's evaluation has the same interface)

    @property
    def n(self) -> int:
        return len(self.y_true)

    def score(self, name: str) -> float:
        """The headline metric of ``name`` in percent: top-1 (what ``drop`` is measured in)."""
        return self.top1(name)

    def top1(self, name: str) -> float:
        """Top-1 accuracy of ``name`` in percent."""
        return float(100 * np.mean(self.predictions[name] == self.y_true)) if self.n else 0.0

    def agreement(self, name: str) -> float:
        """Percent of images where ``name`` predicts the reference's class."""
        same = self.predictions[name] == self.predictions[self.reference]
        return float(100 * np.mean(same)) if self.n else 0.0

    def per_class(self, name: str) -> dict[str, float | None]:
        """Top-1 per class in percent (None for a class with no image)."""
        out: dict[str, float | None] = {}
        for i, label in enumerate(self.labels):
            mask = self.y_true == i
            out[label] = (
                float(100 * np.mean(self.predictions[name][mask] == i)) if mask.any() else None
            )
        return out

    def summary(self) -> dict[str, Any]:
        """The accuracy report (JSON-ready)."""
        counts = {label: int(np.sum(self.y_true == i)) for i, label in enumerate(self.labels)}
        models = {}
        for name in self.predictions:
            entry = {"top1": round(self.top1(name), 3), "per_class": self.per_class(name)}
            if name != self.reference:
                entry |= {
                    "drop_points": round(self.drop(name), 3),
                    "agreement": round(self.agreement(name), 3),
                    "per_class_drop": self.per_class_drop(name),
                }
            models[name] = entry
        return {
            "metric": self.metric,
            "source": self.source,
            "images": self.n,
            "skipped": len(self.skipped),
            "reference": self.reference,
            "class_counts": counts,
            "models": models,
        }


def evaluate(
    models: Mapping[str, str | os.PathLike[str]],
    eval_set: EvalSet,
    spec: ModelSpec,
    threads: int = 0,
    batch_size: int = 32,
    track: Tracker = silent,
) -> Evaluation:
    """Run every ONNX model in ``models`` (name → path) over ``eval_set`` with ONNX Runtime.

    Images are decoded and preprocessed once per batch and fed to all models; unreadable files
    are skipped and counted. The first model (``fp32`` when present) is the reference.
    """
    names = list(models)
    reference = reference_of(models)
    preds: dict[str, list[np.ndarray]] = {n: [] for n in names}
    truth: list[int] = []
    skipped: list[dict[str, str]] = []
    batches = batched(eval_set.items, batch_size)
    with ort_runners(models, names, threads) as runners:
        for frames, labels in track(decode_batches(batches, skipped), len(batches), "evaluate"):
            x = preprocess_batch(frames, spec)
            for name, runner in zip(names, runners, strict=True):
                preds[name].append(next(iter(runner.infer(x).values())).argmax(axis=1))
            truth.extend(labels)
    if skipped:
        log.warning("skipped %d unreadable evaluation image(s)", len(skipped))
    return Evaluation(
        spec.labels,
        eval_set.source,
        np.asarray(truth, dtype=np.int64),
        {n: np.concatenate(p) if p else np.zeros(0, np.int64) for n, p in preds.items()},
        skipped,
        reference,
    )


def reference_of(models: Mapping[str, Any]) -> str:
    """The model the others are compared with: ``fp32`` when present, else the first."""
    return REFERENCE if REFERENCE in models else list(models)[0]


def batched(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """``items`` in consecutive batches of ``size`` (the last one shorter)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


@contextmanager
def ort_runners(
    models: Mapping[str, str | os.PathLike[str]], names: Sequence[str], threads: int = 0
) -> Iterator[list[Any]]:
    """An activated ONNX Runtime session (`OrtRunner`, named ``ort:<name>``) per model of
    ``names``, in that order; all deactivated on the way out."""
    from edgevision.backends.ort import OrtRunner

    runners = [OrtRunner(models[n], threads=threads, name=f"ort:{n}").activate() for n in names]
    try:
        yield runners
    finally:
        for runner in runners:
            runner.deactivate()


def decode_batches(
    batches: Sequence[list[tuple[Path, T]]], skipped: list[dict[str, str]]
) -> Iterator[tuple[list[np.ndarray], list[T]]]:
    """Each batch of ``(path, label)`` as decoded frames and their labels (any label type: a
    class index, a detector's `Truth`); unreadable files go to ``skipped``, empty batches too."""
    for batch in batches:
        frames, labels = [], []
        for path, label in batch:
            try:
                frames.append(read_image(path))
                labels.append(label)
            except CorruptImageError as exc:
                skipped.append({"path": str(path), "reason": exc.message})
        if frames:
            yield frames, labels


# name → model path; returns the predictions of all of them on one evaluation set.
Evaluator = Callable[[Mapping[str, Path]], Evaluation]


def low_agreement(evaluation: Evaluation, min_agreement: float) -> list[str]:
    """One line per INT8 artifact that agrees with FP32 on fewer than ``min_agreement`` % of
    the held-out images: a drop near zero can hide many changed predictions."""
    what = getattr(evaluation, "agreement_what", None)  # a task's own kind of agreement
    return [
        (
            f"{name} agrees with FP32 on {evaluation.agreement(name):.2f}% of the "
            f"{evaluation.n} held-out images"
            if what is None
            else f"{name} agrees with FP32 {evaluation.agreement(name):.2f}% ({what}, "
            f"{evaluation.n} held-out images)"
        )
        + f", below --min-agreement {min_agreement:g}%"
        for name in evaluation.predictions
        if name != evaluation.reference and evaluation.agreement(name) < min_agreement
    ]


def check_max_drop(
    evaluation: Evaluation, max_drop: float | None, min_agreement: float | None = None
) -> None:
    """Raise `BudgetExceededError` when any INT8 artifact lost more than ``max_drop`` points
    or, with ``min_agreement``, agrees with FP32 on fewer than that % of the images."""
    if max_drop is None:
        return
    over = [
        (name, evaluation.drop(name))
        for name in evaluation.predictions
        if name != evaluation.reference and evaluation.drop(name) > max_drop
    ]
    disagree = low_agreement(evaluation, min_agreement) if min_agreement is not None else []
    if disagree and not over:
        raise BudgetExceededError(
            f"INT8 is within --max-drop {max_drop:g} but {'; '.join(disagree)}; the bundle "
            "was not written",
            "calibrate on more representative images (--calib, --method entropy), keep layers "
            "in float (--max-drop with the search, --exclude-nodes), or lower --min-agreement",
        )
    if over:
        worst = ", ".join(f"{n} drops {d:.2f} points" for n, d in over)
        raise BudgetExceededError(
            f"INT8 accuracy is outside --max-drop {max_drop:g}: {worst} "
            f"(FP32 {evaluation.metric} {evaluation.score(evaluation.reference):.2f} on "
            f"{evaluation.n} "
            f"images of the {evaluation.source}); the bundle was not written",
            "try --method entropy or percentile, a larger or more representative --calib set, "
            "or a looser --max-drop",
        )
