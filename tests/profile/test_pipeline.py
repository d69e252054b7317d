"""Pipeline mode: the runtime end to end on a finite folder source and a live synthetic one."""

import cv2
import numpy as np
import pytest

from edgevision.errors import EdgeVisionError, SourceError
from edgevision.profile import PipelineProfile, ProfileReport, check_budget, profile_pipeline
from edgevision.runtime import STAGES
from tests.profile.test_cli import run


@pytest.fixture
def frames_dir(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        cv2.imwrite(str(folder / f"{i:03d}.png"), rng.integers(0, 256, (48, 64, 3), np.uint8))
    return folder


def test_folder_source_end_to_end(bundle, frames_dir, tmp_path):
    calls = []
    report = profile_pipeline(
        bundle,
        str(frames_dir),
        threads=1,
        max_frames=8,
        warmup=2,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert isinstance(report, PipelineProfile) and report.mode == "pipeline"
    assert report.counts["processed"] == 10 and report.counts["measured"] == 8
    assert report.counts["read"] >= 10 and report.dropped == 0  # a file is not dropped from
    lat, age = report.latency, report.frame_age
    assert lat.stats.n == 8 and age.stats.n == 8
    assert 0 < age.stats.p50 <= lat.stats.p50  # age is part of capture-to-result latency
    assert lat.backend == "ort" and lat.artifact == "fp32"
    assert {m.key for m in report.measurements if m.kind == "stage"} <= set(STAGES)
    assert {"preprocess", "infer", "postprocess"} <= {m.key for m in report.measurements}
    assert calls[-1] == (10, 10)
    assert report.deployed == "capture_to_result"
    back = ProfileReport.load(report.save(tmp_path / "p.json"))
    assert isinstance(back, PipelineProfile) and back.latency.stats == lat.stats


def test_live_synthetic_source_and_default_budget(bundle):
    report = profile_pipeline(
        bundle, "synthetic://?fps=100&size=64x48", threads=1, max_frames=6, warmup=1
    )
    assert report.counts["measured"] == 6
    assert report.counts["read"] == report.counts["processed"] + report.counts["dropped"]
    result = check_budget(report, 10_000.0, "p90")
    assert result.ok and result.key == "capture_to_result"
    assert "end to end through the runtime" in result.message
    assert not check_budget(report, 1e-6, "p50", artifact="frame_age").ok


def test_bad_pipeline_inputs(bundle, frames_dir, tmp_path):
    with pytest.raises(SourceError):
        profile_pipeline(bundle, str(tmp_path / "missing.mp4"), max_frames=2)
    with pytest.raises(EdgeVisionError, match="frames must be at least 1"):
        profile_pipeline(bundle, str(frames_dir), max_frames=0)
    with pytest.raises(EdgeVisionError, match="not more than the 20 warm-up"):
        profile_pipeline(bundle, str(frames_dir), max_frames=5, warmup=20, threads=1)


def test_cli_source_mode(bundle, frames_dir, tmp_path, capsys):
    out = tmp_path / "p.json"
    args = ["profile", bundle, "--source", frames_dir, "--frames", "6", "--warmup", "1"]
    assert run([*args, "--threads", "1", "--json", out]) == 0
    text = capsys.readouterr().out
    assert "capture_to_result ★" in text and "frames: read" in text and out.exists()
    assert run([*args, "--threads", "1", "--budget-ms", "1e-6"]) == 3
    assert "capture_to_result (end to end through the runtime)" in capsys.readouterr().err
    assert run(["profile", bundle, "--source", tmp_path / "missing.mp4"]) == 2
    assert "missing.mp4" in capsys.readouterr().err
