"""The runtime's own cost, measured against the bare runner in one run.

Four figures, each against its goal:

* throughput: `Pipeline` on a video file (as fast as it goes) vs the bare runner's
  ``infer`` loop on already-prepared tensors (goal: ratio >= 0.90); a sequential
  decode → preprocess → infer loop is shown beside them, to see what overlapping the stages buys;
* latency: capture-to-result p99 on a live-rate source (``synthetic://`` at its frame rate) vs
  the bare inference p99 (goal: <= +10 ms);
* memory: peak RSS of an ``edgevision run`` process (goal: <= 250 MB, from ``os.wait4``);
* start-up: from launching ``edgevision run`` to its first event on disk (goal: <= 2 s), and
  the time of ``edgevision run --help``.

The model is a ~0.5 GFLOP conv net at 224x224 built here with onnx (``--model medium``, about
the cost of a small MobileNet), the tests' tiny classifier (``--model tiny``: decode dominates,
so the throughput ratio says little), or any bundle (``--bundle``). Prints a table and writes
JSON (``--json``).

    .venv/bin/python tools/bench_runtime.py --threads 1 --json bench_runtime.json
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.helpers (the tiny classifier builder)

GOALS = {"throughput_ratio": 0.90, "latency_p99_extra_ms": 10.0, "peak_rss_mb": 250.0,
         "first_result_s": 2.0, "nms_tracking_p99_ms": 1.0}  # fmt: skip


# -- the model ------------------------------------------------------------------------------
def medium_onnx(path: Path, num_classes: int, size: int = 224) -> Path:
    """Four strided/plain 3x3 convs (32-64-128-128) + GAP + Gemm: ~0.5 GFLOP at 224x224."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    chans, strides = [3, 32, 64, 128, 128], [2, 2, 2, 1]
    inits, nodes, x = [], [], "input"
    for i, (cin, cout, stride) in enumerate(zip(chans, chans[1:], strides, strict=False)):
        w = rng.normal(0, (2 / (9 * cin)) ** 0.5, (cout, cin, 3, 3)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"),
                  numpy_helper.from_array(np.zeros(cout, np.float32), f"b{i}")]  # fmt: skip
        nodes += [helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1],
                                   strides=[stride, stride]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]  # fmt: skip
        x = f"r{i}"
    fc = rng.normal(0, 0.1, (num_classes, chans[-1])).astype(np.float32)
    inits += [numpy_helper.from_array(fc, "fc_w"),
              numpy_helper.from_array(np.zeros(num_classes, np.float32), "fc_b")]  # fmt: skip
    nodes += [helper.make_node("GlobalAveragePool", [x], ["g"]),
              helper.make_node("Flatten", ["g"], ["f"]),
              helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], transB=1)]  # fmt: skip
    graph = helper.make_graph(
        nodes, "medium",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", num_classes])],
        inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def make_bundle(kind: str, tmp: Path) -> Path:
    """A bundle for ``kind`` ('tiny' or 'medium') in ``tmp``."""
    from edgevision.bundle import write_bundle
    from edgevision.data.video import LABELS
    from edgevision.spec import ModelSpec
    from tests.helpers import tiny_bundle

    if kind == "tiny":
        return tiny_bundle(tmp)
    onnx_path = medium_onnx(tmp / "medium.onnx", len(LABELS))
    return write_bundle(
        tmp / "bundle",
        {"model.fp32.onnx": onnx_path},
        ModelSpec(labels=LABELS, input_size=(224, 224)),
        {"fp32": {"file": "model.fp32.onnx", "precision": "fp32", "target": "any"}},
    )


# -- in-process measurements ------------------------------------------------------------------
def decoded_frames(clip: Path) -> list:
    from edgevision.runtime import EndOfSource, open_source

    frames = []
    with open_source(clip) as src:
        try:
            while True:
                frames.append(src.read())
        except EndOfSource:
            return frames


def bare_runner(bundle: Path, clip: Path, threads: int, rounds: int) -> dict[str, Any]:
    """The runner alone: infer on prepared tensors, as fast as it goes (per-call ms)."""
    import numpy as np

    from edgevision.backends.select import create_runner
    from edgevision.bundle import Bundle
    from edgevision.preprocess import preprocess

    b = Bundle.open(bundle)
    tensors = [preprocess(f, b.spec) for f in decoded_frames(clip)]
    with create_runner(b, threads=threads) as runner:
        for x in tensors[:5]:
            runner.infer(x)
        times = []
        start = time.perf_counter()
        for _ in range(rounds):
            for x in tensors:
                t0 = time.perf_counter()
                runner.infer(x)
                times.append((time.perf_counter() - t0) * 1000)
        wall = time.perf_counter() - start
    ms = np.asarray(times)
    return {"fps": len(times) / wall, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "frames": len(times)}  # fmt: skip


def sequential(bundle: Path, clip: Path, threads: int, rounds: int) -> dict[str, Any]:
    """One thread, no overlap: decode → preprocess → infer → postprocess per frame."""
    from edgevision.backends.select import create_runner
    from edgevision.bundle import Bundle
    from edgevision.preprocess import preprocess
    from edgevision.runtime import Classifier, EndOfSource, open_source
    from edgevision.tasks import get_task

    b = Bundle.open(bundle)
    task = get_task(b.spec.task)
    if task.runtime:  # the task's head (NMS + tracking, a class map), as the pipeline runs it
        head = task.load(task.runtime)(b.spec)

        def post(out, frame, i):
            head(out, (frame.shape[1], frame.shape[0]), i / 30)
    else:
        clf = Classifier(b.spec.labels)

        def post(out, frame, i):
            clf(next(iter(out.values())))

    n = 0
    with create_runner(b, threads=threads) as runner:
        start = time.perf_counter()
        for _ in range(rounds):
            with open_source(clip) as src:
                try:
                    while True:
                        frame = src.read()
                        post(runner.infer(preprocess(frame, b.spec)), frame, n)
                        n += 1
                except EndOfSource:
                    pass
        wall = time.perf_counter() - start
    return {"fps": n / wall, "frames": n}


def pipeline_file(
    bundle: Path, clip: Path, threads: int, rounds: int, pin: bool | None = None
) -> dict[str, Any]:
    from edgevision.runtime import Pipeline

    fps = []
    for _ in range(rounds):
        s = Pipeline(bundle, clip, threads=threads, pin_cpus=pin).run(handle_signals=False)
        fps.append(s.frames_processed / s.wall_s)
    return {"fps": sum(fps) / len(fps), "frames": s.frames_processed, "rounds": rounds}


def pipeline_live(bundle: Path, threads: int, frames: int, fps: float) -> dict[str, Any]:
    from edgevision.runtime import Pipeline

    uri = f"synthetic://?fps={fps}&size=320x240"
    s = Pipeline(bundle, uri, threads=threads, max_frames=frames).run(handle_signals=False)
    lat, inf = s.latency(), s.stages()["infer"]
    out = {"source": uri, "latency_p50_ms": lat["p50"], "latency_p99_ms": lat["p99"],
           "infer_p99_ms": inf["p99"], "age_p99_ms": s.age()["p99"],
           "dropped": s.frames_dropped, "processed": s.frames_processed}  # fmt: skip
    if "postprocess.track" in s.stage_ms:  # a detector: NMS + tracking per frame
        import numpy as np

        per_frame = np.add(s.stage_ms["postprocess.nms"], s.stage_ms["postprocess.track"])
        out["nms_track_p99_ms"] = float(np.percentile(per_frame, 99))
        out["nms_track_p50_ms"] = float(np.percentile(per_frame, 50))
    return out


def nms_tracking(bundle: Path, clip: Path, threads: int, rounds: int) -> dict[str, Any]:
    """A detector's per-frame NMS + tracking (one `DetectionHead` call), replayed on the model's
    outputs for every frame of ``clip``: as the model gave them, and with every one of the K
    candidates lifted above the NMS threshold (the worst case the goal is set at).

    Replayed in one thread with nothing else running, so the figure is the work itself; the
    live pipeline's stage times beside it also hold the waits for the GIL.
    """
    import numpy as np

    from edgevision.backends.select import create_runner
    from edgevision.bundle import Bundle
    from edgevision.preprocess import preprocess
    from edgevision.runtime import EndOfSource, open_source
    from edgevision.runtime.detect import DetectionHead

    b = Bundle.open(bundle)
    frames: list[tuple[dict[str, Any], tuple[int, int]]] = []
    with create_runner(b, threads=threads) as runner, open_source(clip) as src:
        try:
            while True:
                frame = src.read()
                out = {k: np.array(v) for k, v in runner.infer(preprocess(frame, b.spec)).items()}
                frames.append((out, (frame.shape[1], frame.shape[0])))
        except EndOfSource:
            pass
    floor = DetectionHead(b.spec).nms_threshold + 0.05
    worst = []
    for out, size in frames:
        scores = out[b.spec.detection.outputs[1]].copy()
        best = scores.argmax(axis=2)
        rows = np.arange(scores.shape[1])
        scores[0, rows, best[0]] = np.maximum(scores[0, rows, best[0]], floor)
        worst.append(({**out, b.spec.detection.outputs[1]: scores}, size))
    cases = {"clip": frames, "all_candidates": worst}
    ms: dict[str, list[float]] = {name: [] for name in cases}
    objects: dict[str, list[int]] = {name: [] for name in cases}
    for _ in range(rounds):  # the two cases alternate, so noise hits both
        for name, replay in cases.items():
            head = DetectionHead(b.spec)
            for i, (out, size) in enumerate(replay):
                t0 = time.perf_counter()
                result = head(out, size, i / 30)
                ms[name].append((time.perf_counter() - t0) * 1000)
                objects[name].append(len(result.objects))
    k = b.spec.detection.candidates
    r: dict[str, Any] = {"frames": len(frames), "rounds": rounds, "candidates": k}
    for name in cases:
        r[name] = {
            "p50_ms": float(np.percentile(ms[name], 50)),
            "p99_ms": float(np.percentile(ms[name], 99)),
            "objects_per_frame": float(np.mean(objects[name])),
        }
    return r


def interleaved(bundle: Path, clip: Path, threads: int, rounds: int) -> dict[str, Any]:
    """Bare runner, pipeline (default CPU plan, and never pinned) and sequential loop, one pass
    each per round, ``rounds`` times.

    The machine's noise (other processes) hits them all alike; the throughput ratio is the
    median of the per-round ratios.
    """
    import statistics

    runs: dict[str, list[dict[str, Any]]] = {
        "bare_runner": [],
        "pipeline_file": [],
        "pipeline_unpinned": [],
        "sequential": [],
    }
    for _ in range(rounds):
        runs["bare_runner"].append(bare_runner(bundle, clip, threads, 1))
        runs["pipeline_file"].append(pipeline_file(bundle, clip, threads, 1))
        runs["pipeline_unpinned"].append(pipeline_file(bundle, clip, threads, 1, pin=False))
        runs["sequential"].append(sequential(bundle, clip, threads, 1))
    bare = runs["bare_runner"]
    ratios = [p["fps"] / b["fps"] for p, b in zip(runs["pipeline_file"], bare, strict=True)]
    unpinned = [p["fps"] / b["fps"] for p, b in zip(runs["pipeline_unpinned"], bare, strict=True)]
    out: dict[str, Any] = {
        "throughput_ratios": ratios,
        "throughput_ratio": statistics.median(ratios),
        "unpinned_ratio": statistics.median(unpinned),
    }
    for name, values in runs.items():
        out[name] = {k: statistics.median(v[k] for v in values) for k in values[0]}
    return out


# -- the command as a process ---------------------------------------------------------------
def edgevision_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("edgevision")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "edgevision"]


# Forks and waits for the command from a fresh small interpreter: a child's ru_maxrss also
# counts what its parent held before the exec, so launching from this (large) process would
# inflate it; the launcher's own few MB are below any real peak.
_LAUNCHER = """
import json, os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(json.dumps({"rc": os.waitstatus_to_exitcode(status), "maxrss_kb": usage.ru_maxrss}))
"""


def peak_rss(bundle: Path, clip: Path, threads: int, tmp: Path) -> dict[str, Any]:
    """Peak RSS (MB) of one `edgevision run` writing events and an annotated video."""
    import json

    cmd = [*edgevision_cmd(), "run", str(bundle), "--source", str(clip), "--threads",
           str(threads), "--events", str(tmp / "rss.jsonl"), "--video", str(tmp / "rss.mp4"),
           "--quiet"]  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-S", "-c", _LAUNCHER, *cmd], capture_output=True, text=True, check=True
    )
    usage = json.loads(out.stdout.strip().splitlines()[-1])
    if usage["rc"] != 0:
        raise RuntimeError(f"edgevision run failed: {out.stderr}")
    return {"peak_rss_mb": usage["maxrss_kb"] / 1024}  # Linux reports kilobytes


def first_result(bundle: Path, threads: int, tmp: Path, tries: int) -> dict[str, Any]:
    """Seconds from launching `edgevision run` on a live source to its first event on disk."""
    times = []
    for i in range(tries):
        events = tmp / f"first{i}.jsonl"
        cmd = [*edgevision_cmd(), "run", str(bundle), "--source",
               "synthetic://?fps=30&size=320x240", "--events", str(events), "--threads",
               str(threads), "--events-mode", "frames", "--quiet"]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None and not (events.exists() and events.stat().st_size > 0):
            time.sleep(0.002)
        times.append(time.perf_counter() - start)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    start = time.perf_counter()
    subprocess.run([*edgevision_cmd(), "run", "--help"], capture_output=True, check=True)
    return {"first_result_s": min(times), "first_result_all_s": times,
            "help_s": time.perf_counter() - start}  # fmt: skip


# -- report -----------------------------------------------------------------------------------
def verdicts(r: dict[str, Any]) -> list[tuple[str, str, str, bool]]:
    ratio = r["throughput_ratio"]
    extra = r["live"]["latency_p99_ms"] - r["bare_runner"]["p99_ms"]
    out = [
        ("throughput: pipeline / bare runner", f"{ratio:.2f}",
         f">= {GOALS['throughput_ratio']:.2f}", ratio >= GOALS["throughput_ratio"]),
        ("live p99 latency − bare infer p99", f"{extra:+.1f} ms",
         f"<= +{GOALS['latency_p99_extra_ms']:.0f} ms", extra <= GOALS["latency_p99_extra_ms"]),
        ("peak RSS of edgevision run", f"{r['rss']['peak_rss_mb']:.0f} MB",
         f"<= {GOALS['peak_rss_mb']:.0f} MB", r["rss"]["peak_rss_mb"] <= GOALS["peak_rss_mb"]),
        ("command → first result", f"{r['startup']['first_result_s']:.2f} s",
         f"<= {GOALS['first_result_s']:.0f} s",
         r["startup"]["first_result_s"] <= GOALS["first_result_s"]),
    ]  # fmt: skip
    if "nms_tracking" in r:
        ms = r["nms_tracking"]["all_candidates"]["p99_ms"]
        k = r["nms_tracking"]["candidates"]
        out.append(
            (
                f"NMS + tracking p99 per frame, {k} candidates",
                f"{ms:.2f} ms",
                "<= 1 ms",
                ms <= GOALS["nms_tracking_p99_ms"],
            )
        )
    return out


def print_report(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    detail = Table(title=f"edgevision runtime — model {r['model']}, {r['threads']} ORT thread(s)")
    for col in ("measure", "value"):
        detail.add_column(col, justify="right" if col == "value" else "left")
    rows = [
        ("bare runner FPS (prepared tensors)", f"{r['bare_runner']['fps']:.1f}"),
        ("sequential decode+prep+infer FPS", f"{r['sequential']['fps']:.1f}"),
        ("pipeline FPS on the file", f"{r['pipeline_file']['fps']:.1f}"),
        ("per-round pipeline / bare ratios", " ".join(f"{x:.2f}" for x in r["throughput_ratios"])),
        ("pipeline FPS, --no-pin (ratio)",
         f"{r['pipeline_unpinned']['fps']:.1f} ({r['unpinned_ratio']:.2f})"),
        ("bare infer p50 / p99 ms",
         f"{r['bare_runner']['p50_ms']:.2f} / {r['bare_runner']['p99_ms']:.2f}"),
        (f"live ({r['live']['source']}) latency p50 / p99 ms",
         f"{r['live']['latency_p50_ms']:.2f} / {r['live']['latency_p99_ms']:.2f}"),
        ("live infer-stage p99 ms / frame age p99 ms",
         f"{r['live']['infer_p99_ms']:.2f} / {r['live']['age_p99_ms']:.2f}"),
        ("live processed / dropped", f"{r['live']['processed']} / {r['live']['dropped']}"),
        ("`edgevision run --help` s", f"{r['startup']['help_s']:.2f}"),
    ]  # fmt: skip
    if "nms_track_p99_ms" in r["live"]:
        live = r["live"]
        value = f"{live['nms_track_p50_ms']:.3f} / {live['nms_track_p99_ms']:.3f}"
        rows.append(("live NMS + tracking p50 / p99 ms (detector, with GIL waits)", value))
    if "nms_tracking" in r:
        for name, what in (("clip", "the clip's outputs"), ("all_candidates", "all K above")):
            x = r["nms_tracking"][name]
            rows.append(
                (
                    f"replayed NMS + tracking p50 / p99 ms ({what})",
                    f"{x['p50_ms']:.3f} / {x['p99_ms']:.3f}, "
                    f"{x['objects_per_frame']:.1f} objects/frame",
                )
            )
    for row in rows:
        detail.add_row(*row)
    console.print(detail)
    goals = Table(title="goals")
    for col in ("figure", "measured", "goal", "met"):
        goals.add_column(col)
    for name, value, goal, ok in verdicts(r):
        goals.add_row(name, value, goal, "[green]yes[/]" if ok else "[red]no[/]")
    console.print(goals)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None, help="bench this bundle instead")
    parser.add_argument("--model", choices=("medium", "tiny"), default="medium")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the test clip")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved passes per mode")
    parser.add_argument("--live-frames", type=int, default=60)
    parser.add_argument("--live-fps", type=float, default=15.0)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument(
        "--clip",
        type=Path,
        default=None,
        help="a detector's replay clip (default: the generated one)",
    )
    args = parser.parse_args(argv)

    from edgevision.bundle import Bundle
    from edgevision.data.video import write_video
    from edgevision.fileio import atomic_write_json

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bundle = args.bundle or make_bundle(args.model, tmp)
        clip = write_video(tmp / "clip.mp4", seconds=args.seconds, progress=False)
        r: dict[str, Any] = {"model": str(args.bundle or args.model), "threads": args.threads}
        r.update(interleaved(bundle, clip, args.threads, args.rounds))
        r["live"] = pipeline_live(bundle, args.threads, args.live_frames, args.live_fps)
        if Bundle.open(bundle).spec.task == "detection":
            r["nms_tracking"] = nms_tracking(bundle, args.clip or clip, args.threads, args.rounds)
        r["rss"] = peak_rss(bundle, clip, args.threads, tmp)
        r["startup"] = first_result(bundle, args.threads, tmp, tries=3)
    r["goals"] = {name: {"measured": v, "goal": g, "met": ok} for name, v, g, ok in verdicts(r)}
    print_report(r)
    if args.json:
        atomic_write_json(args.json, r)
    return 0


if __name__ == "__main__":
    sys.exit(main())
