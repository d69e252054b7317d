"""Every test file on disk is collected by the suite as `make test` runs it.

pytest's default ``norecursedirs`` skips folders named ``build``, ``dist`` and others; the build
stage's tests once sat in ``tests/build/`` and silently never ran. This guard fails when any
``test_*.py`` under ``tests/`` is not collected by a plain ``python -m pytest``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _collected_files() -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return {line.split("::", 1)[0] for line in out.stdout.splitlines() if "::" in line}


def test_every_test_file_is_collected() -> None:
    on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / "tests").rglob("test_*.py")}
    on_disk = {p for p in on_disk if "/__pycache__/" not in p}
    missing = sorted(on_disk - _collected_files())
    assert not missing, (
        f"test files pytest never collects (renamed folder? norecursedirs?): {missing}"
    )


def test_no_test_folder_has_a_name_tools_skip() -> None:
    skipped = {"build", "dist", "out", "bin", "lib", "target", "node_modules", "venv"}
    bad = [p for p in (ROOT / "tests").rglob("*") if p.is_dir() and p.name in skipped]
    pkg = [p for p in (ROOT / "edgevision").rglob("*") if p.is_dir() and p.name in skipped]
    assert not bad + pkg, f"folders named like build output: {bad + pkg}"
