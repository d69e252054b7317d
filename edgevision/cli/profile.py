"""`edgevision profile`: latency per artifact (or end to end on a source), budgets, comparisons."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from rich.progress import Progress

    from edgevision.profile import ProfileReport

HELP = """Measure latency on this machine and gate it against a budget.

Model mode (default): every artifact of BUNDLE that can run here, interleaved round-robin.
Pipeline mode (--source URI): capture-to-result latency through the runtime.
Compare mode (--compare A.json B.json): flag regressions between two --json reports.
A missed budget or a flagged regression exits with code 3; a user error with code 2."""


def register(app: typer.Typer) -> None:
    """Add the command to the app."""

    @app.command("profile", help=HELP)
    def profile_cmd(
        bundle: Path | None = typer.Argument(None, help="Bundle folder (from `edgevision build`)."),
        batch: str = typer.Option("1", "--batch", help="Batch sizes, comma-separated: 1,8"),
        iterations: int = typer.Option(200, "--iterations", "-n", help="Timed rounds."),
        seconds: float | None = typer.Option(None, help="Time limit instead of --iterations."),
        warmup: int = typer.Option(20, help="Untimed warm-up rounds (frames)."),
        threads: int = typer.Option(0, help="ONNX Runtime intra-op threads (0 = one per core)."),
        artifact: list[str] | None = typer.Option(None, help="Only these artifacts (repeat)."),
        source: str | None = typer.Option(None, help="Pipeline mode on this source URI."),
        frames: int = typer.Option(300, help="Pipeline mode: frames to process."),
        backend: str = typer.Option("auto", help="Pipeline mode: backend (auto, ort, ...)."),
        realtime: bool = typer.Option(False, help="Pipeline mode: pace a file at its frame rate."),
        budget_ms: float | None = typer.Option(None, help="Latency budget in ms (exit 3 if over)."),
        percentile: str = typer.Option("p99", help="Budget percentile: p50 p90 p99 max mean."),
        budget_artifact: str | None = typer.Option(None, help="Gate this one (default: deployed)."),
        json_out: Path | None = typer.Option(None, "--json", help="Write the report as JSON."),
        plot: Path | None = typer.Option(None, help="Write a latency CDF plot (PNG)."),
        compare: tuple[Path, Path] | None = typer.Option(None, help="Compare two JSON reports."),
        threshold: str = typer.Option("10%", help="Compare: regression threshold."),
    ) -> None:
        from edgevision.errors import EdgeVisionError
        from edgevision.fileio import check_output_file
        from edgevision.profile import parse_batch_sizes
        from edgevision.profile.budget import validate_budget
        from edgevision.profile.stats import check_percentile

        if compare:
            _compare(*compare, threshold)
            return
        if bundle is None:
            raise EdgeVisionError("no BUNDLE given", "edgevision profile path/to/bundle")
        # Fail before minutes of measuring, not after.
        for path, option in ((json_out, "--json"), (plot, "--plot")):
            if path is not None:
                check_output_file(path, option)
        check_percentile(percentile)
        if budget_ms is not None:
            validate_budget(budget_ms, percentile)
        elif budget_artifact:
            raise EdgeVisionError("--budget-artifact needs --budget-ms", "add --budget-ms 20")
        if source:
            opts = dict(backend=backend, threads=threads, max_frames=frames, realtime=realtime)
            report = _run_pipeline(bundle, source, warmup, opts)
        else:
            opts = dict(iterations=iterations, seconds=seconds, warmup=warmup, threads=threads)
            report = _run_models(bundle, artifact, parse_batch_sizes(batch), opts)
        _output(report, json_out, plot)
        if budget_ms is not None:
            _gate(report, budget_ms, percentile, budget_artifact)


def _wide_console() -> Console:
    # CI logs are not terminals (rich assumes 80 columns there): keep the table on one line.
    console = Console()
    return console if console.is_terminal else Console(width=120)


def _progress(total: int | None) -> tuple[Progress, Callable[..., None]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    console = Console(stderr=True)
    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    task = bar.add_task("profiling", total=total)
    return bar, lambda done, _total=None: bar.update(task, completed=done)


def _run_models(
    bundle: Path, artifacts: list[str] | None, batch: list[int], opts: dict[str, Any]
) -> ProfileReport:
    from edgevision.profile import profile_models

    bar, on_round = _progress(None if opts["seconds"] else opts["iterations"])
    with bar:
        return profile_models(bundle, artifacts, batch, progress=on_round, **opts)


def _run_pipeline(bundle: Path, source: str, warmup: int, opts: dict[str, Any]) -> ProfileReport:
    from edgevision.profile import profile_pipeline

    bar, on_frame = _progress(opts["max_frames"])
    with bar:
        return profile_pipeline(bundle, source, warmup=warmup, progress=on_frame, **opts)


def _output(report: ProfileReport, json_out: Path | None, plot: Path | None) -> None:
    from edgevision.errors import EdgeVisionError
    from edgevision.profile import plot_report
    from edgevision.profile.render import counts_line, notes, report_table

    console = _wide_console()
    console.print(report_table(report))
    for line in notes(report):
        console.print(line)
    if report.counts:
        console.print(f"frames: {counts_line(report)}")
    if json_out:
        console.print(f"report: {report.save(json_out)}")
    if plot:
        try:
            console.print(f"plot: {plot_report(report, plot)}")
        except EdgeVisionError as exc:  # no matplotlib on the device: warn, keep the profile
            Console(stderr=True).print(f"[yellow]warning:[/] {exc}", highlight=False)


def _gate(report: ProfileReport, budget_ms: float, percentile: str, artifact: str | None) -> None:
    from edgevision.profile import EXIT_BUDGET, check_budget
    from edgevision.profile.render import budget_text

    result = check_budget(report, budget_ms, percentile, artifact)
    Console(stderr=not result.ok, soft_wrap=True).print(budget_text(result))
    if not result.ok:
        raise typer.Exit(EXIT_BUDGET)


def _compare(a: Path, b: Path, threshold: str) -> None:
    from edgevision.profile import EXIT_BUDGET, compare
    from edgevision.profile.render import comparison_table

    result = compare(a, b, threshold)
    console = _wide_console()
    console.print(comparison_table(result))
    for line in result.differences:
        console.print(f"[yellow]note:[/] runs differ in {line}", highlight=False)
    for what, keys in (("only in A", result.only_in_a), ("only in B", result.only_in_b)):
        if keys:
            console.print(f"{what}: {', '.join(keys)}")
    if not result.ok:
        err = Console(stderr=True, soft_wrap=True, highlight=False)
        for c in result.regressions:
            err.print(
                f"[bold red]regression:[/] {c.key} batch {c.batch} {c.percentile} "
                f"{c.a_ms:.3f} → {c.b_ms:.3f} ms ({c.change:+.1%}, over {result.threshold:.0%})"
            )
        raise typer.Exit(EXIT_BUDGET)
    console.print(f"[green]no regression over {result.threshold:.0%}[/]")
