"""The segmentation build report's figures: IoU per class, FP32's confusion matrix, overlays.

* `plot_iou_per_class`: grouped bars of per-class IoU, FP32 and every INT8 artifact (the
  bundle's per-class PNG, `PLOT`; the generic `plot_per_class_bars`);
* `plot_confusion`: the reference's (FP32's) confusion matrix, each row (a true class)
  normalised to 100 %, its pixel count on the axis;
* `plot_examples`: a few evaluation images, one row each: image | truth | FP32 | each INT8
  artifact, the masks laid over the image as the runtime draws them (`draw.overlay` in
  `postprocess.palette`'s colours; the background, class 0, left undrawn).

Torch-free; matplotlib (Agg) is imported inside the functions, OpenCV through `read_image`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgevision.errors import DataError

if TYPE_CHECKING:
    from edgevision.tasks.segment.evaluate import SegmentationEvaluation

PLOT = "iou_per_class.png"
CONFUSION_PLOT = "confusion_fp32.png"
EXAMPLES_PLOT = "examples.png"
FIGURES = (PLOT, CONFUSION_PLOT, EXAMPLES_PLOT)
MAX_INT8_COLUMNS = 2  # INT8 artifacts drawn per example row (int8-cpu, int8-trt)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_iou_per_class(evaluation: SegmentationEvaluation, out: str | os.PathLike[str]) -> Path:
    """Grouped bars: IoU per class for FP32 and each INT8 artifact (matplotlib, Agg)."""
    from edgevision.compile.report import plot_per_class_bars

    title = (
        f"IoU per class, {evaluation.n} images, {evaluation.pixels} labelled pixels "
        f"({evaluation.source})"
    )
    return plot_per_class_bars(evaluation, "IoU (%)", title, out)


def plot_confusion(
    evaluation: SegmentationEvaluation, out: str | os.PathLike[str], name: str | None = None
) -> Path:
    """``name``'s (default: the reference's) confusion matrix, rows normalised to percent."""
    plt = _pyplot()
    name = name or evaluation.reference
    conf = np.asarray(evaluation.confusions[name], dtype=np.float64)
    support = conf.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rows = np.where(support > 0, 100.0 * conf / support, 0.0)
    labels = list(evaluation.labels)
    n = len(labels)
    side = max(3.6, 0.45 * n + 2.0)
    fig, ax = plt.subplots(figsize=(side + 1.0, side), dpi=100)
    image = ax.imshow(rows, cmap="Blues", vmin=0, vmax=100)
    if n <= 20:  # the percentages stay legible
        for t in range(n):
            for p in range(n):
                if conf[t, p] > 0:
                    ax.text(
                        p,
                        t,
                        f"{rows[t, p]:.0f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if rows[t, p] > 50 else "black",
                    )
    ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(
        range(n),
        [f"{label} ({int(s)})" for label, s in zip(labels, support[:, 0], strict=True)],
        fontsize=8,
    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (labelled pixels)")
    ax.set_title(f"{name} confusion, % of each true class ({evaluation.n} images)", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out)
    plt.close(fig)
    return out


def plot_examples(
    evaluation: SegmentationEvaluation,
    out: str | os.PathLike[str],
    models: Sequence[str] | None = None,
) -> Path:
    """One row per kept example: image | truth | FP32 | INT8 artifacts (``models``: which
    columns after the truth, default the reference and up to `MAX_INT8_COLUMNS` others)."""
    from edgevision.data.images import read_image
    from edgevision.tasks.segment.draw import overlay
    from edgevision.tasks.segment.postprocess import palette as make_palette

    plt = _pyplot()
    names = list(evaluation.confusions)
    if models is None:
        others = [n for n in names if n != evaluation.reference][:MAX_INT8_COLUMNS]
        models = [evaluation.reference, *others]
    palette = make_palette(len(evaluation.labels))
    rows = evaluation.examples
    cols = 2 + len(models)
    fig, axes = plt.subplots(
        max(1, len(rows)),
        cols,
        figsize=(2.4 * cols, 2.0 * max(1, len(rows)) + 0.6),
        dpi=100,
        squeeze=False,
    )
    for r, example in enumerate(rows):
        try:
            frame = read_image(example.image)
        except DataError:  # gone since the evaluation: draw the masks on grey
            frame = np.full((*example.truth.shape, 3), 128, np.uint8)
        cells = [("image", frame), ("truth", overlay(frame, example.truth, palette))]
        cells += [(m, overlay(frame, example.maps[m], palette)) for m in models]
        for c, (title, img) in enumerate(cells):
            ax = axes[r][c]
            ax.imshow(img[:, :, ::-1])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
            if c == 0:
                ax.set_ylabel(example.image.name, fontsize=7)
    if not rows:
        for ax in axes[0]:
            ax.axis("off")
        axes[0][0].text(0, 0.5, "no evaluation image", fontsize=9)
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=tuple(int(v) / 255 for v in palette[i][::-1]))
        for i in range(1, len(evaluation.labels))  # class 0, the background, is not drawn
    ]
    fig.legend(
        handles,
        list(evaluation.labels)[1:],
        loc="lower center",
        ncol=min(8, len(handles)),
        fontsize=7,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    out = Path(out)
    fig.savefig(out)
    plt.close(fig)
    return out


def write_figures(
    evaluation: SegmentationEvaluation, folder: str | os.PathLike[str]
) -> dict[str, Path]:
    """Every report PNG into ``folder``: bundle file name → path (`FIGURES`)."""
    folder = Path(folder)
    return {
        PLOT: plot_iou_per_class(evaluation, folder / PLOT),
        CONFUSION_PLOT: plot_confusion(evaluation, folder / CONFUSION_PLOT),
        EXAMPLES_PLOT: plot_examples(evaluation, folder / EXAMPLES_PLOT),
    }


__all__ = [
    "CONFUSION_PLOT",
    "EXAMPLES_PLOT",
    "FIGURES",
    "PLOT",
    "plot_confusion",
    "plot_examples",
    "plot_iou_per_class",
    "write_figures",
]
