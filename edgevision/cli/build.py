"""`edgevision build`: checkpoint or ONNX + spec → INT8 bundle (the engine: `edgevision engine`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

HELP = """Export, calibrate, quantize to INT8 and verify a model; write a bundle.

INPUT is a RUN folder (or checkpoint) from `edgevision train`, or an .onnx file with --spec.
Calibration defaults to a class-stratified sample of the run's training split; accuracy is
checked on its test split (or --eval DIR) in the task's metric: top-1 for a classifier,
COCO mAP@[.5:.95] for a detector (whose decode, sigmoid and top-K after the head's final
box/score layers stay in float: --float-head tail, its default; head: those layers too;
none), mIoU for a segmenter (plain INT8 by default). With --max-drop POINTS, an INT8 artifact
that loses more points of that metric starts a search: layers are ranked by quantization
sensitivity (SQNR, then the accuracy effect of each in float) and the fewest are kept in
float (the same for every target) until the budget is met; the report lists them, the accuracy
before and after and the latency price. When even the worst --max-float-layers in float miss
it, the build fails and writes nothing. --analyze adds the sensitivity table (JSON, markdown,
PNG) to the report.

A bundle's TensorRT engine is built on the device with `edgevision engine BUNDLE`."""


def register(app: typer.Typer) -> None:
    """Add the command to the app."""

    @app.command("build", help=HELP)
    def build_cmd(
        input: Path = typer.Argument(..., help="RUN folder, checkpoint .pt, .onnx, or a bundle."),
        out: Path | None = typer.Option(None, "--out", "-o", help="Bundle folder to write."),
        spec: Path | None = typer.Option(None, help="ModelSpec JSON (required for .onnx input)."),
        calib: str | None = typer.Option(None, help="Calibration DIR, GLOB or MANIFEST.json."),
        calib_size: int = typer.Option(512, help="Calibration images (>= 16)."),
        method: str | None = typer.Option(
            None,
            help="Calibration: minmax, entropy, percentile. Default: the task's (percentile "
            "for a classifier, minmax for a detector or segmenter; as measured).",
            show_default=False,
        ),
        targets: str = typer.Option("cpu,tensorrt", help="INT8 targets, comma-separated."),
        eval_dir: Path | None = typer.Option(
            None,
            "--eval",
            help="Labelled held-out set: ImageFolder, COCO/YOLO (detection), images/ + masks/ "
            "(segmentation).",
        ),
        max_drop: float | None = typer.Option(
            None,
            help="Max INT8 drop in points of top-1 (classifier), mAP@[.5:.95] (detector) or "
            "mIoU (segmenter).",
        ),
        float_head: str | None = typer.Option(
            None,
            help="Keep in float the head's final layers and what follows (head), only what "
            "follows (tail), or nothing (none). Default: the task's (a detector's tail; a "
            "segmenter: none, plain INT8 measured as good).",
            show_default=False,
        ),
        float_search: bool = typer.Option(
            True, help="Over --max-drop: keep sensitive layers in float (else fail)."
        ),
        max_float_layers: int = typer.Option(8, help="Worst layers the search may keep float."),
        min_agreement: float | None = typer.Option(
            None,
            help="INT8 agreement with FP32, % (below: a warning; with --max-drop: fails). "
            "Default 99 (classifier top-1), 90 (detector: F1 of detections at the threshold), "
            "95 (segmenter: pixels with FP32's class).",
        ),
        exclude_nodes: str = typer.Option("", help="Keep these nodes in float (comma-separated)."),
        exclude_op_types: str = typer.Option(
            "", help="Keep every node of these op types in float."
        ),
        deploy_by_latency: bool = typer.Option(
            True, help="Time FP32 vs INT8 here; deploy INT8 for cpu only where it is faster."
        ),
        analyze: bool = typer.Option(False, help="Write the layer sensitivity table to report."),
        advise: bool = typer.Option(True, help="Calibration advisor (ranges vs set size)."),
        threads: int = typer.Option(0, help="CPU threads for torch/ORT (0 = default)."),
        exporter: str = typer.Option("dynamo", help="ONNX exporter: dynamo or legacy."),
        cache_dir: Path | None = typer.Option(None, help="Calibration cache folder."),
        # Deprecated `build BUNDLE --target tensorrt …`, kept working: see `edgevision engine`.
        target: str | None = typer.Option(None, hidden=True),
        precision: str = typer.Option("int8", hidden=True),
        workspace_mb: int = typer.Option(1024, hidden=True),
        max_batch: int = typer.Option(8, hidden=True),
        dla_core: int | None = typer.Option(None, hidden=True),
        fp16_fallback: bool = typer.Option(False, hidden=True),
        opt_level: int = typer.Option(3, hidden=True),
        timing_cache: Path | None = typer.Option(None, hidden=True),
        engine_cache: Path | None = typer.Option(None, hidden=True),
        rebuild_if_stale: bool = typer.Option(False, hidden=True),
        force: bool = typer.Option(False, help="--out may replace a non-empty, non-bundle folder."),
    ) -> None:
        from edgevision.compile.source import is_bundle
        from edgevision.errors import ConfigError

        console = Console()
        if is_bundle(input) or target is not None:
            from edgevision.cli.engine import engine_options

            _build_engine(console, input, target, engine_options(locals()))
            return
        if out is None:
            raise ConfigError("no --out given", "edgevision build RUN --out BUNDLE")
        from edgevision.compile import BuildConfig, build_bundle

        config = BuildConfig(
            input=input,
            out=out,
            spec=spec,
            calib=calib,
            calib_size=calib_size,
            method=method,
            targets=_split_list(targets),
            eval=eval_dir,
            max_drop=max_drop,
            threads=threads,
            exporter=exporter,
            cache_dir=cache_dir,
            search_float=float_search,
            max_float_layers=max_float_layers,
            analyze=analyze,
            advise=advise,
            force=force,
            min_agreement=min_agreement,
            nodes_to_exclude=_split_list(exclude_nodes),
            exclude_op_types=_split_list(exclude_op_types),
            deploy_by_latency=deploy_by_latency,
            float_head=float_head,
        )
        from edgevision.compile.console import log_to, print_result, rich_tracker

        with log_to(console), rich_tracker(console) as track:
            result = build_bundle(config, track)
        print_result(console, result)


def _split_list(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _build_engine(console: Console, bundle: Path, target: str | None, opts: dict[str, Any]) -> None:
    """The deprecated form `edgevision build BUNDLE --target tensorrt`: `edgevision engine`."""
    from rich.markup import escape

    from edgevision.cli.engine import build_device_engine
    from edgevision.compile.source import is_bundle
    from edgevision.errors import ConfigError

    if not is_bundle(bundle):
        raise ConfigError(
            f"--target {target} builds an engine from a bundle, and {bundle} is not one",
            "build the bundle first: edgevision build RUN --out BUNDLE",
        )
    if target != "tensorrt":
        raise ConfigError(
            f"{bundle} is already a bundle" + (f"; unknown --target {target!r}" if target else ""),
            f"to build its TensorRT engine on this device: edgevision engine {bundle}",
        )
    Console(stderr=True, soft_wrap=True).print(
        "[yellow]warning:[/] `edgevision build BUNDLE --target tensorrt` is deprecated; use "
        f"`edgevision engine {escape(str(bundle))}` (same options)",
        highlight=False,
    )
    build_device_engine(console, bundle, opts)
