"""tools/soak_run.py: RSS of a real `edgevision run` sampled over time, growth after warm-up."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import tiny_bundle

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))


def test_summary_counts_growth_after_the_warm_up():
    from soak_run import summarize

    samples = [(0.0, 10.0), (5.0, 150.0), (10.0, 151.0), (15.0, 158.0), (20.0, 153.0)]
    r = summarize("s", samples, warmup=8.0)
    assert r["rss_after_warmup_mb"] == 151.0 and r["growth_mb"] == 2.0
    assert r["peak_growth_mb"] == 7.0 and not r["ok"]  # the peak counts against the goal
    assert r["slope_mb_per_hour"] == pytest.approx(0.2 * 3600)


@pytest.mark.slow
def test_soak_runs_edgevision_run_and_samples_rss(tmp_path):
    bundle = tiny_bundle(tmp_path)
    out = tmp_path / "soak.json"
    argv = ["--bundle", bundle, "--source", "synthetic://?fps=15", "--seconds", "6"]
    argv += ["--warmup", "3", "--interval", "0.5", "--json", out]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "soak_run.py"), *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode in (0, 1), proc.stderr
    (result,) = json.loads(out.read_text())["results"]
    assert result["frames"] > 30 and len(result["samples"]) >= 8
    assert 20 < result["rss_after_warmup_mb"] < 500
    assert "synthetic://?fps=15" in proc.stdout and "goal <= 5 MB" in proc.stdout
