"""Detection's training hooks: COCO/YOLO data, the anchor-free detector, COCO mAP.

Evaluation decodes the top-K candidates exactly as the exported graph does (`DetectorExport`),
applies class-aware NMS (`torchvision.ops.batched_nms`), maps the boxes back onto each original
image through the same resize the spec describes, and scores them with pycocotools against the
original (unaugmented, unresized) ground truth: mAP@[.5:.95], mAP@.5 and the rest, in the
image's own pixels, so COCO's small/medium/large buckets mean what they say.
"""

from __future__ import annotations

from typing import Any

import torch

from edgevision.data.detection import DetectionSplit, detection_table, scan_detection
from edgevision.spec import ModelSpec
from edgevision.tasks.detect.data import DetectionDataset, collate, make_augment
from edgevision.tasks.detect.geometry import box_transform
from edgevision.tasks.detect.metrics import Detections, Truth, coco_map
from edgevision.tasks.detect.spec import DetectionOptions
from edgevision.tasks.training import Trainer
from edgevision.train import distributed as dist_

EVAL_SCORE_THRESHOLD = 0.01  # keep low-score boxes for mAP (COCO practice), not for the runtime
EXAMPLES = 8  # test images drawn in predictions_test.png
PREDICTIONS_PNG = "predictions_test.png"


@torch.no_grad()
def nms(
    boxes: torch.Tensor, scores: torch.Tensor, iou: float, max_dets: int, threshold: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One image's candidates ([K, 4], [K, C]) → kept boxes, scores, labels (class-aware)."""
    from torchvision.ops import batched_nms

    cand, label = torch.nonzero(scores > threshold, as_tuple=True)
    b, s = boxes[cand], scores[cand, label]
    keep = batched_nms(b, s, label, iou)[:max_dets]
    return b[keep], s[keep], label[keep]


class DetectionTrainer(Trainer):
    """The FCOS-style detector on a timm backbone, evaluated by COCO mAP."""

    task = "detection"
    # Measured on the synthetic scenes (README): light augmentation and batch 8 reach a higher
    # val mAP in the same CPU time than default augmentation or batch 16 / 4; pasting up to 32
    # objects per image (copy-paste) a higher one than 16, 8, 5, 3 or none (32 makes an epoch
    # ~10 % slower; 14 epochs of it beat 16 of 16).
    defaults = {
        "size": "320x240",
        "resize": "letterbox",
        "monitor": "val_map",
        "augment": "light",
        "batch_size": 8,
        "copy_paste": 32,
    }
    monitors = {
        "val_map": ("val_map", 1.0),
        "val_map50": ("val_map50", 1.0),
        "val_loss": ("val_loss", -1.0),
    }
    collate = staticmethod(collate)
    scanner = staticmethod(scan_detection)
    split_type = DetectionSplit
    data_table = staticmethod(detection_table)
    issue_kind = "box issue(s)"
    dataset_type = DetectionDataset
    make_augment = staticmethod(make_augment)
    pastes_objects = True

    def datasets(self, split: Any, spec: Any, store: Any, config: Any) -> dict[str, Any]:
        """The task's datasets, the training one pasting up to ``--copy-paste`` objects."""
        datasets = super().datasets(split, spec, store, config)
        datasets["train"].copy_paste = int(config.copy_paste)
        return datasets

    def make_spec(self, config: Any, split: DetectionSplit) -> ModelSpec:
        return ModelSpec(
            labels=tuple(split.labels),
            input_size=config.input_size,
            resize=config.resize,
            task="detection",
            detection=DetectionOptions(),
            pad_value=114,  # letterbox bars: mid-grey, as the augmentation's fill
        )

    def create_model(self, backbone: str, spec: Any, weights: Any, dropout: float = 0.0) -> Any:
        from edgevision.tasks.detect.model import create_detector

        return create_detector(backbone, spec.num_classes, spec.input_size, weights)

    def loss(self, run: Any, outputs: Any, targets: Any) -> tuple[Any, dict[str, float]]:
        from edgevision.tasks.detect.loss import detection_loss

        return detection_loss(run.model, outputs, targets)

    @torch.no_grad()
    def evaluate(self, run: Any, loader: Any) -> tuple[dict[str, float], dict[str, Any]]:
        from edgevision.tasks.detect.loss import detection_loss
        from edgevision.tasks.detect.model import DetectorExport

        spec, device = run.spec, run.ctx.device
        options = spec.detection
        model = run.eval_model.eval()
        export = DetectorExport(model, options.candidates)
        dataset = loader.dataset.dataset  # the Subset's DetectionDataset
        shard = loader.dataset.indices
        loss_sum, images, mine, offset = 0.0, 0, [], 0
        for x, y in loader:
            x, y = run.to_device(x, y)
            with torch.autocast(device.type, dtype=torch.float16, enabled=run.amp):
                outputs = tuple(o.float() for o in model(x))
                loss, _ = detection_loss(model, outputs, y)
                boxes, scores = export.select(outputs)  # the exported graph's decode, once
            loss_sum += float(loss) * len(x)
            images += len(x)
            for b, s in zip(boxes.float().cpu(), scores.float().cpu(), strict=True):
                kb, ks, kl = nms(
                    b, s, options.iou_threshold, options.max_detections, EVAL_SCORE_THRESHOLD
                )
                mine.append((shard[offset], kb.numpy(), ks.numpy(), kl.numpy()))
                offset += 1
        gathered = [row for part in dist_.gather_objects(run.ctx, mine) for row in part]
        totals = torch.tensor([loss_sum, float(images)], dtype=torch.float64, device=device)
        loss_sum, images = dist_.all_sum(run.ctx, totals).tolist()
        truths, preds, order = [], [], []
        for index, b, s, lab in sorted(gathered, key=lambda r: r[0]):
            _, sample = dataset.items[index]
            to_frame = box_transform(spec, sample.width, sample.height).to_frame
            truths.append(Truth(sample.boxes_array(), sample.labels_array()))
            preds.append(Detections(to_frame(b), s, lab))
            order.append(index)
        coco = coco_map(truths, preds, list(spec.labels), options.max_detections)
        fields = {
            "val_loss": loss_sum / max(1.0, images),
            "val_map": coco["map"],
            "val_map50": coco["map50"],
        }
        return fields, {"coco": coco, "indices": order, "truths": truths, "preds": preds}

    def summarize(self, run: Any, raw: dict, fields: dict[str, float], split: str) -> dict:
        run.scratch[split] = raw  # the report draws examples from the test predictions
        return {**raw["coco"], "loss": fields["val_loss"]}

    def epoch_text(self, e: dict[str, float]) -> str:
        return f"val mAP {100 * e['val_map']:.1f}  mAP50 {100 * e['val_map50']:.1f}"

    def final_text(self, metrics: dict[str, Any]) -> str:
        v, t = metrics["val"], metrics["test"]
        return (
            f"val mAP@[.5:.95] {100 * v['map']:.1f} (mAP@.5 {100 * v['map50']:.1f}), "
            f"test mAP@[.5:.95] {100 * t['map']:.1f} (mAP@.5 {100 * t['map50']:.1f})"
        )

    def headline(self) -> list[tuple[str, str, Any]]:
        return [
            ("val_map", "val mAP@[.5:.95]", lambda m: m["val"]["map"]),
            ("test_map", "test mAP@[.5:.95]", lambda m: m["test"]["map"]),
            ("test_map50", "test mAP@.5", lambda m: m["test"]["map50"]),
        ]

    def write_report(self, run: Any, metrics: dict[str, Any], history: list[dict]) -> None:
        from edgevision.tasks.detect.report import prediction_grid, write_detection_report

        split, run_dir = run.split, run.config.run_dir
        write_detection_report(run_dir, metrics, split.labels, history, split.skipped, split.issues)
        test = run.scratch.get("test")
        if test and test["indices"]:
            dataset = run.datasets["test"]
            picks = range(min(EXAMPLES, len(test["indices"])))
            images = [dataset.raw(test["indices"][i])[0] for i in picks]
            prediction_grid(
                images,
                [test["truths"][i] for i in picks],
                [test["preds"][i] for i in picks],
                split.labels,
                run_dir / PREDICTIONS_PNG,
                score_threshold=run.spec.detection.score_threshold,
            )


TRAINER = DetectionTrainer()
