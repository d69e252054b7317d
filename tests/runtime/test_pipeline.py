"""The pipeline end to end on small sources (tiny bundle, ONNX Runtime, one thread)."""

from __future__ import annotations

import json
import os
import threading
import time

import numpy as np
import pytest

from edgevision.backends.ort.runner import OrtRunner
from edgevision.bundle import Bundle
from edgevision.errors import BackendError, ConfigError, SourceError
from edgevision.preprocess import preprocess
from edgevision.runtime import (
    STAGES,
    Pipeline,
    Reconnect,
    Result,
    RunSummary,
    SourceLostError,
    make_sink,
    softmax,
)
from edgevision.runtime.pipeline import cpu_plan
from edgevision.runtime.sinks import Sink

FAST = Reconnect(attempts=3, initial_s=0.01, max_delay_s=0.02, stall_s=0.5)


class Recorder(Sink):
    name = "recorder"

    def __init__(self, fail_at: int | None = None):
        self.results: list[Result] = []
        self.opened = self.closed = 0
        self.fail_at = fail_at

    def open(self, info):
        super().open(info)
        self.opened += 1

    def write(self, result):
        if self.fail_at is not None and len(self.results) == self.fail_at:
            raise OSError("disk full")
        self.results.append(result)

    def close(self):
        self.closed += 1


class SlowRunner(OrtRunner):
    """ONNX Runtime plus a fixed delay: a model slower than the camera."""

    delay = 0.03

    def infer_impl(self, feed):
        time.sleep(self.delay)
        return super().infer_impl(feed)


def test_file_run_processes_every_frame_in_order(bundle, clip, tmp_path):
    rec = Recorder()
    summary = Pipeline(bundle, clip, sinks=[rec], threads=1, topk=2).run()
    assert isinstance(summary, RunSummary)
    assert summary.frames_read == summary.frames_processed == 12
    assert summary.frames_dropped == summary.frames_corrupt == summary.reconnects == 0
    assert summary.stop_reason == "end of source" and summary.backend == "ort:fp32"
    assert [r.frame_index for r in rec.results] == list(range(12))
    assert rec.opened == rec.closed == 1
    assert all(len(r.topk) == 2 and r.label in ("a", "b", "c") for r in rec.results)
    # Per-frame timings: one value per processed frame for every stage, plus latency and age.
    assert set(summary.stage_ms) == set(STAGES)
    assert all(len(v) == 12 for v in summary.stage_ms.values())
    assert len(summary.latency_ms) == len(summary.age_ms) == 12
    assert summary.frame_index == list(range(12))
    for r in rec.results:
        assert r.latency_ms >= r.age_ms >= 0
        parts = r.timings["preprocess"] + r.timings["infer"] + r.timings["postprocess"]
        assert r.latency_ms >= parts
    assert summary.fps > 0 and summary.wall_s > 0 and summary.startup_s is not None


def test_results_match_the_model_on_the_same_frames(bundle, clip):
    """The pipeline's scores are the bare runner's softmax on the shared preprocess."""
    b = Bundle.open(bundle)
    results = list(Pipeline(b, clip, threads=1, smooth=1, topk=3))
    from edgevision.runtime import open_source

    with open_source(clip) as src, OrtRunner.from_bundle(b, threads=1) as runner:
        for r in results:
            logits = next(iter(runner.infer(preprocess(src.read(), b.spec)).values()))
            p = softmax(logits[0])
            assert r.label == b.spec.labels[int(p.argmax())]
            assert r.score == pytest.approx(float(p.max()), abs=1e-5)


def test_iteration_yields_results_and_sets_summary(bundle):
    p = Pipeline(bundle, "synthetic://?fps=60&size=64x48", max_frames=5, threads=1)
    results = list(p)
    assert [r.frame_index for r in results] == [0, 1, 2, 3, 4]
    assert all("truth" in r.meta for r in results)
    assert p.summary.frames_processed == 5 and p.summary.stop_reason == "max frames"
    s = p.summary
    assert s.frames_read == s.frames_processed + s.frames_dropped + s.frames_corrupt


def test_breaking_out_of_the_loop_closes_everything(bundle, fake_world):
    fake_world("cam", [], then_end=False)
    rec = Recorder()
    p = Pipeline(bundle, "live-fake://cam", sinks=[rec], threads=1)
    for i, _ in enumerate(p):
        if i == 3:
            break
    assert rec.closed == 1
    assert p.summary.frames_processed >= 4
    assert not p.source.is_open


def test_a_slow_model_on_a_live_source_drops_frames_instead_of_queueing(bundle, tmp_path):
    runner = SlowRunner(Bundle.open(bundle).path("model.fp32.onnx"), threads=1)
    p = Pipeline(bundle, "synthetic://?fps=100&size=64x48", runner=runner, max_frames=12)
    summary = p.run()
    assert summary.frames_processed == 12
    assert summary.frames_dropped > 0
    assert summary.frames_read == 12 + summary.frames_dropped + summary.frames_corrupt
    # Latency stays near one inference and never grows with the run (no backlog).
    lat = np.array(summary.latency_ms)
    assert lat[-4:].mean() < 4 * SlowRunner.delay * 1000
    indices = summary.frame_index
    assert indices == sorted(indices) and indices[-1] > 11  # skipped over dropped frames


def test_realtime_file_runs_at_its_frame_rate(bundle, clip):
    start = time.perf_counter()
    summary = Pipeline(bundle, clip, realtime=True, threads=1).run()
    elapsed = time.perf_counter() - start
    assert elapsed >= 11 / 15 * 0.9  # 12 frames at 15 fps
    assert summary.frames_read == 12


def test_corrupt_frames_are_skipped_and_counted(bundle, fake_world):
    fake_world("cam", ["frame", "corrupt", "frame", "garbage", "frame"])
    rec = Recorder()
    summary = Pipeline(bundle, "fake://cam", sinks=[rec], threads=1).run()
    assert summary.frames_read == 5 and summary.frames_corrupt == 2
    assert summary.frames_processed == 3 and summary.frames_dropped == 0
    assert [r.frame_index for r in rec.results] == [0, 2, 4]


@pytest.mark.parametrize("scheme", ["fake", "live-fake"])
def test_a_frame_preprocess_refuses_is_skipped_and_counted(bundle, fake_world, scheme):
    # a file prepares frames in its reader thread, a live source in the preprocess stage
    fake_world("cam", ["frame", "onechannel", "frame"], delay=0.02 if scheme != "fake" else 0.0)
    rec = Recorder()
    summary = Pipeline(bundle, f"{scheme}://cam", sinks=[rec], threads=1).run()
    assert summary.frames_read == 3 and summary.frames_corrupt == 1
    assert summary.frames_processed == 2 and summary.frames_dropped == 0
    assert [r.frame_index for r in rec.results] == [0, 2]


def test_source_fails_mid_stream_and_comes_back(bundle, fake_world, tmp_path):
    fake_world("cam", ["frame"] * 4 + ["lost"] + ["frame"] * 4, open_failures=1)
    events = tmp_path / "events.jsonl"
    summary = Pipeline(
        bundle, "fake://cam", sinks=[make_sink("jsonl", events)], threads=1, reconnect=FAST
    ).run()
    assert summary.reconnects == 1 and len(summary.reconnect_gaps_s) == 1
    assert summary.frames_processed == 8 and summary.stop_reason == "end of source"
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    assert [e["frame"] for e in lines] == list(range(8))


def test_source_lost_for_good_raises_with_summary_and_sinks_closed(bundle, fake_world, tmp_path):
    fake_world("cam", ["frame"] * 3 + ["lost"], open_failures=99)
    rec = Recorder()
    with pytest.raises(SourceLostError, match="3 attempts") as info:
        Pipeline(bundle, "fake://cam", sinks=[rec], threads=1, reconnect=FAST).run()
    assert rec.closed == 1 and len(rec.results) == 3
    assert info.value.summary.frames_processed == 3
    assert info.value.summary.stop_reason == "source lost"


def test_a_failing_sink_stops_the_run_and_still_closes(bundle, fake_world):
    fake_world("cam", [], then_end=False)
    bad, good = Recorder(fail_at=2), Recorder()
    with pytest.raises(OSError, match="disk full"):
        Pipeline(bundle, "fake://cam", sinks=[bad, good], threads=1).run()
    assert bad.closed == good.closed == 1


def test_stop_from_another_thread(bundle):
    p = Pipeline(bundle, "synthetic://?fps=60&size=64x48", threads=1)
    timer = threading.Timer(0.4, p.stop)
    timer.start()
    summary = p.run(handle_signals=False)
    timer.join()
    assert summary.stop_reason == "stopped" and summary.frames_processed > 0


def test_missing_device_fails_before_anything_runs(bundle):
    rec = Recorder()
    with pytest.raises(SourceError, match="/dev/video99"):
        Pipeline(bundle, "/dev/video99", sinks=[rec]).run()
    assert rec.opened == 0


def test_bad_options(bundle, clip):
    with pytest.raises(ConfigError, match="topk"):
        Pipeline(bundle, clip, topk=0)
    with pytest.raises(ConfigError, match="max_frames"):
        Pipeline(bundle, clip, max_frames=0)
    with pytest.raises(BackendError, match="unknown backend 'cuda'"):
        Pipeline(bundle, clip, backend="cuda").run()


def test_the_pipeline_can_run_twice(bundle, clip):
    p = Pipeline(bundle, clip, threads=1)
    assert p.run().frames_processed == 12
    assert p.run().frames_processed == 12


def test_summary_dict_and_table(bundle, clip):
    from rich.console import Console

    summary = Pipeline(bundle, clip, threads=1).run()
    d = summary.to_dict()
    assert d["frames_processed"] == 12 and "latency_ms" not in d
    assert set(d["stages"]) == set(STAGES) and d["latency"]["n"] == 12
    assert len(summary.to_dict(samples=True)["latency_ms"]) == 12
    json.dumps(d)
    console = Console(record=True, width=100)
    console.print(summary.table())
    text = console.export_text()
    assert "processed" in text and "latency p50 / p99 ms" in text and "ort:fp32" in text


def test_stop_does_not_wait_for_a_read_stuck_in_the_driver(bundle, fake_world, monkeypatch):
    import edgevision.runtime.pipeline as pipeline_module

    monkeypatch.setattr(pipeline_module, "_CAPTURE_JOIN_S", 0.2)
    fake_world("cam", ["frame", "hang"])
    p = Pipeline(bundle, "live-fake://cam", threads=1)
    threading.Timer(0.3, p.stop).start()
    start = time.perf_counter()
    summary = p.run(handle_signals=False)
    assert time.perf_counter() - start < 2.0
    assert summary.frames_processed == 1


def test_a_real_stream_that_ends_is_reopened(bundle, clip, http_server):
    """An OpenCV/FFmpeg source over loopback HTTP: at the end of the stream it is reopened."""
    rec = Recorder()
    url = f"{http_server}/{clip.name}"
    summary = Pipeline(bundle, url, sinks=[rec], threads=1, max_frames=20, reconnect=FAST).run()
    assert summary.reconnects >= 1 and summary.frames_processed == 20
    assert rec.results[-1].frame_index >= 19


class WhereRunner(OrtRunner):
    """ONNX Runtime that notes the CPUs its calling thread may use."""

    def infer_impl(self, feed):
        self.seen.add(frozenset(os.sched_getaffinity(0)))
        return super().infer_impl(feed)


def test_cpu_plan_rules(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert cpu_plan(None, 1) == ({3}, {0, 1, 2})
    assert cpu_plan(True, 0) == ({3}, {0, 1, 2})  # asked for, even with a thread pool
    assert cpu_plan(None, 0) is None  # ORT's own pool spans the CPUs: leave it
    assert cpu_plan(None, None) is None  # a caller's runner: its threads are unknown
    assert cpu_plan(False, 1) is None
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {5})
    assert cpu_plan(True, 1) is None  # one CPU: nothing to split


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_pinned_run_keeps_inference_on_its_own_cpu(bundle, clip):
    b = Bundle.open(bundle)
    infer_cpu, other = cpu_plan(True, 1)
    runner = WhereRunner.from_bundle(b, "fp32", threads=1)
    runner.seen = set()
    before = os.sched_getaffinity(0)
    s = Pipeline(b, clip, runner=runner, pin_cpus=True).run(handle_signals=False)
    assert runner.seen >= {frozenset(infer_cpu)}  # every call after the warm-up
    assert len(runner.seen - {frozenset(before)}) == 1
    assert s.cpus == {"infer": sorted(infer_cpu), "other stages": sorted(other)}
    assert os.sched_getaffinity(0) == before  # the caller's thread is not touched
    unpinned = Pipeline(b, clip, runner=runner, pin_cpus=False).run(handle_signals=False)
    assert unpinned.cpus == {}
