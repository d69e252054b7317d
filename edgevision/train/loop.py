"""The training loop: `train(config) -> TrainResult`.

One run: scan and split the data, build the backbone with a fresh head, freeze by strategy,
train with early stopping on a validation metric, keep the best weights, evaluate them on val
and test, and write the report. Works as one process or one rank of ``torchrun`` (DDP).

Reproducibility: data order is a function of (seed, epoch), augmentation of (seed, epoch,
index), and dropout draws from each rank's torch generator, whose state is saved in every
checkpoint; two CPU runs with the same seed and data end with identical weights, and a resumed
run continues exactly where the interrupted one stopped.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from edgevision.data.dataset import ImageStore, balance_table, scan_dataset
from edgevision.data.split import Split
from edgevision.errors import EdgeVisionError, OutputError
from edgevision.fileio import atomic_write_json, check_output_file
from edgevision.spec import ModelSpec
from edgevision.train import distributed as dist_
from edgevision.train.augment import Augmenter
from edgevision.train.backbones import create_model
from edgevision.train.checkpoint import BEST, LAST, read_checkpoint, save_checkpoint
from edgevision.train.config import TrainConfig, TrainResult, default_threads
from edgevision.train.data import ImageDataset, eval_loader, make_datasets, train_loader
from edgevision.train.freeze import apply_freeze, frozen_norms, parse_freeze, set_train_mode
from edgevision.train.optim import make_optimizer, make_scheduler
from edgevision.train.progress import NullLog, make_log
from edgevision.train.report import comparison_table, summarize, write_report

SPLIT_JSON = "split.json"
SPEC_JSON = "spec.json"
CONFIG_JSON = "config.json"
COMPARISON_JSON = "comparison.json"
BASELINE_DIR = "baseline"
# Options that may change when a run is resumed; everything else comes from the checkpoint.
RESUME_OVERRIDES = (
    "out", "resume", "overwrite", "device", "amp", "threads", "workers", "cache_mb", "quiet",
    "epochs", "patience", "compare_baseline",
)  # fmt: skip
_MEMORY_FORMAT = torch.channels_last
# monitor → (history key, +1 if higher is better else -1)
MONITORS = {"val_acc": ("val_acc", 1.0), "val_f1": ("val_f1", 1.0), "val_loss": ("val_loss", -1.0)}


@dataclass
class _Progress:
    """Where training stands: saved in the last checkpoint, restored by ``--resume``."""

    epoch: int = 0  # epochs completed
    history: list[dict[str, float]] = field(default_factory=list)
    best_key: list[float] | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped_early: bool = False


@dataclass
class _Run:
    """The pieces of one run, built once by `_setup`."""

    config: TrainConfig
    ctx: dist_.DistContext
    log: NullLog
    split: Split
    spec: ModelSpec
    model: torch.nn.Module  # the bare model (DDP shares its parameters)
    net: torch.nn.Module  # what the loop calls: DDP-wrapped when distributed
    datasets: dict[str, ImageDataset]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Any
    amp: bool
    progress: _Progress

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights that are evaluated and kept: the moving average when EMA is on."""
        return self.ema.module if self.ema is not None else self.model

    ema: Any = None  # timm ModelEmaV3 when --ema is on: evaluated, kept as the best weights
    best_state: dict[str, torch.Tensor] | None = None
    norms: list[torch.nn.Module] = field(default_factory=list)


def train(config: TrainConfig) -> TrainResult:
    """Train a classifier as ``config`` says; returns the run's metrics and files.

    Runs as one process, or as one rank of ``torchrun`` (each rank then trains on a shard of the
    data and only rank 0 writes). With ``config.compare_baseline`` a head-only run from the same
    weights is trained into ``RUN/baseline`` and both are reported side by side.
    """
    config.validate()
    if config.compare_baseline and parse_freeze(config.freeze).stages == 0:
        raise EdgeVisionError(
            "--compare-baseline compares fine-tuning against head-only training",
            "use it with --freeze full or last:N",
        )
    ctx = dist_.setup(config.device)
    try:
        result = _train_one(config, ctx)
        if config.compare_baseline:
            result.baseline = _train_baseline(config, ctx, result)
        return result
    finally:
        dist_.cleanup(ctx)


def _train_one(config: TrainConfig, ctx: dist_.DistContext) -> TrainResult:
    start = time.perf_counter()
    config = _prepare_run_dir(config, ctx)
    run = _setup(config, ctx)
    try:
        _fit(run)
    except KeyboardInterrupt:
        run.log.info(
            f"[yellow]interrupted after epoch {run.progress.epoch}[/]: continue with "
            f"`edgevision train {config.data} --out {config.out} --resume`"
        )
        raise
    return _finish(run, time.perf_counter() - start)


# ----------------------------------------------------------------------------- setting up


def _prepare_run_dir(config: TrainConfig, ctx: dist_.DistContext) -> TrainConfig:
    """Refuse to clobber a run by accident; with --resume, take the run's own config."""
    run_dir = config.run_dir
    if run_dir.exists() and not run_dir.is_dir():
        raise OutputError(
            f"--out {run_dir} is a file; a run is a folder", f"choose e.g. --out {run_dir}-run"
        )
    has_run = (run_dir / LAST).exists() or (run_dir / BEST).exists()
    if config.resume:
        if not (run_dir / LAST).exists():
            raise EdgeVisionError(
                f"--resume: {run_dir / LAST} does not exist", "start the run without --resume"
            )
        saved = read_checkpoint(run_dir / LAST)["config"]
        overrides = {k: getattr(config, k) for k in RESUME_OVERRIDES}
        config = TrainConfig.from_dict({**saved, **overrides})
        config.validate()
    elif has_run and not config.overwrite:
        raise EdgeVisionError(
            f"{run_dir} already holds a training run",
            "pass --resume to continue it, --overwrite to replace it, or another --out",
        )
    dist_.barrier(ctx)  # every rank has looked before rank 0 changes anything
    if ctx.is_main:
        check_output_file(run_dir / CONFIG_JSON, "--out")  # creates the folder, probes it
        if config.overwrite:
            for name in (LAST, BEST):
                (run_dir / name).unlink(missing_ok=True)
    return config


def _setup_threads(config: TrainConfig, ctx: dist_.DistContext) -> None:
    import os

    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world_size))
    threads = config.threads or max(1, default_threads() // max(1, local_world))
    torch.set_num_threads(threads)
    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def _load_split(config: TrainConfig, store: ImageStore) -> Split:
    if config.resume:
        return Split.load(config.run_dir / SPLIT_JSON)
    return scan_dataset(config.data, config.split, config.seed, store)


def _make_spec(config: TrainConfig, split: Split) -> ModelSpec:
    if config.resume:
        return ModelSpec.from_dict(read_checkpoint(config.run_dir / LAST)["spec"])
    return ModelSpec(
        labels=tuple(split.labels), input_size=(config.size,) * 2, resize=config.resize
    )


def _build_model(config: TrainConfig, spec: ModelSpec, log: NullLog) -> torch.nn.Module:
    torch.manual_seed(config.seed)  # the new head's initial weights
    weights = None if config.resume else config.weights
    model = create_model(
        config.backbone, spec.num_classes, weights, config.dropout, img_size=spec.input_size
    )
    trainable, total = apply_freeze(model, config.freeze)
    source = {None: "random init", "default": "ImageNet weights"}.get(config.weights)
    log.info(
        f"model: {config.backbone} ({source or config.weights}), freeze {config.freeze}: "
        f"{trainable / 1e6:.2f}M of {total / 1e6:.2f}M parameters train"
    )
    return model


def _setup(config: TrainConfig, ctx: dist_.DistContext) -> _Run:
    log = make_log(config.quiet, ctx.is_main)
    _setup_threads(config, ctx)
    store = ImageStore(config.cache_mb << 20)
    split = _load_split(config, store)
    spec = _make_spec(config, split)
    _announce_data(log, split)
    augment = Augmenter(config.augment, config.hflip)
    datasets = make_datasets(split, spec, store, augment, config.seed)
    # channels_last: oneDNN's and cuDNN's fast path for depthwise convs (~1.5x on 2 CPU cores)
    model = _build_model(config, spec, log).to(ctx.device, memory_format=_MEMORY_FORMAT)
    if ctx.is_main and not config.resume:  # only once the model takes the data's size
        split.save(config.run_dir / SPLIT_JSON)
        spec.save(config.run_dir / SPEC_JSON)
        atomic_write_json(config.run_dir / CONFIG_JSON, config.to_dict())
    run = _with_optimizer(config, ctx, log, split, spec, model, datasets)
    torch.manual_seed(config.seed + 7919 * ctx.rank)  # dropout: a different stream per rank
    if config.resume:
        _restore(run)
    log.info(
        f"device: {ctx.device} ×{ctx.world_size}, {torch.get_num_threads()} threads, "
        f"AMP {'on' if run.amp else 'off'}, {len(store)} images decoded in memory"
    )
    return run


def _with_optimizer(config, ctx, log, split, spec, model, datasets) -> _Run:
    """Wrap the model for DDP and add the optimiser, per-step scheduler and AMP scaler."""
    steps = len(train_loader(datasets["train"], config.batch_size, ctx, config.seed)[0])
    optimizer = make_optimizer(model, config)
    amp = ctx.device.type == "cuda" and config.amp is not False  # AMP is a GPU feature
    return _Run(
        config=config,
        ctx=ctx,
        log=log,
        split=split,
        spec=spec,
        model=model,
        net=_wrap(model, ctx),
        datasets=datasets,
        optimizer=optimizer,
        scheduler=make_scheduler(optimizer, config, steps),
        scaler=torch.amp.GradScaler(ctx.device.type, enabled=amp),
        amp=amp,
        progress=_Progress(),
        norms=frozen_norms(model),
        ema=_make_ema(model, config.ema),
    )


def _make_ema(model: torch.nn.Module, decay: float) -> Any:
    if decay <= 0:
        return None
    from timm.utils import ModelEmaV3

    # warm-up: early on the average follows the model closely, as there is little to average
    return ModelEmaV3(model, decay=decay, use_warmup=True)


def _wrap(model: torch.nn.Module, ctx: dist_.DistContext) -> torch.nn.Module:
    if not ctx.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def _announce_data(log: NullLog, split: Split) -> None:
    sizes = ", ".join(f"{k} {len(v)}" for k, v in split.items.items())
    log.info(f"data: {split.root} — {len(split.labels)} classes, {sizes}")
    log.table(balance_table(split))
    if split.skipped:
        log.info(f"[yellow]skipped {len(split.skipped)} unusable file(s)[/] (see report.txt):")
        for item in split.skipped[:10]:
            log.info(f"  {item['path']}: {item['reason']}")


# ----------------------------------------------------------------------------- the loop


def _fit(run: _Run) -> None:
    config, p = run.config, run.progress
    loader, sampler = train_loader(
        run.datasets["train"], config.batch_size, run.ctx, config.seed, config.workers
    )
    val = eval_loader(run.datasets["val"], config.batch_size, run.ctx, config.workers)
    while p.epoch < config.epochs and not p.stopped_early:
        sampler.set_epoch(p.epoch)
        run.datasets["train"].set_epoch(p.epoch)
        t0 = time.perf_counter()
        train_loss, images = _train_epoch(run, loader)
        dist_.broadcast_buffers(run.ctx, run.eval_model)
        dist_.broadcast_buffers(run.ctx, run.model)
        cm, val_loss = _evaluate(run, val)
        seconds = time.perf_counter() - t0
        entry = _history_entry(p.epoch + 1, train_loss, cm, val_loss, run, images / seconds)
        entry.update(seconds=seconds, train_images=images)
        p.history.append(entry)
        p.epoch += 1
        improved = _early_stopping(run, entry)
        _log_epoch(run, entry, improved)
        rngs = dist_.gather_objects(run.ctx, _rng_state(run.ctx))  # collective: every rank
        if run.ctx.is_main:
            _save_checkpoints(run, improved, rngs)
        dist_.barrier(run.ctx)


def _to_device(x: torch.Tensor, y: torch.Tensor, device: torch.device):
    x = x.to(device, non_blocking=True, memory_format=_MEMORY_FORMAT)
    return x, y.to(device, non_blocking=True)


def _train_epoch(run: _Run, loader: Any) -> tuple[float, int]:
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=run.config.label_smoothing)
    set_train_mode(run.net, run.norms)
    device = run.ctx.device
    with run.log.epoch(run.progress.epoch + 1, run.config.epochs, len(loader)) as bar:
        for x, y in loader:
            x, y = _to_device(x, y, device)
            with torch.autocast(device.type, dtype=torch.float16, enabled=run.amp):
                loss = criterion(run.net(x), y)
            run.optimizer.zero_grad(set_to_none=True)
            run.scaler.scale(loss).backward()
            run.scaler.step(run.optimizer)
            run.scaler.update()
            run.scheduler.step()
            if run.ema is not None:
                run.ema.update(run.model, step=run.scheduler.last_epoch)
            bar.step(len(y), float(loss.detach()))
    totals = torch.tensor([bar.loss_sum, float(bar.images)], dtype=torch.float64, device=device)
    loss_sum, images = dist_.all_sum(run.ctx, totals).tolist()
    return loss_sum / max(1.0, images), int(images)


@torch.no_grad()
def _evaluate(run: _Run, loader: Any) -> tuple[np.ndarray, float]:
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
        x, y = _to_device(x, y, device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=run.amp):
            logits = model(x).float()
        loss += criterion(logits, y).double()
        cm += torch.bincount(y * n + logits.argmax(1), minlength=n * n).double()
    dist_.all_sum(run.ctx, cm)
    dist_.all_sum(run.ctx, loss)
    cm_np = cm.view(n, n).cpu().numpy().round().astype(np.int64)
    return cm_np, float(loss.item()) / max(1, int(cm_np.sum()))


def macro_f1(cm: np.ndarray) -> float:
    """Macro-averaged F1 from a confusion matrix (classes without samples count as 0)."""
    tp = np.diag(cm).astype(float)
    denom = cm.sum(0) + cm.sum(1)
    return float(np.mean(np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)))


def _history_entry(epoch, train_loss, cm, val_loss, run: _Run, rate: float) -> dict[str, float]:
    return {
        "epoch": epoch,
        "train_loss": float(train_loss),
        "val_loss": float(val_loss),
        "val_acc": float(np.trace(cm) / max(1, cm.sum())),
        "val_f1": macro_f1(cm),
        "lr": float(run.optimizer.param_groups[0]["lr"]),
        "images_per_s": float(rate),
    }


def _early_stopping(run: _Run, entry: dict[str, float]) -> bool:
    """Update the best-so-far; True when this epoch is the new best. Same on every rank."""
    key_name, sign = MONITORS[run.config.monitor]
    # Ties on the monitored metric (accuracy saturates on small val sets) go to the lower loss.
    key = [sign * entry[key_name], -entry["val_loss"]]
    p = run.progress
    improved = p.best_key is None or key > p.best_key
    if improved:
        p.best_key, p.best_epoch, p.bad_epochs = key, int(entry["epoch"]), 0
        state = run.eval_model.state_dict()
        run.best_state = {k: v.detach().clone() for k, v in state.items()}
    else:
        p.bad_epochs += 1
        p.stopped_early = 0 < run.config.patience <= p.bad_epochs
    return improved


def _log_epoch(run: _Run, e: dict[str, float], improved: bool) -> None:
    mark = "  [green]★ best[/]" if improved else ""
    stop = "  [yellow]early stop[/]" if run.progress.stopped_early else ""
    run.log.info(
        f"epoch {int(e['epoch'])}/{run.config.epochs}  train loss {e['train_loss']:.4f}  "
        f"val loss {e['val_loss']:.4f}  val top-1 {100 * e['val_acc']:.2f}%  "
        f"F1 {e['val_f1']:.4f}  lr {e['lr']:.2e}  {e['images_per_s']:.0f} img/s  "
        f"{e['seconds']:.1f} s{mark}{stop}"
    )


# ----------------------------------------------------------------------------- checkpoints


def _rng_state(ctx: dist_.DistContext) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if ctx.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(ctx.device).cpu()
    return state


def _save_checkpoints(run: _Run, improved: bool, rngs: list[dict[str, Any]]) -> None:
    """BEST when this epoch improved, LAST always (atomic writes, rank 0 only)."""
    config, p = run.config, run.progress
    common = {"epoch": p.epoch, "metrics": p.history[-1]}
    if improved:
        save_checkpoint(
            config.run_dir / BEST,
            run.eval_model,
            run.spec,
            config.backbone,
            config.to_dict(),
            **common,
        )
    save_checkpoint(
        config.run_dir / LAST, run.model, run.spec, config.backbone, config.to_dict(),
        **common,
        optimizer=run.optimizer.state_dict(),
        scheduler=run.scheduler.state_dict(),
        scaler=run.scaler.state_dict(),
        progress=dataclasses.asdict(p),
        rng=rngs,
        ema=run.ema.module.state_dict() if run.ema is not None else None,
    )  # fmt: skip


def _restore(run: _Run) -> None:
    """Load model, optimiser, scheduler, scaler, progress and RNG state from LAST (all ranks)."""
    payload = read_checkpoint(run.config.run_dir / LAST)
    run.model.load_state_dict(payload["state_dict"])
    if run.ema is not None and payload.get("ema") is not None:
        run.ema.module.load_state_dict(payload["ema"])
    run.optimizer.load_state_dict(payload["optimizer"])
    run.scheduler.load_state_dict(payload["scheduler"])
    run.scaler.load_state_dict(payload["scaler"])
    run.progress = _Progress(**payload["progress"])
    rngs = payload.get("rng") or []
    if len(rngs) == run.ctx.world_size:  # a different world size starts fresh generators
        torch.set_rng_state(rngs[run.ctx.rank]["torch"])
        if "cuda" in rngs[run.ctx.rank] and run.ctx.device.type == "cuda":
            torch.cuda.set_rng_state(rngs[run.ctx.rank]["cuda"], run.ctx.device)
    if (run.config.run_dir / BEST).exists():
        run.best_state = read_checkpoint(run.config.run_dir / BEST)["state_dict"]
    run.log.info(f"resumed {run.config.run_dir} after epoch {run.progress.epoch}")


# ----------------------------------------------------------------------------- the end


def _finish(run: _Run, setup_and_fit_s: float) -> TrainResult:
    """Evaluate the best weights on val and test; rank 0 writes the report."""
    t0 = time.perf_counter()
    config, p, ctx = run.config, run.progress, run.ctx
    if run.best_state is not None:
        run.eval_model.load_state_dict(run.best_state)
    metrics: dict[str, Any] = {}
    for name in ("val", "test"):
        loader = eval_loader(run.datasets[name], config.batch_size, ctx, config.workers)
        cm, loss = _evaluate(run, loader)
        metrics[name] = summarize(cm, run.split.labels, loss)
    wall = setup_and_fit_s + time.perf_counter() - t0
    metrics["run"] = _run_summary(run, wall)
    if ctx.is_main:
        write_report(config.run_dir, metrics, run.split.labels, p.history, run.split.skipped)
        run.log.info(
            f"[bold]best epoch {p.best_epoch}[/]: val top-1 {100 * metrics['val']['top1']:.2f}%, "
            f"test top-1 {100 * metrics['test']['top1']:.2f}% — {config.run_dir / BEST} "
            f"({wall:.1f} s)"
        )
    dist_.barrier(ctx)
    return TrainResult(
        run_dir=config.run_dir,
        best_checkpoint=config.run_dir / BEST,
        labels=list(run.split.labels),
        metrics=metrics,
        history=list(p.history),
        best_epoch=p.best_epoch,
        epochs_run=p.epoch,
        stopped_early=p.stopped_early,
        wall_s=wall,
        skipped=list(run.split.skipped),
        config=config.to_dict(),
        model=run.eval_model.eval(),
    )


def _run_summary(run: _Run, wall: float) -> dict[str, Any]:
    config, p = run.config, run.progress
    return {
        "backbone": config.backbone,
        "freeze": config.freeze,
        "weights": config.weights,
        "size": config.size,
        "epochs_run": p.epoch,
        "best_epoch": p.best_epoch,
        "stopped_early": p.stopped_early,
        "wall_s": wall,
        "train_s": sum(h["seconds"] for h in p.history),  # all sessions of a resumed run
        "world_size": run.ctx.world_size,
        "device": str(run.ctx.device),
        "threads": torch.get_num_threads(),
        "images": {k: len(v) for k, v in run.split.items.items()},
        "skipped": len(run.split.skipped),
    }


def _train_baseline(config: TrainConfig, ctx: dist_.DistContext, main: TrainResult) -> TrainResult:
    """Head-only training from the same weights into RUN/baseline; print both side by side."""
    base_dir = main.run_dir / BASELINE_DIR
    resume = config.resume and (base_dir / LAST).exists()
    effective = TrainConfig.from_dict(main.config)
    base = dataclasses.replace(
        effective,
        freeze="head",
        out=str(base_dir),
        compare_baseline=False,
        resume=resume,
        overwrite=not resume,  # the baseline belongs to this run: a new run replaces it
    )
    log = make_log(config.quiet, ctx.is_main)
    log.info(f"[bold]baseline[/]: head-only training from the same weights → {base_dir}")
    result = _train_one(base, ctx)
    runs = {"head only": result, f"fine-tuned ({effective.freeze})": main}
    if ctx.is_main:
        log.table(comparison_table(runs, "before / after fine-tuning"))
        atomic_write_json(
            main.run_dir / COMPARISON_JSON,
            {name: r.metrics["run"] | {"val_top1": r.val_top1, "test_top1": r.test_top1}
             for name, r in runs.items()},
        )  # fmt: skip
    return result
