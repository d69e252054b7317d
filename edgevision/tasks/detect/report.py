"""A detection run's report: metrics JSON, report.txt, PR curves, training curves, example grid.

Workstation side. matplotlib is imported on first plot, through the classification report's
`_figure` / `_save_figure` (Agg backend, atomic PNG writes); the metrics come from `coco_map`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgevision.errors import ConfigError, OutputError
from edgevision.fileio import atomic_write_bytes, atomic_write_text
from edgevision.opencv import cv2
from edgevision.tasks.detect.draw import draw_detections, draw_truth
from edgevision.tasks.detect.metrics import Detections, Truth
from edgevision.train.report import (
    CURVES_PNG,
    METRICS_JSON,
    REPORT_TXT,
    SPLITS,
    _figure,
    _save_figure,
    task_text_report,
    write_metrics,
)

PR_CURVE_PNG = "pr_curve_{split}.png"
LOSS_PARTS = {"train_loss_cls": "cls", "train_loss_box": "box", "train_loss_obj": "obj"}
TILE = (360, 480)  # (height, width) of one cell of the example grid, at most


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


# -- plots ---------------------------------------------------------------------------------
def plot_pr_curves(metrics: dict[str, Any], path: Path, title: str = "") -> Path:
    """Precision/recall at IoU 0.5 per class (``metrics["pr50"]``) and their mean, as a PNG."""
    fig, ax = _figure(figsize=(7, 5))
    curves = {name: c for name, c in metrics.get("pr50", {}).items() if c is not None}
    ap50 = metrics.get("per_class_ap50", {})
    for name, curve in curves.items():
        label = f"{name} AP50 {ap50.get(name) or 0.0:.2f}"
        ax.plot(curve["recall"], curve["precision"], linewidth=1, alpha=0.7, label=label)
    if curves:
        recall = next(iter(curves.values()))["recall"]
        mean = np.mean([c["precision"] for c in curves.values()], axis=0)
        label = f"all classes mAP50 {metrics.get('map50') or 0.0:.2f}"
        ax.plot(recall, mean, color="black", linewidth=2.5, label=label)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    else:
        ax.text(0.5, 0.5, "no ground truth", ha="center", va="center", transform=ax.transAxes)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision")
    ax.set_title(title or "precision-recall at IoU 0.5")
    ax.grid(alpha=0.3)
    return _save_figure(fig, Path(path))


def plot_detection_curves(history: list[dict[str, Any]], path: Path) -> Path:
    """Loss (train and its parts, val) and val mAP / mAP50 (%) per epoch, as a PNG."""
    fig, (loss_ax, map_ax) = _figure(1, 2, figsize=(10, 4))
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]

    def series(key: str) -> tuple[list[Any], list[float]] | None:
        points = [
            (e, h[key]) for e, h in zip(epochs, history, strict=True) if h.get(key) is not None
        ]
        return ([e for e, _ in points], [float(v) for _, v in points]) if points else None

    for key, label, style in [("train_loss", "train", "o-"), ("val_loss", "val", "o-")]:
        if found := series(key):
            loss_ax.plot(*found, style, label=label)
    for key, part in LOSS_PARTS.items():
        if found := series(key):
            loss_ax.plot(*found, "--", linewidth=1, label=f"train {part}")
    loss_ax.set(title="loss", xlabel="epoch")
    for key, label, colour in [("val_map", "val mAP", "C2"), ("val_map50", "val mAP50", "C3")]:
        if found := series(key):
            map_ax.plot(found[0], [100 * v for v in found[1]], "o-", color=colour, label=label)
    map_ax.set(title="mAP (%)", xlabel="epoch")
    for ax in (loss_ax, map_ax):
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    return _save_figure(fig, Path(path))


# -- example grid ----------------------------------------------------------------------------
def _fit(img: np.ndarray, tile: tuple[int, int]) -> tuple[np.ndarray, float]:
    height, width = img.shape[:2]
    scale = min(tile[0] / height, tile[1] / width, 1.0)
    if scale == 1.0:
        return img, scale
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA), scale


def _cell(
    img: np.ndarray, truth: Truth, pred: Detections, names: Sequence[str], threshold: float
) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    img, scale = _fit(img, TILE)
    keep = np.asarray(pred.scores) >= threshold
    out = draw_truth(img, np.asarray(truth.boxes) * scale, truth.labels, names)
    boxes = np.asarray(pred.boxes)[keep] * scale
    return draw_detections(out, boxes, np.asarray(pred.labels)[keep], names, pred.scores[keep])


def prediction_grid(
    images: list[np.ndarray],
    truths: list[Truth],
    preds: list[Detections],
    names: Sequence[str],
    path: Path,
    cols: int = 4,
    score_threshold: float = 0.3,
) -> Path:
    """A PNG grid of BGR ``images``: ground truth (thin green) under the predictions scoring at
    least ``score_threshold``; each image is scaled to fit a cell of at most 480x360."""
    if not images or not len(images) == len(truths) == len(preds):
        raise ConfigError(
            f"{len(images)} images, {len(truths)} truths and {len(preds)} predictions",
            "pass at least one image and one Truth and one Detections per image",
        )
    if isinstance(cols, bool) or not isinstance(cols, int) or cols < 1:
        raise ConfigError(f"cols {cols!r} is not a positive integer", "use e.g. cols=4")
    cells = [
        _cell(img, t, p, names, score_threshold)
        for img, t, p in zip(images, truths, preds, strict=True)
    ]
    cols = min(cols, len(cells))
    rows = -(-len(cells) // cols)
    cell_h = max(c.shape[0] for c in cells)
    cell_w = max(c.shape[1] for c in cells)
    gap = 4
    grid = np.full((rows * (cell_h + gap) - gap, cols * (cell_w + gap) - gap, 3), 40, np.uint8)
    for i, cell in enumerate(cells):
        top, left = (i // cols) * (cell_h + gap), (i % cols) * (cell_w + gap)
        grid[top : top + cell.shape[0], left : left + cell.shape[1]] = cell
    ok, png = cv2.imencode(".png", grid)
    if not ok:
        raise OutputError(f"OpenCV could not encode the {grid.shape} prediction grid as PNG")
    return atomic_write_bytes(path, png.tobytes())


# -- text and files --------------------------------------------------------------------------
def _class_table(m: dict[str, Any], labels: Sequence[str]) -> list[str]:
    width = max([len("class"), *(len(name) for name in labels)])
    lines = [f"{'class':<{width}}  {'AP':>6}  {'AP50':>6}"]
    for name in labels:
        ap, ap50 = m["per_class"].get(name), m["per_class_ap50"].get(name)
        lines.append(f"{name:<{width}}  {_pct(ap):>6}  {_pct(ap50):>6}")
    return lines


def _split_text(name: str, m: dict[str, Any], labels: Sequence[str]) -> list[str]:
    counts = f"{m['images']} images, {m['boxes']} boxes, {m['detections']} detections"
    return [
        "",
        f"== {name}: mAP {_pct(m['map'])}  mAP50 {_pct(m['map50'])}  mAP75 {_pct(m['map75'])} "
        f"({counts})",
        f"AP small {_pct(m['map_small'])}  medium {_pct(m['map_medium'])}  "
        f"large {_pct(m['map_large'])}  AR@100 {_pct(m['ar100'])}  (%, COCO; - = no such objects)",
        *_class_table(m, labels),
    ]


def detection_text_report(
    metrics: dict[str, Any],
    labels: Sequence[str],
    skipped: list[dict[str, str]],
    issues: list[Any],
) -> str:
    """report.txt: run facts, per split mAP, mAP50/75, AP by size and a per-class AP table,
    then the skipped files and the dataset issues."""
    sections: list[str] = []
    for name in SPLITS:
        if name in metrics:
            sections += _split_text(name, metrics[name], labels)
    return task_text_report("detection", metrics, sections, skipped, issues)


def write_detection_report(
    run_dir: Path,
    metrics: dict[str, Any],
    labels: Sequence[str],
    history: list[dict[str, Any]],
    skipped: list[dict[str, str]],
    issues: list[Any],
) -> None:
    """metrics.json, report.txt, pr_curve_{val,test}.png and curves.png in the run folder."""
    run_dir = Path(run_dir)
    write_metrics(run_dir, metrics, history, skipped=skipped, issues=issues)
    atomic_write_text(run_dir / REPORT_TXT, detection_text_report(metrics, labels, skipped, issues))
    for name in SPLITS:
        if name in metrics:
            title = f"{name}: mAP50 {_pct(metrics[name]['map50'])}%"
            plot_pr_curves(metrics[name], run_dir / PR_CURVE_PNG.format(split=name), title)
    if history:
        plot_detection_curves(history, run_dir / CURVES_PNG)


__all__ = [
    "CURVES_PNG",
    "METRICS_JSON",
    "PR_CURVE_PNG",
    "REPORT_TXT",
    "detection_text_report",
    "plot_detection_curves",
    "plot_pr_curves",
    "prediction_grid",
    "write_detection_report",
]
