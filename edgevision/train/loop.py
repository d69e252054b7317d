"""The training loop: `train(config) -> TrainResult`, the same for every task.

One run: scan and split the data, build the backbone with a fresh head, freeze by strategy,
train with early stopping on a validation metric, keep the best weights, evaluate them on val
and test, and write the report. Works as one process or one rank of ``torchrun`` (DDP). What
differs between tasks (data, model, loss, metrics, report) comes from the task's `Trainer`
(`edgevision.tasks.training`), looked up by ``config.task``.

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

import torch

from edgevision.data.dataset import ImageStore
from edgevision.errors import EdgeVisionError, OutputError
from edgevision.fileio import atomic_write_json, check_output_file
from edgevision.spec import ModelSpec
from edgevision.tasks import get_task
from edgevision.tasks.classify.train import macro_f1  # noqa: F401  (re-exported)
from edgevision.tasks.training import Trainer
from edgevision.train import distributed as dist_
from edgevision.train.checkpoint import BEST, LAST, read_checkpoint, save_checkpoint
from edgevision.train.config import TrainConfig, TrainResult, default_threads
from edgevision.train.data import eval_loader, train_loader
from edgevision.train.freeze import apply_freeze, frozen_norms, parse_freeze, set_train_mode
from edgevision.train.optim import make_optimizer, make_scheduler
from edgevision.train.progress import NullLog, make_log
from edgevision.train.report import comparison_table

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
    trainer: Trainer
    ctx: dist_.DistContext
    log: NullLog
    split: Any  # the task's split (classification: Split, detection: DetectionSplit)
    spec: ModelSpec
    model: torch.nn.Module  # the bare model (DDP shares its parameters)
    net: torch.nn.Module  # what the loop calls: DDP-wrapped when distributed
    datasets: dict[str, Any]
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
    scratch: dict[str, Any] = field(default_factory=dict)  # the task's, e.g. test predictions

    def to_device(self, x: torch.Tensor, y: Any) -> tuple[torch.Tensor, Any]:
        """A batch on the run's device: images channels-last; targets a tensor or dicts."""
        device = self.ctx.device
        x = x.to(device, non_blocking=True, memory_format=_MEMORY_FORMAT)
        if isinstance(y, torch.Tensor):
            return x, y.to(device, non_blocking=True)
        return x, [{k: v.to(device, non_blocking=True) for k, v in t.items()} for t in y]


def train(config: TrainConfig) -> TrainResult:
    """Train a model for ``config.task`` as ``config`` says; returns the run's metrics and files.

    ``config.task`` ``"auto"`` takes the task from the data's layout (a COCO or YOLO folder is
    detection); options left ``None`` take the task's defaults (input size, resize, monitor).

    Runs as one process, or as one rank of ``torchrun`` (each rank then trains on a shard of the
    data and only rank 0 writes). With ``config.compare_baseline`` a head-only run from the same
    weights is trained into ``RUN/baseline`` and both are reported side by side.
    """
    config = config.resolved()
    config.validate()
    get_task(config.task).training().check_monitor(config.monitor)
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
        saved.setdefault("copy_paste", 0)  # a run saved before --copy-paste pasted nothing
        overrides = {k: getattr(config, k) for k in RESUME_OVERRIDES}
        # .resolved(): a run saved before the task layer has no task (it is a classifier)
        config = TrainConfig.from_dict({**saved, **overrides}).resolved()
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


def _load_split(trainer: Trainer, config: TrainConfig, store: ImageStore) -> Any:
    if config.resume:
        return trainer.load_split(config.run_dir / SPLIT_JSON)
    return trainer.scan(config, store)


def _make_spec(trainer: Trainer, config: TrainConfig, split: Any) -> ModelSpec:
    if config.resume:
        return ModelSpec.from_dict(read_checkpoint(config.run_dir / LAST)["spec"])
    return trainer.make_spec(config, split)


def _build_model(
    trainer: Trainer, config: TrainConfig, spec: ModelSpec, log: NullLog
) -> torch.nn.Module:
    torch.manual_seed(config.seed)  # the new head's initial weights
    weights = None if config.resume else config.weights
    model = trainer.create_model(config.backbone, spec, weights, config.dropout)
    trainable, total = apply_freeze(model, config.freeze)
    source = {None: "random init", "default": "ImageNet weights"}.get(config.weights)
    log.info(
        f"model: {config.backbone} ({source or config.weights}), freeze {config.freeze}: "
        f"{trainable / 1e6:.2f}M of {total / 1e6:.2f}M parameters train"
    )
    return model


def _setup(config: TrainConfig, ctx: dist_.DistContext) -> _Run:
    log = make_log(config.quiet, ctx.is_main)
    trainer = get_task(config.task).training()
    _setup_threads(config, ctx)
    store = ImageStore(config.cache_mb << 20)
    split = _load_split(trainer, config, store)
    spec = _make_spec(trainer, config, split)
    trainer.announce(log, split)
    datasets = trainer.datasets(split, spec, store, config)
    # channels_last: oneDNN's and cuDNN's fast path for depthwise convs (~1.5x on 2 CPU cores)
    model = _build_model(trainer, config, spec, log)
    model = model.to(ctx.device, memory_format=_MEMORY_FORMAT)
    if ctx.is_main and not config.resume:  # only once the model takes the data's size
        split.save(config.run_dir / SPLIT_JSON)
        spec.save(config.run_dir / SPEC_JSON)
        atomic_write_json(config.run_dir / CONFIG_JSON, config.to_dict())
    run = _with_optimizer(config, trainer, ctx, log, split, spec, model, datasets)
    torch.manual_seed(config.seed + 7919 * ctx.rank)  # dropout: a different stream per rank
    if config.resume:
        _restore(run)
    log.info(
        f"device: {ctx.device} ×{ctx.world_size}, {torch.get_num_threads()} threads, "
        f"AMP {'on' if run.amp else 'off'}, {len(store)} images decoded in memory"
    )
    return run


def _with_optimizer(config, trainer, ctx, log, split, spec, model, datasets) -> _Run:
    """Wrap the model for DDP and add the optimiser, per-step scheduler and AMP scaler."""
    steps = len(train_loader(datasets["train"], config.batch_size, ctx, config.seed)[0])
    optimizer = make_optimizer(model, config)
    amp = ctx.device.type == "cuda" and config.amp is not False  # AMP is a GPU feature
    return _Run(
        config=config,
        trainer=trainer,
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


# ----------------------------------------------------------------------------- the loop


def _fit(run: _Run) -> None:
    config, p = run.config, run.progress
    collate = run.trainer.collate
    loader, sampler = train_loader(
        run.datasets["train"], config.batch_size, run.ctx, config.seed, config.workers, collate
    )
    val = eval_loader(run.datasets["val"], config.batch_size, run.ctx, config.workers, collate)
    while p.epoch < config.epochs and not p.stopped_early:
        sampler.set_epoch(p.epoch)
        run.datasets["train"].set_epoch(p.epoch)
        t0 = time.perf_counter()
        train_loss, parts, images = _train_epoch(run, loader)
        dist_.broadcast_buffers(run.ctx, run.eval_model)
        dist_.broadcast_buffers(run.ctx, run.model)
        fields, _ = run.trainer.evaluate(run, val)
        seconds = time.perf_counter() - t0
        entry = _history_entry(p.epoch + 1, train_loss, parts, fields, run, images / seconds)
        entry.update(seconds=seconds, train_images=images)
        p.history.append(entry)
        p.epoch += 1
        improved = _early_stopping(run, entry)
        _log_epoch(run, entry, improved)
        rngs = dist_.gather_objects(run.ctx, _rng_state(run.ctx))  # collective: every rank
        if run.ctx.is_main:
            _save_checkpoints(run, improved, rngs)
        dist_.barrier(run.ctx)


def _train_epoch(run: _Run, loader: Any) -> tuple[float, dict[str, float], int]:
    """Mean loss over the epoch's images, the mean of each named loss part, images seen."""
    set_train_mode(run.net, run.norms)
    device = run.ctx.device
    part_sums: dict[str, float] = {}
    with run.log.epoch(run.progress.epoch + 1, run.config.epochs, len(loader)) as bar:
        for x, y in loader:
            x, y = run.to_device(x, y)
            with torch.autocast(device.type, dtype=torch.float16, enabled=run.amp):
                loss, parts = run.trainer.loss(run, run.net(x), y)
            for name, value in parts.items():
                part_sums[name] = part_sums.get(name, 0.0) + value * len(x)
            run.optimizer.zero_grad(set_to_none=True)
            run.scaler.scale(loss).backward()
            run.scaler.step(run.optimizer)
            run.scaler.update()
            run.scheduler.step()
            if run.ema is not None:
                run.ema.update(run.model, step=run.scheduler.last_epoch)
            bar.step(len(x), float(loss.detach()))
    names = sorted(part_sums)
    values = [bar.loss_sum, float(bar.images), *(part_sums[n] for n in names)]
    totals = dist_.all_sum(run.ctx, torch.tensor(values, dtype=torch.float64, device=device))
    loss_sum, images, *sums = totals.tolist()
    parts = {n: v / max(1.0, images) for n, v in zip(names, sums, strict=True)}
    return loss_sum / max(1.0, images), parts, int(images)


def _history_entry(
    epoch: int,
    train_loss: float,
    parts: dict[str, float],
    fields: dict[str, float],
    run: _Run,
    rate: float,
) -> dict[str, float]:
    return {
        "epoch": epoch,
        "train_loss": float(train_loss),
        **{f"train_loss_{k}": float(v) for k, v in parts.items()},
        **{k: float(v) for k, v in fields.items()},
        "lr": float(run.optimizer.param_groups[0]["lr"]),
        "images_per_s": float(rate),
    }


def _early_stopping(run: _Run, entry: dict[str, float]) -> bool:
    """Update the best-so-far; True when this epoch is the new best. Same on every rank."""
    key_name, sign = run.trainer.monitors[run.config.monitor]
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
        f"val loss {e['val_loss']:.4f}  {run.trainer.epoch_text(e)}  "
        f"lr {e['lr']:.2e}  {e['images_per_s']:.0f} img/s  "
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
    collate = run.trainer.collate
    for name in ("val", "test"):
        loader = eval_loader(run.datasets[name], config.batch_size, ctx, config.workers, collate)
        fields, raw = run.trainer.evaluate(run, loader)
        metrics[name] = run.trainer.summarize(run, raw, fields, name)
    wall = setup_and_fit_s + time.perf_counter() - t0
    metrics["run"] = _run_summary(run, wall)
    if ctx.is_main:
        run.trainer.write_report(run, metrics, p.history)
        run.log.info(
            f"[bold]best epoch {p.best_epoch}[/]: {run.trainer.final_text(metrics)} — "
            f"{config.run_dir / BEST} ({wall:.1f} s)"
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
        "task": config.task,
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
        "input_size": list(run.spec.input_size),
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
        headline = get_task(effective.task).training().headline()
        log.table(comparison_table(runs, "before / after fine-tuning", headline))
        table = {}
        for name, r in runs.items():
            values = {key: get(r.metrics) for key, _, get in headline}
            table[name] = r.metrics["run"] | values
        atomic_write_json(main.run_dir / COMPARISON_JSON, table)
    return result
