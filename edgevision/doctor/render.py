"""`DoctorReport` as rich tables, one screen: the device, the sources, the backends, a bundle."""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from edgevision.doctor import DoctorReport
from edgevision.doctor.verdicts import Verdict
from edgevision.opencv import OpenCVInfo

_MARK = {True: Text("yes", "green"), False: Text("no", "bold red"), None: Text("—", "dim")}


def _yn(value: bool) -> str:
    return "yes" if value else "no"


def _python(py: dict[str, Any]) -> str:
    where = "system interpreter"
    if py["venv"]:
        where = f"venv, system site-packages: {_yn(bool(py['system_site_packages']))}"
    return f"{py['version']} {py['implementation']} {py['machine']} ({where}) {py['executable']}"


def _opencv(cv: OpenCVInfo) -> str:
    if not cv.importable:
        return f"not importable: {cv.error}"
    origin = f"PyPI {cv.wheel} wheel" if cv.wheel else "not a PyPI wheel (system or own build)"
    built = ", ".join(
        f"{name} {_yn(value)}"
        for name, value in (
            ("GStreamer", cv.gstreamer),
            ("FFmpeg", cv.ffmpeg),
            ("V4L2", cv.v4l2),
            ("CUDA", cv.cuda),
        )
    )
    shadowed = f"; also on disk: {', '.join(cv.others)}" if cv.others else ""
    return f"{cv.version}, {origin}; {built}, GUI {cv.gui}; {cv.file}{shadowed}"


def _module(found: dict[str, Any], extra: str = "") -> str:
    if found["error"]:
        return f"not importable: {found['error']}"
    return f"{found['version']}{extra}"


def _cuda(cuda: dict[str, Any]) -> str:
    if not cuda["devices"]:
        return f"none: {cuda['error']}"
    return "; ".join(
        f"{d['name']}, sm {d['compute_capability']}, "
        f"{'?' if d['memory_mib'] is None else d['memory_mib']} MiB (via {cuda['module']})"
        for d in cuda["devices"]
    )


def _jetson(j: dict[str, Any], py: dict[str, Any]) -> str:
    if not j["is_jetson"]:
        return f"not a Jetson (no /etc/nv_tegra_release); {j['os']}"
    text = f"JetPack {j['jetpack']} (L4T {j['l4t']}), {j['board'] or 'unknown board'}; {j['os']}"
    here = ".".join(py["version"].split(".")[:2])
    if j.get("system_python") and here != j["system_python"]:
        text += (
            f"; JetPack's TensorRT and OpenCV are built for Python {j['system_python']}, "
            f"this is {here}"
        )
    return text


def _videos(devices: list[dict[str, Any]]) -> str:
    if not devices:
        return "none (/dev/video*)"
    return ", ".join(f"{d['path']} ({d['name']})" if d["name"] else d["path"] for d in devices)


def device_table(report: DoctorReport) -> Table:
    """Python, NumPy, OpenCV, ONNX Runtime, TensorRT, CUDA, JetPack and cameras."""
    e = report.environment
    ort = e["onnxruntime"]
    providers = f"; {', '.join(ort['providers'])}" if ort["providers"] else ""
    table = Table(title="edgevision doctor: this device", box=box.SIMPLE_HEAD, show_header=False)
    table.add_column("what", style="bold", no_wrap=True)
    table.add_column("found")
    for name, value in (
        ("Python", _python(e["python"])),
        ("NumPy", _module(e["numpy"])),
        ("OpenCV", _opencv(e["opencv"])),
        ("ONNX Runtime", _module(ort, providers)),
        ("TensorRT", _module(e["tensorrt"])),
        ("CUDA device", _cuda(e["cuda"])),
        ("Jetson", _jetson(e["jetson"], e["python"])),
        ("video devices", _videos(e["video_devices"])),
    ):
        table.add_row(name, value)
    return table


def _verdict_cell(v: Verdict, shown: dict[str, str]) -> Text:
    cell = Text(v.detail)
    if v.fix and not v.ok:
        # csi and gst share one fix: say it once.
        fix = f"as for {shown[v.fix]}" if v.fix in shown else v.fix
        shown.setdefault(v.fix, v.name)
        cell.append(f"\nfix: {fix}", style="yellow")
    return cell


def verdict_table(title: str, verdicts: list[Verdict], first: str) -> Table:
    """One row per verdict: name, works here (yes / no / —), what was found and the fix."""
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    table.add_column(first, style="bold", no_wrap=True)
    table.add_column("here", no_wrap=True)
    table.add_column("why / fix")
    shown: dict[str, str] = {}
    for v in verdicts:
        table.add_row(v.name, _MARK[v.ok], _verdict_cell(v, shown))
    return table


def render(report: DoctorReport) -> Group:
    """Everything, in the order a person reads it."""
    parts: list[Any] = [
        device_table(report),
        verdict_table("sources (--source)", report.sources, "kind"),
        verdict_table("backends (--backend)", report.backends, "backend"),
    ]
    if report.bundle is not None:
        b = report.bundle
        title = f"bundle {b.path} on --backend {b.backend}"
        parts.append(verdict_table(title, b.steps, "step"))
        verdict = ("runs here", "green") if b.ok else ("cannot run here", "bold red")
        parts.append(Text.assemble(f"bundle {b.path}: ", verdict))
    parts.append(Text(f"probed in {report.seconds:.2f} s", style="dim"))
    return Group(*parts)
