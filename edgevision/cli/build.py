"""`edgevision build`: checkpoint or ONNX + spec → INT8 bundle; bundle → TensorRT engine."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console

if TYPE_CHECKING:
    from edgevision.compile import BuildResult

T = TypeVar("T")

HELP = """Export, calibrate, quantize to INT8 and verify a model; write a bundle.

INPUT is a RUN folder (or checkpoint) from `edgevision train`, or an .onnx file with --spec.
Calibration defaults to a class-stratified sample of the run's training split; accuracy is
checked on its test split (or --eval DIR). With --max-drop POINTS, an INT8 artifact that loses
more top-1 starts a search: layers are ranked by quantization sensitivity (SQNR, then the
accuracy effect of each in float) and the fewest are kept in float (the same for every target)
until the budget is met; the report lists them, the accuracy before and after and the latency
price. When even the worst --max-float-layers in float miss it, the build fails and writes
nothing. --analyze adds the sensitivity table (JSON, markdown, PNG) to the report.

When INPUT is an existing bundle, --target tensorrt builds its TensorRT engine on this device."""


def register(app: typer.Typer) -> None:
    """Add the command to the app."""

    @app.command("build", help=HELP)
    def build_cmd(
        input: Path = typer.Argument(..., help="RUN folder, checkpoint .pt, .onnx, or a bundle."),
        out: Path | None = typer.Option(None, "--out", "-o", help="Bundle folder to write."),
        spec: Path | None = typer.Option(None, help="ModelSpec JSON (required for .onnx input)."),
        calib: str | None = typer.Option(None, help="Calibration DIR, GLOB or MANIFEST.json."),
        calib_size: int = typer.Option(512, help="Calibration images (>= 16)."),
        method: str = typer.Option("minmax", help="Calibration: minmax, entropy, percentile."),
        targets: str = typer.Option("cpu,tensorrt", help="INT8 targets, comma-separated."),
        eval_dir: Path | None = typer.Option(None, "--eval", help="Labelled ImageFolder."),
        max_drop: float | None = typer.Option(None, help="Max INT8 top-1 drop (points)."),
        float_search: bool = typer.Option(
            True, help="Over --max-drop: keep sensitive layers in float (else fail)."
        ),
        max_float_layers: int = typer.Option(8, help="Worst layers the search may keep float."),
        analyze: bool = typer.Option(False, help="Write the layer sensitivity table to report."),
        advise: bool = typer.Option(True, help="Calibration advisor (ranges vs set size)."),
        threads: int = typer.Option(0, help="CPU threads for torch/ORT (0 = default)."),
        exporter: str = typer.Option("dynamo", help="ONNX exporter: dynamo or legacy."),
        cache_dir: Path | None = typer.Option(None, help="Calibration cache folder."),
        target: str | None = typer.Option(None, help="Bundle input: 'tensorrt' builds an engine."),
        precision: str = typer.Option("int8", help="Engine precision: int8, fp16, fp32."),
        workspace_mb: int = typer.Option(1024, help="Engine builder workspace (MiB)."),
        max_batch: int = typer.Option(8, help="Engine optimisation profile's max batch."),
        dla_core: int | None = typer.Option(None, help="Build for this DLA core (Jetson)."),
        fp16_fallback: bool = typer.Option(False, help="Allow FP16 for layers INT8 lacks."),
        opt_level: int = typer.Option(3, help="TensorRT builder optimisation level 0-5."),
        timing_cache: Path | None = typer.Option(None, help="TensorRT timing cache file."),
        engine_cache: Path | None = typer.Option(None, help="Put engines here, not in the bundle."),
        rebuild_if_stale: bool = typer.Option(False, help="Replace an engine built differently."),
        force: bool = typer.Option(False, help="--out may replace a non-empty, non-bundle folder."),
    ) -> None:
        from edgevision.compile.source import is_bundle
        from edgevision.errors import ConfigError

        console = Console()
        if is_bundle(input) or target is not None:
            engine_opts = dict(
                precision=precision,
                workspace_mb=workspace_mb,
                max_batch=max_batch,
                dla_core=dla_core,
                fp16_fallback=fp16_fallback,
                opt_level=opt_level,
                timing_cache=timing_cache,
                engine_cache=engine_cache,
                rebuild_if_stale=rebuild_if_stale,
            )
            _build_engine(console, input, target, engine_opts)
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
        )
        with _log_to(console), rich_tracker(console) as track:
            result = build_bundle(config, track)
        print_result(console, result)


def _split_list(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _build_engine(console: Console, bundle: Path, target: str | None, opts: dict[str, Any]) -> None:
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
            "add --target tensorrt to build its TensorRT engine on this device",
        )
    from edgevision.backends.tensorrt.engine import build_engine

    with console.status("building the TensorRT engine (minutes on a Jetson)…"):
        record = build_engine(bundle, min_batch=1, opt_batch=1, **opts)
    console.print(
        f"[green]engine[/] {record.path} ({record.precision}, {record.gpu_name}, "
        f"TensorRT {record.trt_version}, {record.build_seconds:.0f} s)"
    )


@contextlib.contextmanager
def rich_tracker(console: Console) -> Iterator[Any]:
    """A `Tracker` that draws one rich progress bar per step."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    columns = (*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=False) as progress:

        def track(items: Iterable[T], total: int | None, description: str) -> Iterator[T]:
            yield from progress.track(items, total=total, description=description)

        yield track


@contextlib.contextmanager
def _log_to(console: Console) -> Iterator[None]:
    """Show the build's info and warnings (export check numbers, skipped files) on the console."""
    from rich.logging import RichHandler

    logger = logging.getLogger("edgevision.compile")
    handler = RichHandler(console=console, show_time=False, show_path=False)
    before = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    # ORT's quantizer logs through the root logger, which installs a plain handler on first use.
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before[0])
        logger.propagate = before[1]


def print_result(console: Console, result: BuildResult) -> None:
    """The artifacts and their accuracy, as a table."""
    from rich.table import Table

    table = Table(title=f"bundle {result.out}")
    for col in ("artifact", "file", "top-1 %", "drop (points)", "agreement %"):
        table.add_column(col)
    for name, art in result.manifest["artifacts"].items():
        ev = result.evaluation
        cells = ["—", "—", "—"]
        if ev is not None:
            cells[0] = f"{ev.top1(name):.2f}"
            if name != ev.reference:
                cells[1:] = [f"{ev.drop(name):.2f}", f"{ev.agreement(name):.2f}"]
        table.add_row(name, art["file"], *cells)
    console.print(table)
    console.print(
        f"built in {result.build_time_s:.1f} s; calibration: {len(result.calibration)} "
        f"images, ranges {'from cache' if result.ranges.from_cache else 'computed'}"
    )
    if result.advice is not None:
        console.print(f"calibration advisor: {result.advice.message()}", markup=False)
    if result.budget is not None:
        print_budget(console, result)
    if result.sensitivity is not None:
        worst = ", ".join(r.layer for r in result.sensitivity.rows[:3])
        console.print(
            f"sensitivity: {len(result.sensitivity.rows)} layers in "
            f"{result.out / 'sensitivity.md'} (worst SQNR: {worst})",
            markup=False,
        )


def print_budget(console: Console, result: BuildResult) -> None:
    """The accuracy budget: layers kept in float, what each cost, before and after."""
    from rich.table import Table

    budget = result.budget
    console.print(f"accuracy budget: {budget.summary()}", markup=False)
    if not budget.layers:
        return
    table = Table(title="kept in float")
    for col in ("layer", "op", "SQNR dB", "drop alone", "latency added ms", "nodes"):
        table.add_column(col)
    added = {e["layer"]: e["added_ms"] for e in (budget.latency or {}).get("layers", [])}
    for r in budget.layers:
        alone = "—" if r.drop is None else f"{r.drop:.2f}"
        ms = f"{added[r.layer]:+.3f}" if r.layer in added else "—"
        table.add_row(r.layer, r.op_type, f"{r.sqnr_db:.1f}", alone, ms, str(len(r.float_nodes)))
    console.print(table)
