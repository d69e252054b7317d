"""What the benchmarks share: the machine record, the build options, the JSON output."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """CPU model, core count, ONNX Runtime version and AVX-512 VNNI (what INT8 speed hinges on)."""
    import onnxruntime

    from edgevision.profile.machine import cpu_model

    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        flags = next((ln for ln in lines if ln.startswith("flags")), None)
    except OSError:
        flags = None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "ort": onnxruntime.__version__,
        "avx512_vnni": None if flags is None else "avx512_vnni" in flags.split(),
    }


def build_parser(doc: str | None, method: str | None = None) -> argparse.ArgumentParser:
    """A parser with the options every build benchmark takes (calibration, JSON output);
    ``method`` None: the build's default for the model's task (`BuildHooks.calibration_method`)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--calib", help="calibration DIR|GLOB|MANIFEST (default: training split)")
    p.add_argument("--calib-size", type=int, default=512)
    shown = method or "the task's default"
    p.add_argument("--method", default=method, help=f"calibration method ({shown})")
    p.add_argument("--json", help="write the results here")
    return p


def write_json(path: str | os.PathLike[str] | None, results: dict[str, Any]) -> None:
    """Write ``results`` to ``path`` (when given) and say so."""
    if path:
        Path(path).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {path}")
