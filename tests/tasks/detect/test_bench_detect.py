"""tools/bench_detect.py end to end on a few generated scenes: both runs, the table, the JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tools"))

pytestmark = pytest.mark.slow


def test_bench_detect_runs_both_candidates_and_writes_the_verdicts(tmp_path, capsys):
    import bench_detect

    out = tmp_path / "bench.json"
    args = ["--images", "12", "--size", "96x64", "--epochs", "1", "--threads", "1"]
    args += ["--work", str(tmp_path / "work"), "--json", str(out)]
    assert bench_detect.main(args) == 0
    result = json.loads(out.read_text())
    assert [r["candidate"] for r in result["runs"]] == ["finetune", "scratch"]
    assert result["runs"][1]["weights"] is None
    for run in result["runs"]:
        assert 0.0 <= run["test"]["map"] <= run["test"]["map50"] <= 1.0
        assert run["epochs_run"] == 1 and run["train_s"] > 0
    assert {"finetune_goal_met", "ratio", "time_ratio"} <= set(result["verdicts"])
    text = capsys.readouterr().out
    assert "mAP@[.5:.95]" in text and "scratch" in text and "at equal time" in text
