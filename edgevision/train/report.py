"""The run's report: per-class metrics (scikit-learn), metrics JSON, confusion matrix, curves.

Evaluation is summarised as a confusion matrix (summed over ranks); scikit-learn's report is
computed from it, which is exact because the matrix holds every (true, predicted) pair count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgevision.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text

METRICS_JSON = "metrics.json"
REPORT_TXT = "report.txt"
CURVES_PNG = "curves.png"
SPLITS = ("val", "test")  # the splits a run's report covers, in order


def pairs_from_confusion(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(y_true, y_pred) arrays that reproduce the confusion matrix ``cm[true, pred]``."""
    n = cm.shape[0]
    true = np.repeat(np.repeat(np.arange(n), n), cm.reshape(-1))
    pred = np.repeat(np.tile(np.arange(n), n), cm.reshape(-1))
    return true, pred


def summarize(cm: np.ndarray, labels: list[str], loss: float) -> dict[str, Any]:
    """Top-1, loss, macro F1 and scikit-learn's per-class report for one split."""
    from sklearn.metrics import classification_report

    y_true, y_pred = pairs_from_confusion(cm)
    kwargs = {"labels": list(range(len(labels))), "target_names": labels, "zero_division": 0}
    per_class = classification_report(y_true, y_pred, output_dict=True, **kwargs)
    return {
        "top1": float(np.trace(cm) / max(1, cm.sum())),
        "loss": float(loss),
        "macro_f1": float(per_class["macro avg"]["f1-score"]),
        "images": int(cm.sum()),
        "report": per_class,
        "report_text": classification_report(y_true, y_pred, digits=4, **kwargs),
        "confusion": cm.astype(int).tolist(),
    }


def _save_figure(fig: Any, path: Path) -> Path:
    import io

    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def _figure(*args: Any, **kwargs: Any) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display on a workstation over SSH or in CI
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def plot_confusion(cm: np.ndarray, labels: list[str], title: str, path: Path) -> Path:
    """A confusion matrix (true rows, predicted columns) with counts in the cells."""
    size = max(4.0, 0.55 * len(labels) + 2)
    fig, ax = _figure(figsize=(size + 1, size))
    im = ax.imshow(cm, cmap="Blues")
    ax.set(title=title, xlabel="predicted", ylabel="true")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    top = cm.max() if cm.size else 0
    for (i, j), value in np.ndenumerate(cm):
        if value:
            colour = "white" if value > top / 2 else "black"
            ax.text(j, i, str(value), ha="center", va="center", fontsize=7, color=colour)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save_figure(fig, path)


def plot_curves(history: list[dict[str, float]], path: Path) -> Path:
    """Loss (train, val) and accuracy (val) per epoch."""
    fig, (loss_ax, acc_ax) = _figure(1, 2, figsize=(10, 4))
    epochs = [h["epoch"] for h in history]
    loss_ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    loss_ax.plot(epochs, [h["val_loss"] for h in history], "o-", label="val")
    loss_ax.set(title="loss", xlabel="epoch")
    loss_ax.legend()
    acc_ax.plot(epochs, [100 * h["val_acc"] for h in history], "o-", color="C2", label="val top-1")
    acc_ax.set(title="accuracy (%)", xlabel="epoch")
    acc_ax.legend()
    return _save_figure(fig, path)


def write_metrics(
    run_dir: Path, metrics: dict[str, Any], history: list[dict[str, Any]], **lists: list[Any]
) -> Path:
    """``run_dir/metrics.json``: the metrics, then the epoch ``history``, then ``lists`` in the
    order given (``skipped`` files, and ``issues`` where the task records them)."""
    return atomic_write_json(Path(run_dir) / METRICS_JSON, {**metrics, "history": history, **lists})


def _issue_line(item: Any) -> str:
    if isinstance(item, dict) and "path" in item:
        reason = item.get("reason") or item.get("message")
        return f"{item['path']}: {reason}" if reason else str(item["path"])
    return str(item)


def task_text_report(
    task: str,
    metrics: dict[str, Any],
    sections: list[str],
    skipped: list[dict[str, str]],
    issues: list[Any],
) -> str:
    """report.txt of a detection or segmentation run: a title with the run's facts (backbone,
    freeze), the task's per-split ``sections`` (lines), then the skipped files and the dataset
    issues, one a line."""
    run = metrics.get("run", {})
    facts = [f"{key} {run[key]}" for key in ("backbone", "freeze") if run.get(key) is not None]
    lines = [f"edgevision {task} report" + (f": {', '.join(facts)}" if facts else ""), *sections]
    lines += ["", f"== skipped files: {len(skipped)}", *(_issue_line(s) for s in skipped)]
    lines += ["", f"== dataset issues: {len(issues)}", *(_issue_line(i) for i in issues)]
    return "\n".join(lines) + "\n"


def _text_report(metrics: dict[str, Any], skipped: list[dict[str, str]]) -> str:
    lines = [f"edgevision train report: {metrics['run']['backbone']}, {metrics['run']['freeze']}"]
    for name in SPLITS:
        if name in metrics:
            m = metrics[name]
            lines += ["", f"== {name}: top-1 {100 * m['top1']:.2f}% ({m['images']} images)"]
            lines.append(m["report_text"])
    lines += ["", f"== skipped files: {len(skipped)}"]
    lines += [f"{s['path']}: {s['reason']}" for s in skipped]
    return "\n".join(lines) + "\n"


def write_report(
    run_dir: Path,
    metrics: dict[str, Any],
    labels: list[str],
    history: list[dict[str, float]],
    skipped: list[dict[str, str]],
) -> None:
    """metrics.json, report.txt, confusion_{val,test}.png and curves.png in the run folder."""
    write_metrics(run_dir, metrics, history, skipped=skipped)
    atomic_write_text(run_dir / REPORT_TXT, _text_report(metrics, skipped))
    for name in SPLITS:
        if name in metrics:
            cm = np.asarray(metrics[name]["confusion"])
            title = f"{name}: top-1 {100 * metrics[name]['top1']:.1f}%"
            plot_confusion(cm, labels, title, run_dir / f"confusion_{name}.png")
    if history:
        plot_curves(history, run_dir / CURVES_PNG)


def comparison_rows(runs: dict[str, Any], headline: list | None = None) -> list[tuple[str, ...]]:
    """Rows (metric, run1, run2, …) for a side-by-side table of `TrainResult`s.

    ``headline``: the task's ``(key, label, metrics -> value in [0, 1])`` triples (default:
    classification's top-1 and macro F1).
    """
    if headline is None:
        from edgevision.tasks.classify.train import TRAINER

        headline = TRAINER.headline()
    rows = [("", *runs)]
    for _, label, get in headline:
        rows.append((label, *(f"{100 * get(r.metrics):.2f}%" for r in runs.values())))
    rows.append(("epochs (best)", *(f"{r.epochs_run} ({r.best_epoch})" for r in runs.values())))
    rows.append(("wall time", *(f"{r.wall_s:.1f} s" for r in runs.values())))
    return rows


def comparison_table(runs: dict[str, Any], title: str, headline: list | None = None):
    """A rich table of `comparison_rows` (a rich.table.Table)."""
    from rich.table import Table

    header, *rows = comparison_rows(runs, headline)
    table = Table(title=title)
    for i, name in enumerate(header):
        table.add_column(name or "metric", justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    return table
