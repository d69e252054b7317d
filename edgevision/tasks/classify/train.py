"""Classification's training hooks: ImageFolder/CSV data, cross-entropy, top-1 and macro F1."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from edgevision.data.dataset import balance_table, scan_dataset
from edgevision.data.split import Split
from edgevision.spec import ModelSpec
from edgevision.tasks.training import Trainer, log_rows
from edgevision.train import distributed as dist_


def macro_f1(cm: np.ndarray) -> float:
    """Macro-averaged F1 from a confusion matrix (classes without samples count as 0)."""
    tp = np.diag(cm).astype(float)
    denom = cm.sum(0) + cm.sum(1)
    return float(np.mean(np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)))


class ClassificationTrainer(Trainer):
    """A timm classifier with a fresh linear head, evaluated by a confusion matrix."""

    task = "classification"
    defaults = {
        "size": 128,
        "resize": "stretch",
        "monitor": "val_acc",
        "augment": "default",
        "batch_size": 32,
        "copy_paste": 0,
    }
    monitors = {
        "val_acc": ("val_acc", 1.0),
        "val_f1": ("val_f1", 1.0),
        "val_loss": ("val_loss", -1.0),
    }
    scanner = staticmethod(scan_dataset)
    split_type = Split

    def make_spec(self, config: Any, split: Split) -> ModelSpec:
        return ModelSpec(
            labels=tuple(split.labels), input_size=config.input_size, resize=config.resize
        )

    def create_model(self, backbone: str, spec: Any, weights: Any, dropout: float = 0.0) -> Any:
        from edgevision.train.backbones import create_model

        return create_model(backbone, spec.num_classes, weights, dropout, img_size=spec.input_size)

    def announce(self, log: Any, split: Split) -> None:
        sizes = ", ".join(f"{k} {len(v)}" for k, v in split.items.items())
        log.info(f"data: {split.root} — {len(split.labels)} classes, {sizes}")
        log.table(balance_table(split))
        if split.skipped:
            header = f"[yellow]skipped {len(split.skipped)} unusable file(s)[/] (see report.txt):"
            log_rows(log, header, split.skipped)

    def datasets(self, split: Split, spec: ModelSpec, store: Any, config: Any) -> dict[str, Any]:
        from edgevision.train.augment import Augmenter
        from edgevision.train.data import make_datasets

        augment = Augmenter(config.augment, config.hflip)
        return make_datasets(split, spec, store, augment, config.seed)

    def loss(self, run: Any, outputs: Any, targets: Any) -> tuple[Any, dict[str, float]]:
        criterion = torch.nn.CrossEntropyLoss(label_smoothing=run.config.label_smoothing)
        return criterion(outputs, targets), {}

    @torch.no_grad()
    def evaluate(self, run: Any, loader: Any) -> tuple[dict[str, float], np.ndarray]:
        """Confusion matrix ``cm[true, pred]`` and mean loss over the whole split (all ranks)."""
        n = run.spec.num_classes
        criterion = torch.nn.CrossEntropyLoss(
            label_smoothing=run.config.label_smoothing, reduction="sum"
        )
        device = run.ctx.device
        model = run.eval_model.eval()
        cm = torch.zeros(n * n, dtype=torch.float64, device=device)
        loss = torch.zeros(1, dtype=torch.float64, device=device)
        for x, y in loader:
            x, y = run.to_device(x, y)
            with torch.autocast(device.type, dtype=torch.float16, enabled=run.amp):
                logits = model(x).float()
            loss += criterion(logits, y).double()
            cm += torch.bincount(y * n + logits.argmax(1), minlength=n * n).double()
        dist_.all_sum(run.ctx, cm)
        dist_.all_sum(run.ctx, loss)
        cm_np = cm.view(n, n).cpu().numpy().round().astype(np.int64)
        fields = {
            "val_loss": float(loss.item()) / max(1, int(cm_np.sum())),
            "val_acc": float(np.trace(cm_np) / max(1, cm_np.sum())),
            "val_f1": macro_f1(cm_np),
        }
        return fields, cm_np

    def summarize(self, run: Any, raw: np.ndarray, fields: dict[str, float], split: str) -> dict:
        from edgevision.train.report import summarize

        return summarize(raw, run.split.labels, fields["val_loss"])

    def epoch_text(self, e: dict[str, float]) -> str:
        return f"val top-1 {100 * e['val_acc']:.2f}%  F1 {e['val_f1']:.4f}"

    def final_text(self, metrics: dict[str, Any]) -> str:
        return (
            f"val top-1 {100 * metrics['val']['top1']:.2f}%, "
            f"test top-1 {100 * metrics['test']['top1']:.2f}%"
        )

    def headline(self) -> list[tuple[str, str, Any]]:
        return [
            ("val_top1", "val top-1", lambda m: m["val"]["top1"]),
            ("test_top1", "test top-1", lambda m: m["test"]["top1"]),
            ("test_macro_f1", "test macro F1", lambda m: m["test"]["macro_f1"]),
        ]

    def write_report(self, run: Any, metrics: dict[str, Any], history: list[dict]) -> None:
        from edgevision.train.report import write_report

        split = run.split
        write_report(run.config.run_dir, metrics, split.labels, history, split.skipped)


TRAINER = ClassificationTrainer()
