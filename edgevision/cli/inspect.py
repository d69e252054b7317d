"""`edgevision inspect`: print a bundle's manifest and verify every file's SHA-256."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from rich.table import Table

    from edgevision.bundle import Bundle

HELP = """Show what a bundle holds and verify it.

Prints the ModelSpec, the artifacts, calibration, accuracy and build records, and checks every
file against its SHA-256 in manifest.json. A missing or modified file, or an unknown schema
version, exits non-zero with a message naming the file."""

_SHOWN = {"schema_version", "spec", "artifacts", "files", "calibration", "accuracy", "build"}
_HIDDEN = {"cache_key"}  # long and only for machines; `--json` shows it


def register(app: typer.Typer) -> None:
    """Add the command to the app."""

    @app.command("inspect", help=HELP)
    def inspect_cmd(
        bundle: Path = typer.Argument(..., help="Bundle folder (from `edgevision build`)."),
        as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
    ) -> None:
        from edgevision.bundle import Bundle

        opened = Bundle.open(bundle, verify=True)
        console = Console()
        if as_json:
            console.print_json(data=opened.manifest)
        else:
            print_bundle(console, opened)
        n = len(opened.manifest["files"])
        console.print(f"[green]verified:[/] all {n} files match their SHA-256 in manifest.json")


def print_bundle(console: Console, bundle: Bundle) -> None:
    """The manifest's sections as rich tables."""
    from rich.pretty import Pretty

    m = bundle.manifest
    console.print(f"[bold]bundle[/] {bundle.root}  (schema {m['schema_version']})")
    console.print(_spec_table(bundle))
    console.print(_artifacts_table(bundle))
    for key in ("calibration", "build"):
        if m.get(key):
            console.print(_kv_table(key, m[key]))
    if m.get("accuracy"):
        console.print(_accuracy_table(m["accuracy"]))
    for key in sorted(set(m) - _SHOWN):
        value = m[key]
        if isinstance(value, dict) and all(not isinstance(v, (dict, list)) for v in value.values()):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        if isinstance(value, (dict, list)):
            console.print(f"[bold]{key}[/]", Pretty(value, max_length=20))
        else:
            console.print(f"[bold]{key}:[/] {value}", highlight=False)


def _table(title: str, *columns: str) -> Table:
    from rich.table import Table

    table = Table(title=title, title_justify="left", title_style="bold")
    for col in columns:
        table.add_column(col)
    return table


def _spec_table(bundle: Bundle) -> Table:
    spec = bundle.spec
    table = _table("spec", "field", "value")
    labels = ", ".join(spec.labels)
    table.add_row("task", spec.task)
    table.add_row("labels", f"{spec.num_classes}: {labels}")
    table.add_row("outputs", escape(_outputs(bundle)))  # "[batch, …]" is not rich markup
    table.add_row("input", f"{spec.height}x{spec.width} {spec.layout} {spec.channel_order}")
    table.add_row("resize", f"{spec.resize} ({spec.interpolation})")
    table.add_row("mean / std", f"{list(spec.mean)} / {list(spec.std)}")
    return table


def _outputs(bundle: Bundle) -> str:
    """The graph's outputs and what they mean: the task's contract, from the spec."""
    spec = bundle.spec
    if spec.detection is not None:
        from edgevision.tasks.detect.spec import OUTPUTS

        d = spec.detection
        parts = [f"{name} {OUTPUTS.get(name, '')}".strip() for name in d.outputs]
        return (
            "; ".join(parts) + f" (K = {d.candidates}; runtime: score >= {d.score_threshold:g}, "
            f"NMS IoU {d.iou_threshold:g}, at most {d.max_detections} detections)"
        )
    if spec.segmentation is not None:
        from edgevision.tasks.segment.spec import OUTPUT_KINDS

        o = spec.segmentation
        name, meaning = OUTPUT_KINDS[o.output]
        drivable = f"; free distance of {o.drivable!r}" if o.drivable else ""
        return (
            f"{name} {meaning} ({spec.num_classes} classes; runtime: the class map onto the "
            f"frame through the inverse resize{drivable})"
        )
    return f"logits [batch, {spec.num_classes}] (softmax in the runtime)"


def _artifacts_table(bundle: Bundle) -> Table:
    table = _table("artifacts", "name", "file", "precision", "target", "MiB", "sha256")
    for name, art in bundle.artifacts.items():
        size = bundle.path(art.file).stat().st_size / 2**20
        table.add_row(
            name, art.file, art.precision, art.target, f"{size:.2f}", art.sha256[:16] + "…"
        )
    return table


def _kv_table(title: str, section: dict[str, Any]) -> Table:
    table = _table(title, "field", "value")
    for key, value in section.items():
        if key in _HIDDEN:
            continue
        if isinstance(value, dict):
            value = ", ".join(f"{k}={_short(v)}" for k, v in value.items())
        table.add_row(key, _short(value))
    return table


def _short(value: Any) -> str:
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 90 else text[:87] + "…"


def _accuracy_table(acc: dict[str, Any]) -> Table:
    from edgevision.bundle import HEADLINE_KEYS

    title = f"accuracy ({acc.get('images')} images, {acc.get('source')})"
    metric = acc.get("metric", "top-1")
    key = HEADLINE_KEYS.get(metric, "top1")
    table = _table(title, "artifact", metric, "drop (points)", "agreement %")
    for name, m in acc.get("models", {}).items():
        drop, agree = m.get("drop_points"), m.get("agreement")
        table.add_row(
            name,
            f"{m[key]:.2f}",
            "—" if drop is None else f"{drop:.2f}",
            "—" if agree is None else f"{agree:.2f}",
        )
    return table
