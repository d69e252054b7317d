"""Rich tables for a terminal: a profile report, a comparison, a budget verdict."""

from __future__ import annotations

from rich import box
from rich.table import Table
from rich.text import Text

from edgevision.profile.budget import BudgetResult
from edgevision.profile.compare import Comparison
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


def comparison_table(cmp: Comparison) -> Table:
    """A vs B per measurement and percentile, regressions in red."""
    table = Table(title=f"profile comparison (regression: > {cmp.threshold:.0%} slower)")
    for col, justify in (
        ("name", "left"),
        ("batch", "right"),
        ("stat", "left"),
        ("A ms", "right"),
        ("B ms", "right"),
        ("change", "right"),
        ("", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for c in cmp.changes:
        flag = Text("REGRESSION", style="bold red") if c.regression else Text("")
        style = "red" if c.regression else ("green" if c.change < -cmp.threshold else "")
        table.add_row(
            c.key,
            str(c.batch),
            c.percentile,
            f"{c.a_ms:.3f}",
            f"{c.b_ms:.3f}",
            Text(f"{c.change:+.1%}", style=style),
            flag,
        )
    return table


def budget_text(result: BudgetResult) -> Text:
    """The budget verdict, green or red."""
    return Text(result.message, style="green" if result.ok else "bold red")
