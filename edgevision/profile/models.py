"""Model mode: every runnable artifact of a bundle, side by side, interleaved round-robin.

One round runs one iteration of every artifact (at every batch size) and of the pre- and
postprocessing stages, in a fresh random order, so that machine noise (another process, a thermal
throttle, a cache flush) hits all of them alike instead of whichever happened to run then.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from edgevision.backends import Runner
from edgevision.backends.select import create_runner
from edgevision.bundle import Bundle
from edgevision.errors import BackendError, EdgeVisionError
from edgevision.fileio import sha256_file
from edgevision.preprocess import preprocess
from edgevision.profile.machine import describe_machine
from edgevision.profile.plan import Entry, deployed_key, plan_entries
from edgevision.profile.report import Measurement, ProfileReport
from edgevision.runtime.postprocess import Classifier

# Returns the seconds one call took (a runner reports its own backend time).
Timer = Callable[[], float]
Progress = Callable[[int, int | None], None]

FRAME_SIZE = (240, 320)  # (height, width): a real camera-sized frame for preprocessing
TOP_K = 5


def bundle_info(bundle: Bundle) -> dict[str, Any]:
    """Path and identity of a bundle: the SHA-256 of its manifest names its exact contents."""
    return {
        "path": str(bundle.root),
        "manifest_sha256": sha256_file(bundle.path("manifest.json")),
        "labels": list(bundle.spec.labels),
        "input_size": list(bundle.spec.input_size),
    }


def runner_timer(runner: Runner, feed: np.ndarray) -> Timer:
    """Time one inference with the runner's own clock (backend time, validation excluded)."""

    def run() -> float:
        start = time.perf_counter()
        runner.infer(feed)
        took = runner.last_inference_time()
        return took if took is not None else time.perf_counter() - start

    return run


def call_timer(fn: Callable[[], Any]) -> Timer:
    """Time one call of ``fn`` with a monotonic wall clock."""

    def run() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return run


def round_robin(
    timers: Mapping[str, Timer],
    iterations: int = 200,
    seconds: float | None = None,
    warmup: int = 20,
    progress: Progress | None = None,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Run every timer once per round, in a fresh random order; samples in milliseconds.

    ``seconds`` (if given) replaces ``iterations``: rounds continue until that much time has
    passed. Warm-up rounds are run the same way and discarded.
    """
    names = list(timers)
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(warmup):
        for name in _shuffled(names, rng):
            timers[name]()
    deadline = time.perf_counter() + seconds if seconds is not None else math.inf
    total = None if seconds is not None else iterations
    r = 0
    while (r < iterations) if seconds is None else (r == 0 or time.perf_counter() < deadline):
        for name in _shuffled(names, rng):
            samples[name].append(timers[name]() * 1000.0)
        r += 1
        if progress:
            progress(r, total)
    return samples


def median_ms(
    runners: Mapping[str, Runner], feeds: Mapping[str, np.ndarray], iterations: int = 30
) -> dict[str, dict[str, float]]:
    """Median ms per call of every (inactive) runner on every feed (runner -> feed name -> ms),
    interleaved with `round_robin`, each on its own clock; the runners are activated for it
    and deactivated after. The build's deployment timings (ONNX Runtime on the CPU, TensorRT
    engines on the device) use it."""
    import statistics

    try:
        for runner in runners.values():
            runner.activate()
        timers = {
            f"{n}@{k}": runner_timer(r, x) for n, r in runners.items() for k, x in feeds.items()
        }
        samples = round_robin(timers, iterations, warmup=max(3, iterations // 10))
    finally:
        for runner in runners.values():
            if runner.is_active:
                runner.deactivate()
    out: dict[str, dict[str, float]] = {n: {} for n in runners}
    for key, values in samples.items():
        name, feed = key.rsplit("@", 1)
        out[name][feed] = statistics.median(values)
    return out


def _shuffled(names: list[str], rng: random.Random) -> list[str]:
    # A fresh order each round: what runs just before a timer (and so what is left in the
    # caches) is spread evenly over all timers, instead of always being the same neighbour.
    order = list(names)
    rng.shuffle(order)
    return order


def validate_settings(
    batch_sizes: Sequence[int], iterations: int, seconds: float | None, warmup: int, threads: int
) -> None:
    """Raise `EdgeVisionError` naming the first bad setting."""
    if seconds is None and iterations < 1:
        raise EdgeVisionError(
            f"iterations must be at least 1, got {iterations}", "use e.g. --iterations 200"
        )
    if seconds is not None and not (seconds > 0 and math.isfinite(seconds)):
        raise EdgeVisionError(f"seconds must be > 0, got {seconds}", "use e.g. --seconds 10")
    if warmup < 0:
        raise EdgeVisionError(f"warmup must be >= 0, got {warmup}", "use e.g. --warmup 20")
    if threads < 0:
        raise EdgeVisionError(f"threads must be >= 0 (0 = one per core), got {threads}")
    if not batch_sizes or any(int(b) < 1 for b in batch_sizes):
        raise EdgeVisionError(
            f"batch sizes must be positive integers, got {list(batch_sizes)}", "use e.g. 1,8"
        )


def _feed_for(runner: Runner, x: np.ndarray, batch: int) -> np.ndarray | str:
    """The batch-``batch`` input, or the reason this model cannot take it."""
    meta = runner.input_metadata()[0]
    fixed = meta.shape[0] if meta.shape else None
    if isinstance(fixed, int) and fixed != batch:
        return f"skipped: model input has a fixed batch of {fixed}"
    return np.ascontiguousarray(np.repeat(x, batch, axis=0).astype(meta.dtype, copy=False))


def _model_measurement(entry: Entry, batch: int, skipped: str | None = None) -> Measurement:
    a = entry.artifact
    return Measurement(
        key=entry.key,
        kind="model",
        batch=batch,
        artifact=a.name,
        backend=entry.backend,
        precision=a.precision,
        target=a.target,
        note=entry.note,
        skipped=skipped or entry.skip,
    )


def _entry_timers(
    entry: Entry,
    bundle: Bundle,
    x: np.ndarray,
    batch_sizes: Sequence[int],
    threads: int,
    stack: contextlib.ExitStack,
) -> tuple[dict[str, Timer], list[Measurement], np.ndarray | None]:
    """Activate one entry, run it once per batch size, and make its timers.

    A batch the model cannot take, or a model that fails to load or run, becomes a skipped
    measurement saying why: it fails here, before the timed rounds, not in the middle of them.
    """
    if entry.skip:
        return {}, [_model_measurement(entry, batch_sizes[0])], None
    timers: dict[str, Timer] = {}
    out: list[Measurement] = []
    logits = None
    batch = batch_sizes[0]
    try:
        runner = create_runner(
            bundle, entry.backend, artifact=entry.artifact.name, threads=threads, **entry.options
        )
        stack.enter_context(runner)
        for batch in batch_sizes:
            feed = _feed_for(runner, x, batch)
            if isinstance(feed, str):
                out.append(_model_measurement(entry, batch, feed))
                continue
            result = runner.infer(feed)
            if batch == 1:
                logits = result  # every output: a detector's postprocess needs both
            timers[f"{entry.key}#{batch}"] = runner_timer(runner, feed)
            out.append(_model_measurement(entry, batch))
    except BackendError as exc:
        out.append(_model_measurement(entry, batch, f"failed: {exc.message}"))
    return timers, out, logits


def _stage_timers(
    bundle: Bundle, frame: np.ndarray, outputs: dict[str, np.ndarray] | None
) -> dict[str, Timer]:
    timers = {"preprocess": call_timer(lambda: preprocess(frame, bundle.spec))}
    task_timers = TASK_STAGE_TIMERS.get(bundle.spec.task)
    if outputs is not None and task_timers is not None:
        return timers | task_timers(bundle.spec, outputs)
    if outputs is not None:
        logits = next(iter(outputs.values()))
        # The runtime's own postprocess (softmax + top-k), as the pipeline runs it per frame.
        classify = Classifier(bundle.spec.labels, topk=TOP_K)
        classify(logits)  # a model/labels mismatch fails here, before the timed rounds
        timers["postprocess"] = call_timer(lambda: classify(logits))
    return timers


TRACKED_OBJECTS = 20  # objects on the frame the tracking stage is timed with


def detection_stage_timers(spec: Any, outputs: dict[str, np.ndarray]) -> dict[str, Timer]:
    """A detector's runtime stages at their worst realistic load: ``postprocess`` (score
    threshold, the runtime's default class-agnostic NMS and the boxes mapped back onto the
    frame) with every one of the K candidates above the threshold, and ``tracking``
    (`Tracker.update`) of `TRACKED_OBJECTS` detections a frame, 30 frames a second."""
    from edgevision.tasks.detect.metrics import Detections
    from edgevision.tasks.detect.postprocess import postprocess
    from edgevision.tasks.detect.track import Tracker

    boxes_name, scores_name = spec.detection.outputs
    boxes, scores = outputs[boxes_name][0], outputs[scores_name][0].copy()
    threshold = spec.detection.score_threshold
    best = scores.argmax(axis=1)
    rows = np.arange(len(scores))
    scores[rows, best] = np.maximum(scores[rows, best], min(1.0, threshold + 0.05))
    size = (FRAME_SIZE[1], FRAME_SIZE[0])

    def post() -> None:
        postprocess(boxes, scores, spec, size, class_agnostic=True)

    post()  # a model/spec mismatch fails here, not in a round
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, min(size) - 40, (TRACKED_OBJECTS, 2)).astype(np.float32)
    objects = np.concatenate([xy, xy + 32], axis=1)
    tracker, clock = Tracker(), [0.0]

    def track() -> None:
        clock[0] += 1 / 30
        moved = objects + np.float32(clock[0] * 30)  # 30 px a second to the right and down
        dets = Detections(moved, np.full(TRACKED_OBJECTS, 0.9), np.zeros(TRACKED_OBJECTS, int))
        tracker.update(dets, clock[0])

    return {
        "postprocess": call_timer(post),
        "tracking": call_timer(track),
    }


def segmentation_stage_timers(spec: Any, outputs: dict[str, np.ndarray]) -> dict[str, Timer]:
    """A segmenter's runtime stages on one camera-sized frame: ``argmax`` (the output to a class
    map at the input's size, a logits model's bilinear upsampling included), ``upsample`` (the
    class map onto the frame through the inverse resize) and ``overlay`` (the coloured mask the
    video sink draws)."""
    from edgevision.tasks.segment.draw import overlay
    from edgevision.tasks.segment.geometry import class_map, mask_to_frame
    from edgevision.tasks.segment.postprocess import palette

    options = spec.segmentation
    output = outputs[options.output_name][0]
    h, w = FRAME_SIZE
    cmap = class_map(output, options.output, spec.input_size)  # a model/spec mismatch fails
    mask = mask_to_frame(cmap, spec, w, h)
    frame = np.full((h, w, 3), 90, np.uint8)
    colours = palette(spec.num_classes)
    return {
        "argmax": call_timer(lambda: class_map(output, options.output, spec.input_size)),
        "upsample": call_timer(lambda: mask_to_frame(cmap, spec, w, h)),
        "overlay": call_timer(lambda: overlay(frame, mask, colours)),
    }


# A task's runtime stages beyond preprocess, timed on the artifact's own outputs.
TASK_STAGE_TIMERS = {
    "detection": detection_stage_timers,
    "segmentation": segmentation_stage_timers,
}


def _with_samples(m: Measurement, samples: dict[str, list[float]]) -> Measurement:
    tid = m.key if m.kind != "model" else f"{m.key}#{m.batch}"
    if m.skipped or tid not in samples:
        return m
    return Measurement(**{**m.__dict__, "samples_ms": samples[tid]})


def profile_models(
    bundle: Bundle | str,
    artifacts: Sequence[str] | None = None,
    batch_sizes: Sequence[int] = (1,),
    iterations: int = 200,
    seconds: float | None = None,
    warmup: int = 20,
    threads: int = 0,
    baselines: Mapping[str, Callable[[], Any]] | None = None,
    progress: Progress | None = None,
) -> ProfileReport:
    """Profile every artifact of ``bundle`` that can run here, interleaved round-robin.

    Each artifact is timed at each of ``batch_sizes``; preprocessing (one camera-sized BGR
    frame) and postprocessing (softmax + top-k; a detector's NMS and tracking, see
    `detection_stage_timers`) are timed as their own stages. Artifacts that
    cannot run here (TensorRT without a GPU) are listed as skipped with the reason.
    ``baselines`` are extra zero-argument callables timed in the same rounds (e.g. a bare
    ``session.run`` to measure the profiler's own overhead).
    """
    if not isinstance(bundle, Bundle):
        bundle = Bundle.open(bundle)
    batch_sizes = sorted({int(b) for b in batch_sizes}) if batch_sizes else []
    validate_settings(batch_sizes, iterations, seconds, warmup, threads)
    entries = plan_entries(bundle, list(artifacts) if artifacts else None)
    frame = np.random.default_rng(0).integers(0, 256, (*FRAME_SIZE, 3), dtype=np.uint8)
    x = preprocess(frame, bundle.spec)
    timers: dict[str, Timer] = {}
    planned: list[Measurement] = []
    logits = None
    with contextlib.ExitStack() as stack:
        for entry in entries:
            t, ms, out = _entry_timers(entry, bundle, x, batch_sizes, threads, stack)
            timers.update(t)
            planned += ms
            logits = logits if logits is not None else out
        stages = _stage_timers(bundle, frame, logits)
        timers.update(stages)
        planned += [Measurement(key=name, kind="stage") for name in stages]
        for name, fn in (baselines or {}).items():
            timers[f"baseline:{name}"] = call_timer(fn)
            planned.append(Measurement(key=f"baseline:{name}", kind="baseline"))
        samples = round_robin(timers, iterations, seconds, warmup, progress)
    return ProfileReport(
        mode="models",
        bundle=bundle_info(bundle),
        machine=describe_machine(),
        settings={
            "batch_sizes": batch_sizes,
            "iterations": iterations if seconds is None else None,
            "seconds": seconds,
            "warmup": warmup,
            "threads": threads,
            "rounds": len(samples["preprocess"]),
            "frame_size": list(FRAME_SIZE),
        },
        measurements=[_with_samples(m, samples) for m in planned],
        deployed=deployed_key(bundle),
    )


def parse_batch_sizes(text: str) -> list[int]:
    """``"1,8"`` → ``[1, 8]``; anything else is an `EdgeVisionError` naming the bad part."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if not part.isdigit() or int(part) < 1:
            raise EdgeVisionError(
                f"batch size {part!r} in {text!r} is not a positive integer", "use e.g. 1,8"
            )
        out.append(int(part))
    return sorted(set(out))
