"""Rich tables for a terminal: a profile report, a comparison, a budget verdict."""

from __future__ import annotations

from rich import box
from rich.table import Table
from rich.text import Text

from edgevision.profile.budget import BudgetResult
from edgevision.profile.compare import Change, Comparison
from edgevision.profile.report import Measurement, ProfileReport
from edgevision.profile.stats import STAT_ORDER

_KIND_STYLE = {"model": "", "stage": "dim", "pipeline": "bold", "baseline": "magenta"}


def _machine_line(report: ProfileReport) -> str:
    m = report.machine
    gpu = ", ".join(g.get("name", "?") for g in m.get("gpus") or []) or "no NVIDIA GPU"
    v = m.get("versions") or {}
    trt = f", TensorRT {v['tensorrt']}" if v.get("tensorrt") else ""
    return (
        f"{m.get('cpu_model')} ({m.get('usable_cores')} cores), {gpu}; "
        f"ONNX Runtime {v.get('onnxruntime')}{trt}"
    )


def _row(m: Measurement, deployed: str | None) -> list[str]:
    name = m.key + (" ★" if m.key == deployed else "")
    head = [name, m.precision or "", str(m.batch)]
    if not m.ran:
        return [*head, *["–"] * (len(STAT_ORDER) + 1)]
    assert m.stats is not None
    stats = [f"{m.stats.get(s):.3f}" for s in STAT_ORDER]
    # In a pipeline the stages overlap, so 1/latency is no rate: the run's fps is in the counts.
    rate = "–" if m.kind == "pipeline" else f"{m.stats.throughput:,.0f}"
    return [*head, *stats, rate]


def report_table(report: ProfileReport) -> Table:
    """Every measurement with its latency percentiles (ms) and throughput (items/s)."""
    s = report.settings
    table = Table(
        title=f"edgevision profile ({report.mode}) — {_machine_line(report)}",
        caption=(
            f"bundle {report.bundle.get('path')} "
            f"(manifest {str(report.bundle.get('manifest_sha256', ''))[:12]}), "
            f"threads {s.get('threads')}, {s.get('rounds', '?')} "
            f"{'frames' if report.mode == 'pipeline' else 'rounds'}; ms; ★ = deployed"
        ),
        box=box.SIMPLE_HEAD,
    )
    for col in ("name", "prec", "batch"):
        table.add_column(col)
    for col in (*STAT_ORDER, "items/s"):
        table.add_column(col, justify="right")
    for m in report.measurements:
        table.add_row(*_row(m, report.deployed), style=_KIND_STYLE.get(m.kind, ""))
    return table


def notes(report: ProfileReport) -> list[Text]:
    """One line per measurement that was skipped or carries a note (e.g. "not the device")."""
    by_text: dict[str, list[Measurement]] = {}
    for m in report.measurements:
        text = m.skipped or m.note
        if text and m.key not in {k.key for k in by_text.get(text, [])}:
            by_text.setdefault(text, []).append(m)
    return [
        Text(f"{', '.join(m.key for m in ms)}: {text}", style="yellow" if ms[0].skipped else "dim")
        for text, ms in by_text.items()
    ]


def counts_line(report: ProfileReport) -> str:
    """Frame counts of a pipeline profile (empty for a model profile)."""
    return ", ".join(f"{k} {v}" for k, v in report.counts.items())


def _change_cell(c: Change, threshold: float) -> Text:
    style = "bold red" if c.regression else ("green" if c.change < -threshold else "")
    mark = " ▲" if c.regression else ""
    return Text(f"{c.b_ms:.3f} ({c.change:+.0%}){mark}", style=style)


def comparison_table(cmp: Comparison) -> Table:
    """One row per measurement, one column per percentile: B's ms and its change vs A."""
    rows: dict[tuple[str, int], dict[str, Change]] = {}
    for c in cmp.changes:
        rows.setdefault((c.key, c.batch), {})[c.percentile] = c
    stats = list(dict.fromkeys(c.percentile for c in cmp.changes))
    table = Table(
        title=f"profile comparison: B in ms (change vs A); ▲ = over {cmp.threshold:.0%} slower",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("name")
    table.add_column("batch", justify="right")
    for stat in stats:
        table.add_column(stat, justify="right")
    for (key, batch), by_stat in rows.items():
        cells = [_change_cell(by_stat[s], cmp.threshold) if s in by_stat else "" for s in stats]
        table.add_row(key, str(batch), *cells)
    return table


def budget_text(result: BudgetResult) -> Text:
    """The budget verdict, green or red."""
    return Text(result.message, style="green" if result.ok else "bold red")
