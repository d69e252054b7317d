"""`edgevision train DATA --out RUN`: fine-tune a pretrained backbone on labelled images."""

from __future__ import annotations

from pathlib import Path

import typer

HELP = """Fine-tune a classifier or a detector on DATA and write RUN/ (checkpoints + ModelSpec +
report).

Classification: DATA is an ImageFolder (one sub-folder per class), DATA/train + DATA/val +
DATA/test folders, or a CSV manifest of path,label rows. Detection: DATA is a COCO folder
(images/ + annotations.json, or DATA/{train,val,test}/ each with its own) or a YOLO folder
(images/ + labels/*.txt + data.yaml or classes.txt); --task auto picks detection for these.
Unreadable images and bad labels are skipped, counted and listed in the report.

Multi-GPU: torchrun --nproc_per_node=N -m edgevision train DATA --out RUN"""


def _ratios(text: str) -> tuple[float, ...]:
    from edgevision.errors import EdgeVisionError

    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise EdgeVisionError(
            f"--split {text!r} is not three numbers", "write train,val,test e.g. 0.7,0.15,0.15"
        ) from None


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    from edgevision.train.config import TrainConfig as D  # light: defaults only, no torch

    split_default = ",".join(f"{r:g}" for r in D.split)

    @app.command("train", help=HELP)
    def train_cmd(
        ctx: typer.Context,
        data: Path = typer.Argument(..., help="ImageFolder, split folders or path,label CSV."),
        out: Path = typer.Option(D.out, "--out", "-o", help="Run folder to write."),
        task: str = typer.Option(D.task, help="auto (from DATA), classification or detection."),
        backbone: str = typer.Option(D.backbone, help="efficientnet_lite0 or any timm name."),
        weights: str = typer.Option(
            D.weights, help="default (ImageNet), none (from scratch) or a .pt/.safetensors file."
        ),
        size: str | None = typer.Option(
            D.size,
            help="Input size: pixels (square) or WIDTHxHEIGHT. Default: classification 128, "
            "detection 320x240.",
        ),
        resize: str | None = typer.Option(
            D.resize,
            help="stretch, letterbox or center_crop. Default: classification stretch, detection "
            "letterbox.",
        ),
        freeze: str = typer.Option(D.freeze, help="full, head, or last:N (last N stages+head)."),
        dropout: float = typer.Option(D.dropout, help="Dropout before the new head."),
        optimizer: str = typer.Option(D.optimizer, help="adamw or sgd."),
        lr: float = typer.Option(D.lr, help="Peak learning rate (of the head)."),
        backbone_lr_scale: float = typer.Option(
            D.backbone_lr_scale, help="Backbone learning rate = lr × this."
        ),
        weight_decay: float = typer.Option(D.weight_decay, help="Weight decay."),
        momentum: float = typer.Option(D.momentum, help="SGD momentum."),
        batch_size: int | None = typer.Option(
            D.batch_size,
            help="Images per batch (per GPU). Default: classification 32, detection 8.",
        ),
        epochs: int = typer.Option(D.epochs, help="Maximum epochs."),
        schedule: str = typer.Option(D.schedule, help="cosine or step."),
        warmup_epochs: float = typer.Option(D.warmup_epochs, "--warmup", help="Warm-up epochs."),
        step_size: int = typer.Option(D.step_size, help="step schedule: epochs per decay."),
        gamma: float = typer.Option(D.gamma, help="step schedule: decay factor."),
        label_smoothing: float = typer.Option(D.label_smoothing, help="Label smoothing."),
        ema: float = typer.Option(D.ema, help="Weight moving-average decay (0: off)."),
        augment: str | None = typer.Option(
            D.augment,
            help="none, light, default or strong (classification: default, detection: light).",
        ),
        hflip: bool = typer.Option(D.hflip, help="Random horizontal flips (not for signs!)."),
        copy_paste: int | None = typer.Option(
            D.copy_paste,
            help="Detection: paste up to N objects from other training images into each "
            "training image (default 32; 0: off).",
        ),
        split: str = typer.Option(split_default, help="train,val,test ratios."),
        seed: int = typer.Option(D.seed, help="Seed of the split, order and augmentation."),
        patience: int = typer.Option(D.patience, help="Early-stopping patience (0: off)."),
        monitor: str | None = typer.Option(
            D.monitor,
            help="Early-stopping metric. Classification: val_acc (default), val_f1, val_loss; "
            "detection: val_map (default, mAP@[.5:.95]), val_map50, val_loss.",
        ),
        resume: bool = typer.Option(D.resume, help="Continue RUN from its last checkpoint."),
        overwrite: bool = typer.Option(D.overwrite, help="Replace an existing run in RUN."),
        compare_baseline: bool = typer.Option(
            D.compare_baseline, help="Also train head-only; report both side by side."
        ),
        device: str = typer.Option(D.device, help="auto, cpu or cuda."),
        amp: bool | None = typer.Option(D.amp, help="Mixed precision (GPU; default on)."),
        threads: int | None = typer.Option(D.threads, help="CPU threads (default: all cores)."),
        workers: int = typer.Option(D.workers, help="Data-loader worker processes."),
        cache_mb: int = typer.Option(D.cache_mb, help="Memory for decoded images (MiB)."),
        quiet: bool = typer.Option(D.quiet, "--quiet", "-q", help="Plain logs, no bars."),
    ) -> None:
        import os

        from rich.console import Console

        from edgevision.train import TrainConfig, train

        params = dict(ctx.params)
        params["weights"] = None if weights.lower() == "none" else weights
        params["split"] = _ratios(split)
        result = train(TrainConfig(**params))
        if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 speaks
            Console(no_color=quiet).print(f"next: [bold]edgevision build {result.run_dir}[/]")
