"""The main job end to end on embedded defaults: what `edgevision demo` (and `make demo`) runs.

data → train → build → profile → run, each stage a call into the public API, for the task in
``DemoConfig.task``: ``detection`` (the default: road scenes with several signs → the detector
→ INT8 → profile → the clip run with tracking, scored against its ground truth with MOTA and
IDF1) or ``classification`` (road-sign crops → the classifier; the clip's per-frame label).
Every stage writes a record (``OUT/stages/<stage>.json``) with its settings, results and wall
time; a re-run reuses a stage whose record matches its settings and whose outputs still exist,
unless ``fresh``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from edgevision.errors import EdgeVisionError
from edgevision.fileio import atomic_write_json


@dataclass
class DemoConfig:
    """The demo's settings; the defaults fit a 2-core CPU in well under 15 minutes."""

    out: Path = Path("demo")
    task: str = "detection"  # or "classification", "segmentation"
    seed: int = 0
    per_class: int = 100  # classification: images per class
    scenes: int = 600  # detection: road scenes (0-5 signs each), split 70/15/15
    det_size: str = "320x240"  # detection: the model's input (WIDTHxHEIGHT)
    seg_size: str = "320x240"  # segmentation: the model's input and the scenes' size
    image_size: tuple[int, int] = (160, 120)  # (width, height), as the generator takes it
    clip_seconds: float = 20.0
    clip_fps: int = 15
    clip_size: tuple[int, int] = (320, 240)
    train_size: int = 128
    # None: the task's (DEFAULT_EPOCHS); with patience 6 (TrainConfig), early stopping may end
    # it sooner
    epochs: int | None = None
    freeze: str = "full"
    calib_size: int = 512
    # None: the task's (`BuildHooks.calibration_method`: percentile for the classifier, minmax
    # for the detector and the segmenter; why: the README and those hooks)
    method: str | None = None
    iterations: int = 300
    # None: 25 ms (the classifier, 128 px) or 50 ms (the detector, 320x240: INT8-cpu p50
    # ~10 ms, p99 ~27 ms with both cores shared)
    budget_ms: float | None = None
    percentile: str = "p99"
    smooth: int = 3
    threads: int = 0
    fresh: bool = False
    quiet: bool = False


@dataclass
class StageRecord:
    """One finished stage: its settings key, outputs, results and wall time."""

    name: str
    key: str
    outputs: list[str]
    result: dict[str, Any]
    seconds: float
    reused: bool = False


@dataclass
class DemoResult:
    """Every stage's record, in order, and the total wall time."""

    out: Path
    stages: list[StageRecord] = field(default_factory=list)
    seconds: float = 0.0

    def stage(self, name: str) -> dict[str, Any]:
        """The result dict of one stage."""
        return next(s.result for s in self.stages if s.name == name)


# -- the stages --------------------------------------------------------------------------------
# Each takes the config and the results so far, and returns (outputs, result).
StageFn = Callable[[DemoConfig, Console, dict[str, dict[str, Any]]], tuple[list[Path], dict]]


def stage_data(cfg: DemoConfig, console: Console, _: dict) -> tuple[list[Path], dict]:
    """The synthetic road-sign dataset and the dash-cam clip with its ground truth."""
    from edgevision.data.synth import CLASSES, generate_dataset

    data = generate_dataset(
        cfg.out / "data", per_class=cfg.per_class, seed=cfg.seed, size=cfg.image_size
    )
    clip = _clip(cfg)
    images = len(CLASSES) * cfg.per_class
    return [data, clip], {"data": str(data), "clip": str(clip), "images": images}


def stage_train(cfg: DemoConfig, console: Console, done: dict) -> tuple[list[Path], dict]:
    """Fine-tune the shipped EfficientNet-Lite0 on the road signs."""
    result = _train(cfg, done, size=cfg.train_size)
    return [result.best_checkpoint], {
        "run": str(result.run_dir),
        "val_top1": result.val_top1,
        "test_top1": result.test_top1,
        "epochs": result.epochs_run,
        "best_epoch": result.best_epoch,
        "skipped_images": len(result.skipped),
    }


def _clip(cfg: DemoConfig) -> Path:
    """The dash-cam clip (with its ``<clip>.json`` ground truth) both tasks run on."""
    from edgevision.data.video import write_video

    return write_video(
        cfg.out / "clip.mp4",
        seconds=cfg.clip_seconds,
        fps=cfg.clip_fps,
        size=cfg.clip_size,
        seed=cfg.seed,
    )


def _train(cfg: DemoConfig, done: dict, **task_options: Any) -> Any:
    """`edgevision train` on the data stage's dataset into ``OUT/run``; ``task_options``: what
    differs per task (``size``, ``task``)."""
    from edgevision.train import TrainConfig, train

    return train(
        TrainConfig(
            data=done["data"]["data"],
            out=str(cfg.out / "run"),
            epochs=cfg.epochs or DEFAULT_EPOCHS[cfg.task],
            freeze=cfg.freeze,
            seed=cfg.seed,
            threads=cfg.threads or None,
            overwrite=True,
            quiet=cfg.quiet,
            **task_options,
        )
    )


def stage_build(cfg: DemoConfig, console: Console, done: dict) -> tuple[list[Path], dict]:
    """Export, calibrate, quantize (cpu + tensorrt Q/DQ) and verify into a bundle."""
    from edgevision.compile import BuildConfig, build_bundle
    from edgevision.compile.console import print_result, rich_tracker

    config = BuildConfig(
        input=Path(done["train"]["run"]),
        out=cfg.out / "bundle",
        calib_size=cfg.calib_size,
        method=cfg.method,
        threads=cfg.threads,
        seed=cfg.seed,
    )
    with rich_tracker(console) as track:
        result = build_bundle(config, track)
    if not cfg.quiet:
        print_result(console, result)
    accuracy = _accuracy(result.evaluation)
    return [result.out], {
        "bundle": str(result.out),
        "build_s": result.build_time_s,
        "accuracy": accuracy,
        "warnings": result.warnings,
    }


# Segmentation: 8 epochs on 600 scenes reach test mIoU > 0.80 in ~4 minutes on 2 cores; detection:
# 14 epochs with copy-paste 32 reach test mAP@.5 0.91 in ~10.5 minutes there (README).
DEFAULT_EPOCHS = {"classification": 20, "detection": 14, "segmentation": 8}
DEFAULT_BUDGET_MS = {"classification": 25.0, "detection": 50.0, "segmentation": 50.0}


def _accuracy(evaluation: Any) -> dict[str, dict[str, float]]:
    """{artifact: {"metric", "score", "drop", "agreement"}} in percent, from the build's
    evaluation (score: top-1, or a detector's mAP@[.5:.95]; mAP@.5 too for a detector)."""
    if evaluation is None:
        return {}
    out = {}
    for name in evaluation.predictions:
        out[name] = {
            "metric": evaluation.metric,
            "score": evaluation.score(name),
            "drop": evaluation.drop(name),
            "agreement": evaluation.agreement(name),
        }
        if hasattr(evaluation, "map50"):
            out[name]["map50"] = evaluation.map50(name)
    return out


def stage_profile(cfg: DemoConfig, console: Console, done: dict) -> tuple[list[Path], dict]:
    """FP32 vs INT8, interleaved, with the latency budget checked on the deployed artifact."""
    from edgevision.profile import check_budget, plot_report, profile_models
    from edgevision.profile.render import budget_text, report_table

    bundle = done["build"]["bundle"]
    report = profile_models(bundle, iterations=cfg.iterations, threads=cfg.threads)
    json_path, png = cfg.out / "profile.json", cfg.out / "profile.png"
    report.save(json_path)
    plot_report(report, png)
    budget = check_budget(report, cfg.budget_ms or DEFAULT_BUDGET_MS[cfg.task], cfg.percentile)
    if not cfg.quiet:
        console.print(report_table(report))
        console.print(budget_text(budget))
    stats = {
        m.key: {"p50": m.stats.p50, "p99": m.stats.p99}
        for m in report.measurements
        if m.ran and m.kind == "model" and m.batch == 1
    }
    return [json_path, png], {
        "json": str(json_path),
        "plot": str(png),
        "latency_ms": stats,
        "deployed": report.deployed,
        "budget_ok": budget.ok,
        "budget": f"{budget.key} {budget.percentile} {budget.value_ms:.2f} ms "
        f"{'within' if budget.ok else 'OVER'} {budget.budget_ms:g} ms",
    }


def stage_run(cfg: DemoConfig, console: Console, done: dict) -> tuple[list[Path], dict]:
    """The runtime on the dash-cam clip: events, an annotated video, agreement with the truth."""
    from edgevision.data.video import read_truth
    from edgevision.runtime import Pipeline, make_sink

    events, video = cfg.out / "events.jsonl", cfg.out / "annotated.mp4"
    clip = done["data"]["clip"]
    sinks = [make_sink("jsonl", events), make_sink("video", video)]
    summary = Pipeline(
        done["build"]["bundle"], clip, sinks=sinks, threads=cfg.threads, smooth=cfg.smooth
    ).run()
    agreement = clip_agreement(events, read_truth(clip))
    latency = summary.latency()
    return [events, video], {
        "events": str(events),
        "video": str(video),
        "frames": summary.frames_processed,
        "fps": summary.fps,
        "latency_p50_ms": latency["p50"],
        "latency_p99_ms": latency["p99"],
        "agreement": agreement,
    }


def clip_agreement(events_path: Path, truth: dict[str, Any]) -> float:
    """Fraction of the clip's frames whose event label equals the ground-truth label."""
    labels = {f["index"]: f["label"] for f in truth["frames"]}
    hits = total = 0
    with open(events_path, encoding="utf-8") as f:
        for line in f:
            event = json.loads(line)
            index = event["frame"]
            if index in labels:
                total += 1
                hits += event.get("label") == labels[index]
    if total == 0:
        raise EdgeVisionError(f"{events_path} has no events for the clip's frames")
    return hits / total


# -- detection's data, training and run ---------------------------------------------------------
def stage_data_detection(cfg: DemoConfig, console: Console, _: dict) -> tuple[list[Path], dict]:
    """Road scenes with 0-5 signs each (COCO JSON) and the dash-cam clip with every sign's box."""
    from edgevision.data.synth_detect import generate_detection_dataset

    data = generate_detection_dataset(
        cfg.out / "scenes", images=cfg.scenes, seed=cfg.seed, progress=not cfg.quiet
    )
    clip = _clip(cfg)
    return [data, clip], {"data": str(data), "clip": str(clip), "images": cfg.scenes}


def stage_train_detection(cfg: DemoConfig, console: Console, done: dict) -> tuple[list[Path], dict]:
    """Fine-tune the detector (the shipped EfficientNet-Lite0 backbone) on the scenes."""
    result = _train(cfg, done, task="detection", size=cfg.det_size)
    m = result.metrics
    return [result.best_checkpoint], {
        "run": str(result.run_dir),
        "val_map": m["val"]["map"],
        "val_map50": m["val"]["map50"],
        "test_map": m["test"]["map"],
        "test_map50": m["test"]["map50"],
        "epochs": result.epochs_run,
        "best_epoch": result.best_epoch,
        "train_s": result.wall_s,
    }


def stage_run_detection(cfg: DemoConfig, console: Console, done: dict) -> tuple[list[Path], dict]:
    """The runtime on the dash-cam clip with tracking: track events, every frame's objects, an
    annotated video, and MOTA / IDF1 against the clip's ground truth."""
    from edgevision.runtime import Pipeline, make_sink
    from edgevision.tasks.detect.mot import score_run

    events, frames = cfg.out / "tracks.jsonl", cfg.out / "frames.jsonl"
    video = cfg.out / "annotated.mp4"
    clip = done["data"]["clip"]
    sinks = [
        make_sink("jsonl", events, mode="tracks"),
        make_sink("jsonl", frames, mode="frames"),
        make_sink("video", video),
    ]
    summary = Pipeline(done["build"]["bundle"], clip, sinks=sinks, threads=cfg.threads).run()
    scores = score_run(frames, clip)
    kinds = [json.loads(line)["event"] for line in events.read_text().splitlines()]
    latency, stages = summary.latency(), summary.stages()
    return [events, frames, video], {
        "events": str(events),
        "frames_file": str(frames),
        "video": str(video),
        "frames": summary.frames_processed,
        "fps": summary.fps,
        "latency_p50_ms": latency["p50"],
        "latency_p99_ms": latency["p99"],
        "nms_p99_ms": stages["postprocess.nms"]["p99"],
        "track_p99_ms": stages["postprocess.track"]["p99"],
        "tracks": kinds.count("appeared"),
        "tracking": scores,
    }


# -- segmentation's data, training and run ------------------------------------------------------
def stage_data_segmentation(cfg: DemoConfig, console: Console, _: dict) -> tuple[list[Path], dict]:
    """Road scenes with per-pixel masks and the dash-cam clip with a mask per frame."""
    from edgevision.data.synth_segment import (
        generate_segmentation_dataset,
        write_segmentation_clip,
    )

    data, _summary = generate_segmentation_dataset(
        cfg.out / "seg_scenes",
        count=cfg.scenes,
        seed=cfg.seed,
        size=cfg.seg_size,
        progress=not cfg.quiet,
    )
    clip = write_segmentation_clip(
        cfg.out / "clip.mp4",
        seconds=cfg.clip_seconds,
        fps=cfg.clip_fps,
        size=cfg.clip_size,
        seed=cfg.seed,
        progress=not cfg.quiet,
    )
    masks = clip.with_name(f"{clip.stem}.masks")
    return [data, clip, masks], {"data": str(data), "clip": str(clip), "images": cfg.scenes}


def stage_train_segmentation(
    cfg: DemoConfig, console: Console, done: dict
) -> tuple[list[Path], dict]:
    """Fine-tune the segmenter (EfficientNet-Lite0 + LR-ASPP) on the scenes."""
    result = _train(cfg, done, task="segmentation", size=cfg.seg_size)
    m = result.metrics
    return [result.best_checkpoint], {
        "run": str(result.run_dir),
        "val_miou": (m["val"]["miou"] or 0.0) / 100,  # fractions, as the other tasks' figures
        "test_miou": (m["test"]["miou"] or 0.0) / 100,
        "epochs": result.epochs_run,
        "best_epoch": result.best_epoch,
        "train_s": result.wall_s,
    }


def stage_run_segmentation(
    cfg: DemoConfig, console: Console, done: dict
) -> tuple[list[Path], dict]:
    """The runtime on the dash-cam clip: per-frame areas, an overlay video, every frame's class
    map, and the clip's mIoU against its per-frame ground-truth masks."""
    from edgevision.runtime import Pipeline, make_sink

    events, video = cfg.out / "frames.jsonl", cfg.out / "annotated.mp4"
    masks = cfg.out / "clip_masks"
    if masks.exists():
        shutil.rmtree(masks)  # the demo's own output of an earlier run
    clip = done["data"]["clip"]
    sinks = [
        make_sink("jsonl", events, mode="frames"),
        make_sink("video", video),
        make_sink("masks", masks, every=1),
    ]
    summary = Pipeline(done["build"]["bundle"], clip, sinks=sinks, threads=cfg.threads).run()
    scores = clip_segmentation_scores(masks, clip)
    latency, stages = summary.latency(), summary.stages()
    return [events, video, masks], {
        "events": str(events),
        "video": str(video),
        "masks": str(masks),
        "frames": summary.frames_processed,
        "fps": summary.fps,
        "latency_p50_ms": latency["p50"],
        "latency_p99_ms": latency["p99"],
        "upsample_p99_ms": stages["postprocess.upsample"]["p99"],
        "clip_miou": scores["miou"],
        "clip_per_class_iou": {k: v["iou"] for k, v in scores["per_class"].items()},
    }


def clip_segmentation_scores(masks: Path, clip: str | Path) -> dict[str, Any]:
    """The run's saved class maps against the clip's truth masks: `SegmentationScores.to_dict`
    (percent) over every frame that has both."""
    from edgevision.data.segmentation import read_mask
    from edgevision.data.synth_segment import read_segmentation_truth
    from edgevision.tasks.segment.metrics import confusion, scores

    truth = read_segmentation_truth(clip)
    labels = truth["labels"]
    total = None
    for path in sorted(Path(masks).glob("*.png")):
        expected = Path(truth["masks"]) / path.name
        if not expected.exists():
            continue
        conf = confusion(read_mask(path), read_mask(expected), len(labels))
        total = conf if total is None else total + conf
    if total is None:
        raise EdgeVisionError(f"{masks} has no class map for any frame of {clip}")
    return scores(total).to_dict(labels)


STAGES: tuple[tuple[str, StageFn, tuple[str, ...]], ...] = (
    # name, function, the config fields its result depends on (beyond earlier stages)
    (
        "data",
        stage_data,
        ("task", "seed", "per_class", "image_size", "clip_seconds", "clip_fps", "clip_size"),
    ),
    ("train", stage_train, ("train_size", "epochs", "freeze")),
    ("build", stage_build, ("calib_size", "method")),
    ("profile", stage_profile, ("iterations", "budget_ms", "percentile")),
    ("run", stage_run, ("smooth",)),
)
DETECTION_STAGES: tuple[tuple[str, StageFn, tuple[str, ...]], ...] = (
    (
        "data",
        stage_data_detection,
        ("task", "seed", "scenes", "clip_seconds", "clip_fps", "clip_size"),
    ),
    ("train", stage_train_detection, ("det_size", "epochs", "freeze")),
    ("build", stage_build, ("calib_size", "method")),
    ("profile", stage_profile, ("iterations", "budget_ms", "percentile")),
    ("run", stage_run_detection, ()),
)
SEGMENTATION_STAGES: tuple[tuple[str, StageFn, tuple[str, ...]], ...] = (
    (
        "data",
        stage_data_segmentation,
        ("task", "seed", "scenes", "seg_size", "clip_seconds", "clip_fps", "clip_size"),
    ),
    ("train", stage_train_segmentation, ("seg_size", "epochs", "freeze")),
    ("build", stage_build, ("calib_size", "method")),
    ("profile", stage_profile, ("iterations", "budget_ms", "percentile")),
    ("run", stage_run_segmentation, ()),
)
STAGES_BY_TASK = {
    "classification": STAGES,
    "detection": DETECTION_STAGES,
    "segmentation": SEGMENTATION_STAGES,
}


# -- the driver -------------------------------------------------------------------------------
def _stage_key(cfg: DemoConfig, fields_so_far: list[str]) -> str:
    settings = {name: getattr(cfg, name) for name in fields_so_far}
    return hashlib.sha256(json.dumps(settings, default=str).encode()).hexdigest()[:16]


def _reusable(path: Path, key: str) -> StageRecord | None:
    try:
        record = StageRecord(**json.loads(path.read_text(encoding="utf-8")))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None
    if record.key != key or not all(Path(p).exists() for p in record.outputs):
        return None
    record.reused = True
    return record


def run_demo(cfg: DemoConfig, console: Console | None = None) -> DemoResult:
    """Run (or reuse) every stage in order; raise the first stage's error as it is."""
    console = console or Console()
    if cfg.task not in STAGES_BY_TASK:
        raise EdgeVisionError(
            f"demo task {cfg.task!r} is not one of {', '.join(STAGES_BY_TASK)}",
            "use --task detection (default), --task classification or --task segmentation",
        )
    if cfg.fresh and cfg.out.exists():
        shutil.rmtree(cfg.out)
    cfg.out.mkdir(parents=True, exist_ok=True)
    result = DemoResult(cfg.out)
    started = time.perf_counter()
    fields_so_far: list[str] = []
    done: dict[str, dict[str, Any]] = {}
    invalidated = False  # a stage that ran again invalidates every later one
    for name, fn, depends in STAGES_BY_TASK[cfg.task]:
        fields_so_far += depends
        key = _stage_key(cfg, fields_so_far)
        path = cfg.out / "stages" / f"{name}.json"
        record = None if invalidated else _reusable(path, key)
        if record is None:
            invalidated = True
            console.rule(f"[bold]{name}")
            t0 = time.perf_counter()
            outputs, stage_result = fn(cfg, console, done)
            record = StageRecord(
                name, key, [str(p) for p in outputs], stage_result, time.perf_counter() - t0
            )
            atomic_write_json(path, asdict(record) | {"reused": False})
        else:
            console.print(f"[dim]{name}: reused from {path} (--fresh to redo)[/]")
        done[name] = record.result
        result.stages.append(record)
    result.seconds = time.perf_counter() - started
    return result
