"""Segmentation's training hooks: image + mask data, the LR-ASPP segmenter, mIoU.

Evaluation upsamples the stride-8 logits bilinearly to the model input (as the exported
``classmap`` graph does), takes the argmax and sums one confusion matrix over the split
(`edgevision.tasks.segment.metrics.confusion`, 255 ignored) against the ground truth moved
into the model input (`edgevision.tasks.segment.data.mask_to_input`); mIoU, mean Dice and
pixel accuracy come from that sum (`scores`). `edgevision build` measures the same at the
masks' own resolution, through the runtime's mapping back onto the frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgevision.data.segmentation import (
    SegmentationSplit,
    scan_segmentation,
    segmentation_table,
)
from edgevision.spec import ModelSpec
from edgevision.tasks.segment.data import SegmentationDataset, make_augment
from edgevision.tasks.segment.metrics import confusion, scores
from edgevision.tasks.segment.spec import IGNORE_INDEX, SegmentationOptions
from edgevision.tasks.training import Trainer
from edgevision.train import distributed as dist_
from edgevision.train.report import SPLITS

DRIVABLE = "road"  # a label of this name is the spec's drivable class (free distance ahead)
IOU_PNG = "iou_per_class.png"
CONFUSION_PNG = "confusion_{split}.png"


def _frac(value: float) -> float:
    """A score in [0, 1] for the history; an undefined one (no class anywhere) is 0."""
    return 0.0 if np.isnan(value) else float(value)


class SegmentationTrainer(Trainer):
    """The LR-ASPP segmenter on a timm backbone, evaluated by mIoU over a split's pixels."""

    task = "segmentation"
    # 320x240 stretch: the synthetic road scenes' own size and aspect (no bars, no crop); light
    # augmentation and batch 8 as detection's measured defaults. On 300 such scenes with
    # EfficientNet-Lite0 and 2 CPU threads an epoch takes ~14 s: test mIoU 79.9 after 3
    # epochs (56 s in all), 85.2 after 6.
    defaults = {
        "size": "320x240",
        "resize": "stretch",
        "monitor": "val_miou",
        "augment": "light",
        "batch_size": 8,
        "copy_paste": 0,
    }
    monitors = {
        "val_miou": ("val_miou", 1.0),
        "val_loss": ("val_loss", -1.0),
    }
    scanner = staticmethod(scan_segmentation)
    split_type = SegmentationSplit
    data_table = staticmethod(segmentation_table)
    dataset_type = SegmentationDataset
    make_augment = staticmethod(make_augment)

    def make_spec(self, config: Any, split: SegmentationSplit) -> ModelSpec:
        labels = tuple(split.labels)
        return ModelSpec(
            labels=labels,
            input_size=config.input_size,
            resize=config.resize,
            task="segmentation",
            segmentation=SegmentationOptions(drivable=DRIVABLE if DRIVABLE in labels else None),
            pad_value=114,  # letterbox bars: mid-grey, as the augmentation's fill
        )

    def create_model(self, backbone: str, spec: Any, weights: Any, dropout: float = 0.0) -> Any:
        from edgevision.tasks.segment.model import create_segmenter

        return create_segmenter(backbone, spec.num_classes, spec.input_size, weights)

    def loss(self, run: Any, outputs: Any, targets: Any) -> tuple[Any, dict[str, float]]:
        from edgevision.tasks.segment.loss import segmentation_loss

        return segmentation_loss(outputs, targets)

    @torch.no_grad()
    def evaluate(self, run: Any, loader: Any) -> tuple[dict[str, float], dict[str, Any]]:
        from edgevision.tasks.segment.loss import segmentation_loss, upsampled

        device = run.ctx.device
        n = run.spec.num_classes
        model = run.eval_model.eval()
        conf = np.zeros((n, n), np.int64)
        loss_sum, images = 0.0, 0
        for x, y in loader:
            x, y = run.to_device(x, y)
            with torch.autocast(device.type, dtype=torch.float16, enabled=run.amp):
                logits = model(x).float()
            loss, _ = segmentation_loss(logits, y)
            pred = upsampled(logits, y.shape[-2:]).argmax(1)
            conf += confusion(pred.cpu().numpy(), y.cpu().numpy(), n, IGNORE_INDEX)
            loss_sum += float(loss) * len(x)
            images += len(x)
        totals = torch.tensor(
            [loss_sum, float(images), *conf.ravel().tolist()], dtype=torch.float64, device=device
        )
        loss_sum, images, *cells = dist_.all_sum(run.ctx, totals).tolist()
        conf = np.rint(np.asarray(cells)).astype(np.int64).reshape(n, n)
        s = scores(conf)
        fields = {
            "val_loss": loss_sum / max(1.0, images),
            "val_miou": _frac(s.miou),
            "val_dice": _frac(s.mean_dice),
            "val_pixel_acc": _frac(s.pixel_accuracy),
        }
        return fields, {"confusion": conf, "images": int(images)}

    def summarize(self, run: Any, raw: dict, fields: dict[str, float], split: str) -> dict:
        conf = raw["confusion"]
        return {
            **scores(conf).to_dict(run.split.labels),  # percent; None where undefined
            "loss": fields["val_loss"],
            "images": raw["images"],
            "confusion": conf.tolist(),
        }

    def epoch_text(self, e: dict[str, float]) -> str:
        return (
            f"val mIoU {100 * e['val_miou']:.1f}  Dice {100 * e['val_dice']:.1f}  "
            f"pixel acc {100 * e['val_pixel_acc']:.1f}"
        )

    def final_text(self, metrics: dict[str, Any]) -> str:
        v, t = metrics["val"], metrics["test"]
        return (
            f"val mIoU {_pct(v['miou'])} (Dice {_pct(v['mean_dice'])}), "
            f"test mIoU {_pct(t['miou'])} (Dice {_pct(t['mean_dice'])})"
        )

    def headline(self) -> list[tuple[str, str, Any]]:
        return [
            ("val_miou", "val mIoU", lambda m: _unit(m["val"]["miou"])),
            ("test_miou", "test mIoU", lambda m: _unit(m["test"]["miou"])),
            ("test_mean_dice", "test mean Dice", lambda m: _unit(m["test"]["mean_dice"])),
        ]

    def write_report(self, run: Any, metrics: dict[str, Any], history: list[dict]) -> None:
        split = run.split
        write_segmentation_report(
            run.config.run_dir, metrics, split.labels, history, split.skipped, split.issues
        )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _unit(percent: float | None) -> float:
    return 0.0 if percent is None else float(percent) / 100.0


# ----------------------------------------------------------------------------- the report


class _PerClass:
    """What `plot_per_class_bars` reads: labels, the compared models, their per-class %."""

    def __init__(self, metrics: dict[str, Any], labels: Sequence[str], key: str) -> None:
        self.labels = list(labels)
        self.predictions = {name: None for name in SPLITS if name in metrics}
        self._metrics, self._key = metrics, key

    def per_class(self, name: str) -> dict[str, float | None]:
        rows = self._metrics[name]["per_class"]
        return {label: rows[label][self._key] for label in self.labels}


def _class_table(m: dict[str, Any], labels: Sequence[str]) -> list[str]:
    width = max([len("class"), *(len(name) for name in labels)])
    lines = [f"{'class':<{width}}  {'IoU':>6}  {'Dice':>6}  {'pixels':>10}"]
    for name in labels:
        row = m["per_class"][name]
        lines.append(
            f"{name:<{width}}  {_pct(row['iou']):>6}  {_pct(row['dice']):>6}  {row['pixels']:>10}"
        )
    return lines


def segmentation_text_report(
    metrics: dict[str, Any],
    labels: Sequence[str],
    skipped: list[dict[str, str]],
    issues: list[Any],
) -> str:
    """report.txt: run facts, per split mIoU / mean Dice / pixel accuracy and a per-class
    IoU and Dice table (percent, at the model input's resolution), then skipped files and
    dataset issues."""
    from edgevision.train.report import task_text_report

    sections: list[str] = []
    for name in SPLITS:
        if name in metrics:
            m = metrics[name]
            sections += [
                "",
                f"== {name}: mIoU {_pct(m['miou'])}  mean Dice {_pct(m['mean_dice'])}  "
                f"pixel accuracy {_pct(m['pixel_accuracy'])} ({m['images']} images; %, at the "
                "model input's resolution; - = class in neither truth nor prediction)",
                *_class_table(m, labels),
            ]
    return task_text_report("segmentation", metrics, sections, skipped, issues)


def plot_confusion(conf: np.ndarray, labels: Sequence[str], title: str, path: Path) -> Path:
    """A confusion matrix (true rows, predicted columns), each row normalised to 100 %."""
    from edgevision.train.report import _figure, _save_figure

    conf = np.asarray(conf, dtype=np.float64)
    support = conf.sum(axis=1, keepdims=True)
    rows = np.divide(100.0 * conf, support, out=np.zeros_like(conf), where=support > 0)
    n = len(labels)
    size = max(4.0, 0.55 * n + 2)
    fig, ax = _figure(figsize=(size + 1, size))
    im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=100)
    ax.set(title=title, xlabel="predicted", ylabel="true (labelled pixels)")
    ax.set_xticks(range(n), list(labels), rotation=60, ha="right", fontsize=8)
    ticks = [f"{name} ({int(s)})" for name, s in zip(labels, support[:, 0], strict=True)]
    ax.set_yticks(range(n), ticks, fontsize=8)
    if n <= 20:
        for (t, p), value in np.ndenumerate(rows):
            if conf[t, p]:
                colour = "white" if value > 50 else "black"
                ax.text(p, t, f"{value:.0f}", ha="center", va="center", fontsize=7, color=colour)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save_figure(fig, path)


def plot_segmentation_curves(history: list[dict[str, Any]], path: Path) -> Path:
    """Loss (train, val) and val mIoU / mean Dice (%) per epoch, as a PNG."""
    from edgevision.train.report import _figure, _save_figure

    fig, (loss_ax, iou_ax) = _figure(1, 2, figsize=(10, 4))
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    for key, label in (("train_loss", "train"), ("val_loss", "val")):
        loss_ax.plot(epochs, [h.get(key, np.nan) for h in history], "o-", label=label)
    loss_ax.set(title="loss", xlabel="epoch")
    for key, label, colour in (("val_miou", "val mIoU", "C2"), ("val_dice", "val Dice", "C3")):
        values = [100 * h.get(key, np.nan) for h in history]
        iou_ax.plot(epochs, values, "o-", color=colour, label=label)
    iou_ax.set(title="mIoU / Dice (%)", xlabel="epoch")
    for ax in (loss_ax, iou_ax):
        ax.legend()
    return _save_figure(fig, path)


def write_segmentation_report(
    run_dir: Path,
    metrics: dict[str, Any],
    labels: Sequence[str],
    history: list[dict[str, Any]],
    skipped: list[dict[str, str]],
    issues: list[Any],
) -> None:
    """metrics.json, report.txt, iou_per_class.png, confusion_{val,test}.png and curves.png
    in the run folder."""
    from edgevision.compile.report import plot_per_class_bars
    from edgevision.fileio import atomic_write_text
    from edgevision.train.report import CURVES_PNG, REPORT_TXT, write_metrics

    run_dir = Path(run_dir)
    write_metrics(run_dir, metrics, history, skipped=skipped, issues=issues)
    text = segmentation_text_report(metrics, labels, skipped, issues)
    atomic_write_text(run_dir / REPORT_TXT, text)
    present = [name for name in SPLITS if name in metrics]
    if present:
        title = "IoU per class: " + ", ".join(
            f"{name} mIoU {_pct(metrics[name]['miou'])}%" for name in present
        )
        plot_per_class_bars(_PerClass(metrics, labels, "iou"), "IoU (%)", title, run_dir / IOU_PNG)
    for name in present:
        title = f"{name}: % of each true class's pixels (mIoU {_pct(metrics[name]['miou'])}%)"
        path = run_dir / CONFUSION_PNG.format(split=name)
        plot_confusion(np.asarray(metrics[name]["confusion"]), labels, title, path)
    if history:
        plot_segmentation_curves(history, run_dir / CURVES_PNG)


TRAINER = SegmentationTrainer()
