"""The real-time pipeline: capture → preprocess → infer → postprocess → sinks, in threads.

Stages hand frames over through bounded channels, so they overlap (decode the next frame while
the model runs on this one) and memory stays flat. With a live source, one-slot "newest
frame" channels sit in front of preprocess and of inference: when the model is slower than the
camera, old frames are dropped (and counted), never queued, so latency cannot build up. A file
(every frame used) is prepared in its reader thread, a hand-off fewer. Postprocess and the
sinks share a thread; ``run()`` ends there, iteration hands each result on to the caller.
With a one-thread runner and CPUs to spare, inference gets a CPU of its own (`cpu_plan`).
Every frame carries its capture timestamp; latency and frame age are measured, not estimated.

    from edgevision.runtime import Pipeline, make_sink

    summary = Pipeline("bundle/", "clip.mp4", sinks=[make_sink("jsonl", "out.jsonl")]).run()
    for result in Pipeline("bundle/", "synthetic://?fps=15", max_frames=30):
        print(result.frame_index, result.label, result.latency_ms)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from edgevision.errors import ConfigError, DataError, EdgeVisionError
from edgevision.preprocess import preprocess
from edgevision.runtime.capture import Capture, Reconnect
from edgevision.runtime.channels import Channel, Closed, Discard, Newest
from edgevision.runtime.frame import Frame, Result
from edgevision.runtime.postprocess import Classifier
from edgevision.runtime.signals import stop_on_signals
from edgevision.runtime.sinks.base import Sink, StreamInfo
from edgevision.runtime.sources import Source, make_source
from edgevision.runtime.summary import RunSummary
from edgevision.tasks import get_task

if TYPE_CHECKING:
    from edgevision.backends.base import Runner
    from edgevision.bundle import Bundle

log = logging.getLogger("edgevision.runtime")

# How long a stop waits for a capture thread blocked inside a device read before moving on.
_CAPTURE_JOIN_S = 3.0


class Pipeline:
    """Run a bundle on a source and send each result to the sinks.

    ``bundle``: a `Bundle` or its folder. ``source``: a URI (see `open_source`) or a `Source`.
    ``backend``: ``auto`` (`choose_backend`), ``ort``, ``tensorrt``; or pass a ready ``runner``.
    ``topk``/``threshold``/``smooth``: see `Classifier` (``threshold`` None: 0). A detection
    bundle's results carry detections and track events instead (`DetectionHead`):
    ``threshold`` None is the spec's score threshold, ``tracker`` a `TrackerConfig`,
    ``tracking`` False reports detections without tracks, ``nms`` ``"agnostic"`` (one label per
    box, the default) or ``"per-class"`` (COCO's class-aware NMS). ``realtime``: read a file at its
    native frame rate, like a camera (newest frame, drops). ``max_frames``: stop after this
    many results. ``reconnect``: the backoff policy for a lost or stalled source.
    ``pin_cpus``: give the inference thread a CPU of its own and the other stages the rest
    (see `cpu_plan`; None: when the runner uses one thread and there are CPUs to spare).

    ``run()`` returns a `RunSummary`; iterating yields each `Result` as it is produced (the
    summary is then in ``.summary``). One run at a time per Pipeline object.
    """

    def __init__(
        self,
        bundle: Bundle | str | os.PathLike[str],
        source: Source | str | os.PathLike[str],
        sinks: Sequence[Sink] = (),
        backend: str = "auto",
        threads: int = 0,
        topk: int = 3,
        threshold: float | None = None,
        smooth: int = 1,
        realtime: bool = False,
        max_frames: int | None = None,
        artifact: str | None = None,
        reconnect: Reconnect | None = None,
        outputs: str = "auto",
        queue_size: int = 2,
        pin_cpus: bool | None = None,
        runner: Runner | None = None,
        tracker: Any = None,
        tracking: bool = True,
        nms: str = "agnostic",
        **backend_options: Any,
    ) -> None:
        from edgevision.bundle import Bundle

        self.bundle = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
        self.source = source if isinstance(source, Source) else make_source(source)
        self.sinks = list(sinks)
        self.backend, self.threads, self.artifact = backend, threads, artifact
        self.backend_options = backend_options
        self.runner = runner
        # Built now so a bad top-k or threshold fails before any device is opened.
        spec = self.bundle.spec
        task = get_task(spec.task)
        # A task's own per-frame head (a detector's NMS + tracking, a segmenter's mask); the
        # classifier's softmax when it has none.
        self.head = (
            task.load(task.runtime)(
                spec, threshold=threshold, tracker=tracker, tracking=tracking, nms=nms
            )
            if task.runtime
            else None
        )
        threshold = 0.0 if threshold is None else threshold
        self.classifier = Classifier(spec.labels, topk, threshold, smooth, outputs)
        self.topk = topk
        if max_frames is not None and max_frames < 1:
            raise ConfigError(f"max_frames {max_frames} must be >= 1", "or None for no limit")
        if queue_size < 1:
            raise ConfigError(f"queue_size {queue_size} must be >= 1")
        self.realtime, self.max_frames, self.queue_size = realtime, max_frames, queue_size
        self.pin_cpus = pin_cpus
        self.reconnect = reconnect or Reconnect()
        self.summary: RunSummary | None = None
        self._stop = threading.Event()

    def stop(self) -> None:
        """Ask the run to end: capture stops, frames in flight are finished, sinks closed."""
        self._stop.set()

    def run(self, handle_signals: bool = True) -> RunSummary:
        """Process until the source ends, ``max_frames``, ``stop()`` or SIGINT/SIGTERM.

        Raises `SourceLostError` (with ``.summary``) when the source was lost for good.
        """
        guard = stop_on_signals(self.stop) if handle_signals else nullcontext()
        with guard:
            # Nobody reads the results here: they end at the sinks (a hand-off fewer).
            for _ in self._results(deliver=False):
                pass
        return self.summary

    def __iter__(self) -> Iterator[Result]:
        return self._results()

    def _results(self, deliver: bool = True) -> Iterator[Result]:
        self._stop.clear()
        run = _Run(self, deliver)
        run.start()
        try:
            while True:
                try:
                    result = run.results.get(timeout=0.2)
                except Closed:
                    break
                if result is not None:
                    yield result
                run.watch()
        finally:
            self.summary = run.finish()
        run.raise_error(self.summary)


def cpu_plan(pin: bool | None, runner_threads: int | None) -> tuple[set[int], set[int]] | None:
    """(CPUs for the inference thread, CPUs for the other stages), or None: leave it to the OS.

    Inference is the bottleneck; on its own CPU it keeps its caches warm and is never
    preempted by decoding or drawing, which then share the other CPUs. ``pin`` None decides:
    yes when the runner computes in the calling thread (``runner_threads`` == 1) and this
    process may use two CPUs or more. A runner with its own thread pool is left alone.
    """
    if pin is False or not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2 or (pin is None and runner_threads != 1):
        return None
    return {allowed[-1]}, set(allowed[:-1])


class _Run:
    """One run's threads, channels and counters (a Pipeline may run again afterwards)."""

    def __init__(self, p: Pipeline, deliver: bool = True) -> None:
        self.p = p
        self.deliver = deliver
        self.spec = p.bundle.spec
        self.stop = p._stop
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []
        self.opened: list[Sink] = []
        self.runner: Runner | None = None
        self.own_runner = p.runner is None
        self.summary = RunSummary(source=p.source.describe(), backend="")
        self.corrupt_late = 0  # frames that passed capture but failed preprocess
        self.discarded = 0  # results after max_frames
        self.last_result_ts = 0.0
        self.stop_seen: float | None = None  # when the consumer first saw a stop request
        self.first_capture_ts: float | None = None  # a live source's first frame (tracking)

    # -- start -----------------------------------------------------------------------------
    def start(self) -> None:
        self.t_start = time.perf_counter()
        try:
            self._open()
        except BaseException:
            self._close_all()
            raise
        self._wire()

    def _open(self) -> None:
        from edgevision.backends.select import create_runner

        p = self.p
        self.runner = p.runner or create_runner(
            p.bundle, p.backend, artifact=p.artifact, threads=p.threads, **p.backend_options
        )
        if not self.runner.is_active:
            self.runner.activate()
        self._warm_up()
        self.summary.backend = self.runner.name
        if p.head is not None:  # a task head's postprocess in its parts, too
            from edgevision.runtime.summary import Reservoir

            for stage in p.head.stages:
                self.summary.stage_ms[f"postprocess.{stage}"] = Reservoir()
        if not p.source.is_open:
            p.source.open()
        info = StreamInfo(
            p.source.describe(),
            p.source.fps,
            self.spec.labels,
            self.runner.name,
            request_stop=p.stop,
            task=self.spec.task,
        )
        for sink in p.sinks:
            sink.open(info)
            self.opened.append(sink)

    def _warm_up(self) -> None:
        # The first inference allocates and tunes; do it before the camera's first frame so
        # that frame's latency is a real one.
        import numpy as np

        meta = self.runner.input_metadata()[0]
        self.runner.infer(np.zeros(self.spec.input_shape(1), dtype=meta.dtype))

    def _wire(self) -> None:
        p = self.p
        live = p.source.live or p.realtime
        size = p.queue_size
        pace = p.source.fps if (p.realtime and not p.source.live) else None
        if p.realtime and not p.source.live and not pace:
            log.warning("%s has no frame rate: --realtime reads it as fast as it can", p.source)
        # A lossless source needs no more reads than results; a live one drops, so the sink
        # stage counts results and stops the run instead.
        limit = None if live else p.max_frames
        stages: list[tuple[str, Callable[[Any], Any]]] = [
            ("infer", self._infer),
            ("postprocess", self._post_and_sink),
        ]
        if live:
            # "Newest" slots in front of preprocess and of infer, so that frames never wait
            # behind a slower model (they are dropped instead, before any work is spent on
            # them); the bottleneck always starts on the freshest frame.
            self.captured: Channel = Newest()
            chans = [self.captured, Newest(), Channel(size), self._results_channel()]
            stages.insert(0, ("preprocess", self._preprocess))
            prepare = None
        else:
            # Lossless: every frame is used, so the reader thread prepares each one as it
            # decodes it (a thread and a hand-off fewer); bounded queues give backpressure.
            self.captured = Channel(size)
            chans = [self.captured, Channel(size), self._results_channel()]
            prepare = self._preprocess
        self.channels = chans
        self.results = chans[-1]
        self.capture = Capture(
            p.source, self.captured, self.stop, p.reconnect, limit, pace, prepare
        )
        plan = cpu_plan(p.pin_cpus, p.threads if p.runner is None else None)
        if plan:
            self.summary.cpus = {"infer": sorted(plan[0]), "other stages": sorted(plan[1])}
        infer_cpus, other_cpus = plan or (None, None)
        cap = threading.Thread(
            target=self._capture, args=(other_cpus,), name="ev-capture", daemon=True
        )
        self.threads.append(cap)
        for (name, fn), inp, out in zip(stages, chans[:-1], chans[1:], strict=True):
            cpus = infer_cpus if name == "infer" else other_cpus
            t = threading.Thread(target=self._worker, args=(fn, inp, out, cpus), name=f"ev-{name}")
            self.threads.append(t)
        self.segment = 0
        for t in self.threads:
            t.start()

    def _capture(self, cpus: set[int] | None) -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)
        self.capture.run()

    def _results_channel(self) -> Channel:
        return Channel(self.p.queue_size) if self.deliver else Discard()

    # -- stages ----------------------------------------------------------------------------
    def _worker(
        self, fn: Callable[[Any], Any], inp: Channel, out: Channel, cpus: set[int] | None = None
    ) -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)  # 0: this thread
        try:
            while True:
                try:
                    item = inp.get()
                except Closed:
                    break
                item = fn(item)
                if item is not None:
                    out.put(item)
        except Closed:
            pass  # the run was aborted downstream
        except BaseException as exc:
            self._fail(exc)
        finally:
            out.close()

    def _preprocess(self, frame: Frame) -> Frame | None:
        t0 = time.perf_counter()
        frame.age_ms = (t0 - frame.capture_ts) * 1000.0
        try:
            frame.tensor = preprocess(frame.image, self.spec)
        except DataError as exc:
            self.corrupt_late += 1
            log.warning("frame %d skipped: %s", frame.index, exc.message)
            return None
        frame.timings["preprocess"] = (time.perf_counter() - t0) * 1000.0
        return frame

    def _infer(self, frame: Frame) -> Frame:
        t0 = time.perf_counter()
        frame.outputs = self.runner.infer(frame.tensor)
        frame.timings["infer"] = (time.perf_counter() - t0) * 1000.0
        frame.tensor = None
        return frame

    def _postprocess(self, frame: Frame) -> Result:
        if self.p.head is not None:
            return self._task_result(frame)
        t0 = time.perf_counter()
        if frame.segment != self.segment:  # reconnected: the smoothing window is stale
            self.p.classifier.reset()
            self.segment = frame.segment
        pred = self.p.classifier(next(iter(frame.outputs.values())))
        t1 = time.perf_counter()
        frame.timings["postprocess"] = (t1 - t0) * 1000.0
        return Result(
            frame_index=frame.index,
            capture_ts=frame.capture_ts,
            capture_time=frame.capture_time,
            label=pred.label,
            score=pred.score,
            topk=pred.topk,
            latency_ms=(t1 - frame.capture_ts) * 1000.0,
            age_ms=frame.age_ms,
            known=pred.known,
            timings=frame.timings,
            meta=frame.meta,
            image=frame.image,
        )

    def _stream_time(self, frame: Frame) -> float:
        """The tracker's clock, seconds from the stream's start: a file's media time (its
        frame index over its frame rate, however fast it is read); a live source's capture
        time, so frames the newest-frame policy dropped are a longer step, not a lost track."""
        source = self.p.source
        if not source.live and source.fps:
            return frame.index / source.fps
        if self.first_capture_ts is None:
            self.first_capture_ts = frame.capture_ts
        return frame.capture_ts - self.first_capture_ts

    def _task_result(self, frame: Frame) -> Result:
        t0 = time.perf_counter()
        h, w = frame.image.shape[:2]
        found = self.p.head(frame.outputs, (w, h), self._stream_time(frame))
        t1 = time.perf_counter()
        frame.timings["postprocess"] = (t1 - t0) * 1000.0
        best = found.best or ("none", 0.0)
        return Result(
            frame_index=frame.index,
            capture_ts=frame.capture_ts,
            capture_time=frame.capture_time,
            label=best[0],
            score=best[1],
            topk=found.topk(self.p.topk),
            latency_ms=(t1 - frame.capture_ts) * 1000.0,
            age_ms=frame.age_ms,
            timings=frame.timings | {f"postprocess.{k}": v for k, v in found.timings.items()},
            meta=frame.meta,
            image=frame.image,
            **found.result_fields(),
        )

    def _post_and_sink(self, frame: Frame) -> Result | None:
        # One thread: postprocess is light, and a hand-off costs about as much.
        return self._sink(self._postprocess(frame))

    def _sink(self, result: Result) -> Result | None:
        limit = self.p.max_frames
        if limit is not None and self.summary.frames_processed >= limit:
            self.discarded += 1
            return None
        t0 = time.perf_counter()
        for sink in self.opened:
            sink.write(result)
        result.timings["sink"] = (time.perf_counter() - t0) * 1000.0
        self._record(result)
        if limit is not None and self.summary.frames_processed >= limit:
            self.stop.set()
        return result

    def _record(self, result: Result) -> None:
        s = self.summary
        if s.startup_s is None:
            s.startup_s = time.perf_counter() - self.t_start
        s.frames_processed += 1
        s.frame_index.append(result.frame_index)
        s.latency_ms.append(result.latency_ms)
        s.age_ms.append(result.age_ms)
        for stage, values in s.stage_ms.items():
            values.append(result.timings.get(stage, 0.0))
        self.last_result_ts = time.perf_counter()

    # -- faults and the end ----------------------------------------------------------------
    def _fail(self, exc: BaseException) -> None:
        self.errors.append(exc)
        self.stop.set()
        for channel in self.channels:
            channel.abort()

    def watch(self) -> None:
        """Called by the consumer between results: unstick a stop blocked in a device read."""
        if not self.stop.is_set() or not self.threads[0].is_alive():
            return
        now = time.perf_counter()
        if self.stop_seen is None:
            self.stop_seen = now
        elif now - self.stop_seen > _CAPTURE_JOIN_S:
            log.warning("the source did not return from a read; stopping without it")
            self.captured.close()
            self.stop_seen = float("inf")  # warn once

    def finish(self) -> RunSummary:
        """Stop every thread, close every sink and the runner, and fill in the summary."""
        self.stop.set()
        if any(t.is_alive() for t in self.threads[1:]):
            # The consumer left early (or a stage failed): drop what is in flight.
            for channel in self.channels:
                channel.abort()
        for t in self.threads[1:]:
            t.join()
        capture_done = True
        if self.threads:
            self.threads[0].join(timeout=_CAPTURE_JOIN_S)
            capture_done = not self.threads[0].is_alive()
        self._flush_tracks()
        self._close_all(close_source=capture_done)
        return self._fill_summary()

    def _flush_tracks(self) -> None:
        """End of stream: every live track leaves; the sinks get those events before closing."""
        flush = getattr(self.p.head, "flush", None)
        if flush is None:
            return
        events = flush()
        for sink in self.opened:
            try:
                sink.write_events(events)
            except Exception as exc:  # the other sinks still get theirs
                log.error("writing the last track events to %r failed: %s", sink, exc)
                self.errors.append(exc)

    def _close_all(self, close_source: bool = True) -> None:
        for sink in self.opened:
            try:
                sink.close()
            except Exception as exc:  # close the others, then report this one
                log.error("closing %r failed: %s", sink, exc)
                self.errors.append(exc)
        self.opened = []
        if self.runner is not None and self.own_runner:
            self.runner.deactivate()
        if close_source:
            self.p.source.close()

    def _fill_summary(self) -> RunSummary:
        s, c = self.summary, getattr(self, "capture", None)
        if c is None:
            return s
        stats = c.stats
        s.frames_read = stats.read
        s.frames_corrupt = stats.corrupt + self.corrupt_late
        s.frames_dropped = s.frames_read - s.frames_processed - s.frames_corrupt
        s.reconnects, s.reconnect_gaps_s = stats.reconnects, list(stats.gaps_s)
        s.read_timeouts = stats.timeouts
        if stats.first_ts is not None and self.last_result_ts:
            s.wall_s = self.last_result_ts - stats.first_ts
        s.stop_reason = self._stop_reason()
        return s

    def _stop_reason(self) -> str:
        limit = self.p.max_frames
        if self.errors:
            return f"error: {type(self.errors[0]).__name__}"
        if limit is not None and self.summary.frames_processed >= limit:
            return "max frames"
        return self.capture.end_reason or "stopped"

    def raise_error(self, summary: RunSummary) -> None:
        """Re-raise what ended the run abnormally (a stage's error, a source lost for good)."""
        error = self.errors[0] if self.errors else self.capture.error
        if error is None:
            return
        if isinstance(error, EdgeVisionError):
            error.summary = summary  # type: ignore[attr-defined]
        raise error
