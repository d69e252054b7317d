"""The base requirements install on a Jetson from binary wheels alone, and never pull torch.

pip resolves them as it would on the device (CPython 3.10 for JetPack 6, 3.12 for JetPack 7,
``manylinux_2_28_aarch64`` / ``manylinux2014_aarch64``) with ``--dry-run --report``: only wheel
metadata is fetched, nothing is installed. JetPack 6's recipe pins ``numpy<2`` (its system
OpenCV and TensorRT are built against NumPy 1.x), so that set is resolved too.

Skipped, with the reason, only when no package index answers (no network); any other failure
fails. CI reaches the index.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    from pip._vendor import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PLATFORMS = ("manylinux_2_28_aarch64", "manylinux2014_aarch64")
# What pip prints when it cannot reach the index at all (urllib3 / requests / socket errors).
OFFLINE = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name "
    r"resolution|Name or service not known|Network is unreachable|ConnectTimeoutError|"
    r"Connection refused|No route to host|ProxyError"
)


def base_requirements() -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return list(project["dependencies"])


def resolve(python: str, requirements: list[str], tmp_path: Path) -> list[dict]:
    """pip's install report for ``requirements`` on a Jetson with CPython ``python``."""
    report = tmp_path / f"report-{python}.json"
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
    cmd += ["--report", str(report), "--target", str(tmp_path / "target")]
    cmd += [arg for platform in PLATFORMS for arg in ("--platform", platform)]
    cmd += ["--python-version", python, "--implementation", "cp", "--only-binary=:all:"]
    cmd += ["--retries", "1", "--timeout", "20", *requirements]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    output = run.stdout + run.stderr
    if run.returncode != 0 and OFFLINE.search(output):
        line = next(x for x in output.splitlines() if OFFLINE.search(x))
        pytest.skip(f"no package index reachable: {line.strip()[:200]}")
    assert run.returncode == 0, output
    return json.loads(report.read_text())["install"]


def wheel_name(item: dict) -> str:
    return item["download_info"]["url"].rsplit("/", 1)[-1].split("#", 1)[0]


@pytest.mark.slow
@pytest.mark.network
@pytest.mark.parametrize(
    ("python", "extra"),
    [("3.10", []), ("3.10", ["numpy<2"]), ("3.12", [])],
    ids=["jetpack6-cp310", "jetpack6-cp310-numpy1", "jetpack7-cp312"],
)
def test_base_requirements_resolve_to_aarch64_wheels(python, extra, tmp_path):
    tag = "cp" + python.replace(".", "")
    installs = resolve(python, base_requirements() + extra, tmp_path)
    names = {item["metadata"]["name"].lower().replace("_", "-") for item in installs}
    assert {"numpy", "onnxruntime", "typer", "rich"} <= names
    assert not {"torch", "torchvision"} & names, "the base install pulled torch"
    assert not {n for n in names if n.startswith("opencv")}, "the base install pulled OpenCV"
    for item in installs:
        wheel = wheel_name(item)
        assert wheel.endswith(".whl"), f"not a binary wheel: {wheel}"
        py_tags, abi, platform = wheel[: -len(".whl")].split("-")[-3:]
        assert platform == "any" or "aarch64" in platform, wheel
        assert abi in ("none", "abi3", tag), wheel
        stable = abi == "abi3"  # cp3X-abi3 runs on every CPython >= 3.X
        assert any(
            t == tag or t.startswith("py3") or (stable and t.startswith("cp3"))
            for t in py_tags.split(".")
        ), wheel
    versions = {item["metadata"]["name"]: item["metadata"]["version"] for item in installs}
    if extra == ["numpy<2"]:
        assert versions["numpy"].startswith("1."), versions
    print(f"{tag} {PLATFORMS}: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
