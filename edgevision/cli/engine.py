"""`edgevision engine`: a bundle → its TensorRT engine, built on the device that will run it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

HELP = """Build BUNDLE's TensorRT engine on this device and record it in the bundle.

An engine is tied to the GPU and the TensorRT version it was built with, so it is built where it
runs. --precision auto (the default) builds the INT8 engine and the FP16 one, times both here
(interleaved, batch 1 and --max-batch) and deploys INT8 only when it is 1.10x faster at batch 1
twice; the choice is recorded in the bundle and `edgevision run` / `profile` follow it on this
device. --precision int8 builds only the Q/DQ model (model.int8.trt.onnx), fp16 and fp32 only
the FP32 one.
The engine goes beside the bundle (or into --engine-cache, also used when the bundle folder is
read-only), recorded with what it was built for; `edgevision run` and `profile` pick it up. An
engine of the same name built with other options is replaced only with --rebuild-if-stale. When
the bundle's calibration images are on this machine, the engine is compared with FP32 ONNX
Runtime and the figures are recorded."""


def register(app: typer.Typer) -> None:
    """Add the command to the app."""

    @app.command("engine", help=HELP)
    def engine_cmd(
        bundle: Path = typer.Argument(..., help="Bundle folder (from `edgevision build`)."),
        precision: str = typer.Option(
            "auto", help="auto (INT8 or FP16, whichever is faster here), int8, fp16, fp32."
        ),
        workspace_mb: int = typer.Option(1024, help="Engine builder workspace (MiB)."),
        max_batch: int = typer.Option(8, help="Engine optimisation profile's max batch."),
        dla_core: int | None = typer.Option(None, help="Build for this DLA core (Jetson)."),
        fp16_fallback: bool | None = typer.Option(
            None,
            help="FP16 beside INT8 for the layers kept in float (default: on when the INT8 "
            "artifact keeps any, e.g. a detector's head).",
        ),
        opt_level: int = typer.Option(3, help="TensorRT builder optimisation level 0-5."),
        timing_cache: Path | None = typer.Option(None, help="TensorRT timing cache file."),
        engine_cache: Path | None = typer.Option(None, help="Put engines here, not in the bundle."),
        rebuild_if_stale: bool = typer.Option(False, help="Replace an engine built differently."),
    ) -> None:
        build_device_engine(Console(), bundle, engine_options(locals()))


# The command's options, as `build_engine` takes them (also the deprecated `build --target`'s).
ENGINE_OPTIONS = (
    "precision",
    "workspace_mb",
    "max_batch",
    "dla_core",
    "fp16_fallback",
    "opt_level",
    "timing_cache",
    "engine_cache",
    "rebuild_if_stale",
)


def engine_options(values: dict[str, Any]) -> dict[str, Any]:
    """`ENGINE_OPTIONS` picked from a command's parameters (its ``locals()``)."""
    return {name: values[name] for name in ENGINE_OPTIONS}


def build_device_engine(console: Console, bundle: Path, options: dict[str, Any]) -> None:
    """Build (or reuse) the engine of ``bundle`` with ``options`` (`build_engine`'s keywords)
    at batch 1..max_batch, and print what was built."""
    from edgevision.compile.source import is_bundle
    from edgevision.errors import ConfigError

    if not is_bundle(bundle):
        raise ConfigError(
            f"`edgevision engine` builds an engine from a bundle, and {bundle} is not one",
            "build the bundle first: edgevision build RUN --out BUNDLE",
        )
    if options.get("precision") == "auto":
        from edgevision.backends.tensorrt.deploy import choose_engine

        with console.status("building the INT8 and FP16 engines and timing them (minutes)…"):
            choice = choose_engine(bundle, min_batch=1, opt_batch=1, **options)
        for record in choice.engines.values():
            _print_engine(console, record)
        where = "recorded in the bundle" if choice.recorded else "not recorded (read-only bundle)"
        console.print(f"[green]deployed[/] {choice.precision} ({where}): {choice.why}")
        return
    from edgevision.backends.tensorrt import build_engine

    with console.status("building the TensorRT engine (minutes on a Jetson)…"):
        record = build_engine(bundle, min_batch=1, opt_batch=1, **options)
    _print_engine(console, record)


def _print_engine(console: Console, record: Any) -> None:
    console.print(
        f"[green]engine[/] {record.path} ({record.precision}, {record.gpu_name}, "
        f"TensorRT {record.trt_version}, {record.build_seconds:.0f} s)"
    )
