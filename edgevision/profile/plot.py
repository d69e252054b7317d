"""A PNG of each measurement's latency distribution (empirical CDF).

matplotlib ships only with the ``[train]`` extra, not with the device runtime: it is imported
here, on demand, and its absence is a clear `EdgeVisionError`, never a crash of the profile.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from edgevision.errors import EdgeVisionError
from edgevision.fileio import atomic_write_bytes
from edgevision.profile.report import ProfileReport

_PLOTTED = ("model", "pipeline", "baseline")


def _require_matplotlib() -> tuple[type, type]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise EdgeVisionError(
            "cannot draw the latency plot: matplotlib is not installed",
            "pip install 'edgevision[train]' (or matplotlib); the rest of the profile still works",
        ) from None
    return Figure, FigureCanvasAgg


def plot_report(report: ProfileReport, path: str | os.PathLike[str]) -> Path:
    """Draw the CDF of every measured artifact (and pipeline latency) into a PNG at ``path``."""
    figure_cls, canvas_cls = _require_matplotlib()
    series = [m for m in report.measurements if m.kind in _PLOTTED and m.ran and m.samples_ms]
    if not series:
        raise EdgeVisionError("nothing was measured, so there is nothing to plot")
    # An object-oriented Figure on the Agg canvas: no pyplot global state, no display needed.
    fig = figure_cls(figsize=(8, 5), dpi=100)
    canvas = canvas_cls(fig)
    ax = fig.add_subplot(1, 1, 1)
    for m in series:
        x = np.sort(np.asarray(m.samples_ms))
        y = np.arange(1, x.size + 1) / x.size
        assert m.stats is not None
        label = f"{m.key} b{m.batch} (p50 {m.stats.p50:.2f}, p99 {m.stats.p99:.2f} ms)"
        ax.step(x, y, where="post", label=label)
    for q in (0.5, 0.9, 0.99):
        ax.axhline(q, color="grey", linewidth=0.5, linestyle=":")
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of runs ≤ x")
    cpu = report.machine.get("cpu_model", "?")
    ax.set_title(f"edgevision profile ({report.mode}) on {cpu}", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    canvas.print_png(buf)
    return atomic_write_bytes(path, buf.getvalue())
