"""edgevision runs on Python 3.10 (JetPack 6 on Orin ships it): checked statically with vermin.

Vermin reads every module's syntax, standard-library names (``datetime.UTC``, ``tomllib``,
``typing.Self``, ...) and annotations, and reports the lowest Python that can run it. The base
install (runtime, backends, profile, bundle, preprocess, CLI) must need no more than 3.10; the
training and build side is checked too, since its extra (torch 2.14.1 has cp310 wheels) installs
on 3.10 as well. ``pyproject.toml`` and ruff's target say the same.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MINIMUM = "3.10"


def vermin(*paths: Path) -> subprocess.CompletedProcess[str]:
    try:
        import vermin  # noqa: F401
    except ImportError:
        pytest.fail("vermin is missing: `pip install -e '.[dev]'` (it is in the dev extra)")
    # vermin has no __main__; this is what its console script runs.
    cmd = [sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())"]
    cmd += [f"--target={MINIMUM}-", "--violations", "--no-tips"]
    cmd += ["--eval-annotations", "--processes=1", *map(str, paths)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_every_module_runs_on_python_3_10():
    result = vermin(REPO / "edgevision")
    assert result.returncode == 0, "needs a Python newer than 3.10:\n" + result.stdout
    assert f"Minimum required versions: {MINIMUM}" in result.stdout, result.stdout


def test_vermin_catches_what_3_10_lacks(tmp_path):
    """The check is not vacuous: the very API that broke JetPack 6 is reported."""
    module = tmp_path / "new.py"
    module.write_text("from datetime import UTC, datetime\nprint(datetime.now(UTC))\n")
    result = vermin(module)
    assert result.returncode != 0
    assert "datetime.UTC" in result.stdout and "3.11" in result.stdout


def test_pyproject_and_ruff_say_3_10():
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^requires-python = ">=3\.10"', text, re.M), "requires-python"
    assert re.search(r'^target-version = "py310"', text, re.M), "ruff target-version"
