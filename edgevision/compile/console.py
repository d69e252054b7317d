"""Console output of a build: rich progress bars, the build's log lines, the result tables.

Below the CLI so that library code (`edgevision.demo`) and the `build` command share it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from edgevision.compile import BuildResult

T = TypeVar("T")


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
def log_to(console: Console) -> Iterator[None]:
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
    metric = result.evaluation.metric if result.evaluation is not None else "accuracy"
    for col in ("artifact", "file", metric, "drop (points)", "agreement %"):
        table.add_column(col)
    for name, art in result.manifest["artifacts"].items():
        ev = result.evaluation
        cells = ["—", "—", "—"]
        if ev is not None:
            cells[0] = f"{ev.score(name):.2f}"
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
    for target, record in (result.manifest.get("deploy") or {}).items():
        console.print(f"deploy {target}: {record['artifact']} ({record['why']})", markup=False)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}")
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
