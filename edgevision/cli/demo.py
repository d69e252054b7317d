"""`edgevision demo`: the whole job on embedded defaults, ending with one summary table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

if TYPE_CHECKING:
    from edgevision.demo import DemoResult

HELP = """Run the main job end to end on generated data. --task detection (default): road
scenes with several signs and a dash-cam clip → fine-tune the detector on EfficientNet-Lite0 →
INT8 bundle verified by mAP → profile FP32 vs INT8 with a budget → run on the clip with
tracking, scored against its ground truth (MOTA, IDF1, signs with one track). --task
segmentation: road scenes with per-pixel masks → EfficientNet-Lite0 + LR-ASPP → INT8 verified
by mIoU → profile → the clip's class maps scored against its per-frame masks. --task
classification: road-sign crops → the classifier → … → the clip's per-frame labels. Finished
stages are reused on a re-run unless --fresh."""


def register(app: typer.Typer) -> None:
    """Add the command to the app."""

    @app.command("demo", help=HELP)
    def demo_cmd(
        out: Path = typer.Option(Path("demo"), "--out", "-o", help="Folder for every output."),
        fresh: bool = typer.Option(False, help="Redo every stage."),
        task: str = typer.Option("detection", help="detection, segmentation or classification."),
        scenes: int = typer.Option(600, help="Detection / segmentation: synthetic road scenes."),
        epochs: int | None = typer.Option(
            None,
            help="Fine-tuning epochs (classification 20, detection 14, segmentation 8; early "
            "stopping may end sooner).",
            show_default=False,
        ),
        per_class: int = typer.Option(100, help="Classification: synthetic images per class."),
        budget_ms: float | None = typer.Option(
            None, help="p99 latency budget of the deployed model (default 50 ms; 25 classifier)."
        ),
        threads: int = typer.Option(0, help="CPU threads (0 = all cores)."),
        quiet: bool = typer.Option(False, help="Plain logs, fewer tables."),
    ) -> None:
        from edgevision.demo import DemoConfig, run_demo

        console = Console()
        if not console.is_terminal:  # a log file: rich would assume 80 columns
            console = Console(width=120)
        cfg = DemoConfig(
            out=out,
            task=task,
            scenes=scenes,
            fresh=fresh,
            epochs=epochs,
            per_class=per_class,
            budget_ms=budget_ms,
            threads=threads,
            quiet=quiet,
        )
        result = run_demo(cfg, console)
        console.print(summary_table(result))
        console.print(stage_table(result))


def summary_table(result: DemoResult):  # -> rich.table.Table
    """Accuracy, latency and pipeline figures, and where each output is."""
    from rich.table import Table

    train, build = result.stage("train"), result.stage("build")
    prof, run = result.stage("profile"), result.stage("run")
    acc, lat = build["accuracy"], prof["latency_ms"]
    detection = "test_map" in train
    segmentation = "test_miou" in train
    table = Table(title="edgevision demo: summary", show_lines=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    if detection:
        table.add_row(
            "val / test mAP@[.5:.95] (mAP@.5) after fine-tuning (PyTorch)",
            f"{100 * train['val_map']:.1f} ({100 * train['val_map50']:.1f}) / "
            f"{100 * train['test_map']:.1f} ({100 * train['test_map50']:.1f})",
        )
    elif segmentation:
        table.add_row(
            "val / test mIoU after fine-tuning (PyTorch)",
            f"{100 * train['val_miou']:.1f} / {100 * train['test_miou']:.1f}",
        )
    else:
        table.add_row(
            "val / test top-1 after fine-tuning (PyTorch)",
            f"{100 * train['val_top1']:.1f}% / {100 * train['test_top1']:.1f}%",
        )
    for name, a in acc.items():
        extra = (
            "" if name == "fp32" else f"  (drop {a['drop']:+.2f} pts, agree {a['agreement']:.1f}%)"
        )
        value = f"{a['score']:.1f}" + ("%" if a["metric"] == "top-1" else "")
        if "map50" in a:
            value += f" (mAP@.5 {a['map50']:.1f})"
        table.add_row(f"test {a['metric']} {name} (ONNX Runtime)", f"{value}{extra}")
    for name, s in lat.items():
        table.add_row(f"latency {name} p50 / p99", f"{s['p50']:.2f} / {s['p99']:.2f} ms")
    if "fp32" in lat and "int8-cpu" in lat:
        table.add_row(
            "INT8 speed-up over FP32 (p50)", f"{lat['fp32']['p50'] / lat['int8-cpu']['p50']:.2f}×"
        )
    table.add_row("latency budget (deployed artifact)", prof["budget"])
    table.add_row(
        "pipeline on the clip: FPS / latency p50 / p99",
        f"{run['fps']:.1f} / {run['latency_p50_ms']:.1f} / {run['latency_p99_ms']:.1f} ms",
    )
    if detection:
        t = run["tracking"]
        table.add_row(
            "NMS / tracking p99 per frame",
            f"{run['nms_p99_ms']:.2f} / {run['track_p99_ms']:.2f} ms",
        )
        table.add_row("clip tracking: MOTA / IDF1", f"{t['mota']:.3f} / {t['idf1']:.3f}")
        table.add_row(
            "clip signs with exactly one track",
            f"{t['signs_one_track']} of {t['signs']} ({100 * t['one_track_fraction']:.0f}%)",
        )
        table.add_row(
            "tracks / switches / misses / false positives",
            f"{run['tracks']} / {t['switches']} / {t['misses']} / {t['false_positives']}",
        )
    elif segmentation:
        per_class = "  ".join(
            f"{name} {iou:.1f}"
            for name, iou in run["clip_per_class_iou"].items()
            if iou is not None
        )
        table.add_row("clip mIoU against its per-frame masks", f"{run['clip_miou']:.1f}")
        table.add_row("clip IoU per class", per_class)
        table.add_row("mask to frame (upsample) p99 per frame", f"{run['upsample_p99_ms']:.2f} ms")
    else:
        table.add_row(
            "events agreeing with the clip's ground truth", f"{100 * run['agreement']:.1f}%"
        )
    for label, path in (
        ("run folder", train["run"]),
        ("bundle", build["bundle"]),
        ("profile JSON / plot", f"{prof['json']}  {prof['plot']}"),
        ("events / annotated video", f"{run['events']}  {run['video']}"),
    ):
        table.add_row(label, str(path))
    return table


def stage_table(result: DemoResult):  # -> rich.table.Table
    """The wall time of each stage (reused stages say so)."""
    from rich.table import Table

    table = Table(title=f"stage times (total {result.seconds:.0f} s this run)")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    table.add_column("")
    for s in result.stages:
        table.add_row(s.name, f"{s.seconds:.1f}", "reused" if s.reused else "")
    return table
