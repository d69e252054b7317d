"""The build report: report.json (everything), report.md (short) and a per-class accuracy PNG."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgevision.compile.evaluate import Evaluation
from edgevision.fileio import atomic_write_json, atomic_write_text

PLOT = "accuracy_per_class.png"


def plot_per_class(evaluation: Evaluation, out: str | os.PathLike[str]) -> Path:
    """Grouped bars: top-1 per class for FP32 and each INT8 artifact (matplotlib, Agg)."""
    title = f"Top-1 per class, {evaluation.n} images ({evaluation.source})"
    return plot_per_class_bars(evaluation, "top-1 (%)", title, out)


def plot_per_class_bars(
    evaluation: Any, ylabel: str, title: str, out: str | os.PathLike[str]
) -> Path:
    """Grouped bars of ``evaluation.per_class(name)`` (percent per label, None drawn as 0) for
    every model it compared, FP32 first: the report's per-class PNG of any task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = list(evaluation.labels)
    names = list(evaluation.predictions)
    width = 0.8 / max(1, len(names))
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(labels) + 2), 3.6), dpi=100)
    for i, name in enumerate(names):
        values = [v if v is not None else 0.0 for v in evaluation.per_class(name).values()]
        ax.bar(x + (i - (len(names) - 1) / 2) * width, values, width, label=name)
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 105)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out)
    plt.close(fig)
    return out


def write_report(
    report: dict[str, Any], folder: str | os.PathLike[str], accuracy_md: str | None = None
) -> dict[str, Path]:
    """Write report.json and report.md into ``folder``; returns bundle name → path."""
    folder = Path(folder)
    files = {"report.json": atomic_write_json(folder / "report.json", report)}
    md = render_markdown(report, accuracy_md)
    files["report.md"] = atomic_write_text(folder / "report.md", md)
    return files


def render_markdown(report: dict[str, Any], accuracy_md: str | None = None) -> str:
    """A short human summary of the build; ``accuracy_md``: a task's own accuracy section
    (a detector's mAP tables), in place of the top-1 table."""
    src = report["source"]
    calib = report["calibration"]
    lines = [
        "# edgevision build report",
        "",
        f"- input: {src['kind']} `{src['path']}`",
        f"- calibration: {calib['method']}, {calib['size']} images from {calib['source']}"
        f" ({calib['skipped']} unreadable skipped), ranges "
        f"{'reused from cache' if calib['ranges_from_cache'] else 'computed'}",
    ]
    check = report.get("export_check")
    if check and "text" in check:
        lines.append(f"- export check: {check['text']}")
    elif check:
        lines.append(
            f"- export check: max abs diff {check['max_abs_diff']:.3g}, top-1 agreement "
            f"{100 * check['top1_agreement']:.2f}% on {check['images']} images"
        )
    lines.append(f"- build time: {report['build_time_s']:.1f} s")
    lines += ["", "## Accuracy", ""]
    acc = report.get("accuracy")
    if not acc:
        lines.append("Not evaluated: no labelled held-out set (give --eval DIR).")
    elif accuracy_md:
        lines.append(accuracy_md.strip("\n"))
    else:
        lines += [
            f"{acc['images']} images of the {acc['source']}.",
            "",
            "| artifact | top-1 (%) | drop (points) | agreement with FP32 (%) |",
            "|---|---:|---:|---:|",
        ]
        for name, m in acc["models"].items():
            drop = f"{m['drop_points']:.2f}" if "drop_points" in m else "—"
            agree = f"{m['agreement']:.2f}" if "agreement" in m else "—"
            lines.append(f"| {name} | {m['top1']:.2f} | {drop} | {agree} |")
        lines += ["", f"![top-1 per class]({PLOT})"]
    if report.get("warnings"):
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in report["warnings"]]
    return "\n".join(lines) + "\n"
