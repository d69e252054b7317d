"""Benchmark segmentation end to end on the synthetic road scenes, every figure in one run.

1. **Training**: the same LR-ASPP segmenter (EfficientNet-Lite0 features) on the same split of
   the same generated scenes, fine-tuned from the shipped ImageNet weights and from scratch
   (``--weights none``), same epochs, early stopping off: test mIoU and training wall time
   (goal: fine-tuned mIoU >= 0.80 within 10 minutes on 2 cores).
2. **Build** of the fine-tuned run with the defaults (plain INT8) and with ``--float-head
   head`` beside it: FP32 vs INT8-cpu vs INT8-trt mIoU on the test split, the drop of each
   (goal: <= 0.5 point), pixel agreement, build time.
3. **Latency** at batch 1, interleaved: FP32 ORT, INT8-cpu and PyTorch eager (goal: INT8-cpu
   >= 2x FP32), and the two output kinds end to end (model + the runtime's class map onto a
   640x480 frame): ``logits`` at stride 8 (argmax in the runtime) vs ``classmap`` (upsample +
   argmax in the graph), both FP32 from the same weights.
4. **Pipeline** FPS on the segmentation clip vs the bare runner (goal: >= 0.90), with
   ``tools/bench_runtime.py``'s interleaved rounds.

Medians and the spread (p10-p90) are printed and written to JSON.

    .venv/bin/python tools/bench_segment.py --epochs 12 --json runs/bench_segment.json
    .venv/bin/python tools/bench_segment.py --candidates finetune --epochs 4 --images 200
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_build import interleaved, torch_reference  # noqa: E402  (tools/)
from common import machine  # noqa: E402

GOALS = {"miou": 0.80, "train_s": 600.0, "drop": 0.5, "speedup": 2.0, "pipeline": 0.90}
CANDIDATES = {"finetune": {}, "scratch": {"weights": None}}
FRAME = (640, 480)  # (width, height) the runtime maps the class map onto


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--images", type=int, default=600, help="synthetic scenes to generate")
    p.add_argument("--size", default=None, help="input WIDTHxHEIGHT (default: train's)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--threads", type=int, default=None, help="torch threads (all cores)")
    p.add_argument("--ort-threads", type=int, default=1, help="ONNX Runtime threads (latency)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--candidates", default="finetune,scratch")
    p.add_argument("--calib-size", type=int, default=512)
    p.add_argument("--method", default=None, help="calibration (default: the segmenter's)")
    p.add_argument("--rounds", type=int, default=15, help="interleaved latency rounds")
    p.add_argument("--iters", type=int, default=10, help="calls per fn per round")
    p.add_argument("--clip-seconds", type=float, default=10.0)
    p.add_argument("--work", help="folder for data, runs and bundles (default: temporary)")
    p.add_argument("--json", default="runs/bench_segment.json")
    p.add_argument(
        "--reuse-runs",
        action="store_true",
        help="with --work: take finished training runs from WORK/<candidate> (no training)",
    )
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.method is None:  # recorded in the JSON by name
        from edgevision.tasks.segment.build import SegmentationBuild

        args.method = SegmentationBuild.calibration_method
    return args


def quiet(args: argparse.Namespace) -> Any:
    return contextlib.nullcontext() if args.verbose else contextlib.redirect_stdout(io.StringIO())


# -- 1. training --------------------------------------------------------------------------------
def train_candidate(name: str, data: Path, work: Path, args: argparse.Namespace) -> dict:
    from edgevision.train import TrainConfig, train

    config = TrainConfig(data=str(data), out=str(work / name), task="segmentation")
    changes: dict[str, Any] = {
        "seed": args.seed,
        "threads": args.threads,
        "overwrite": True,
        "quiet": not args.verbose,
        "patience": 0,  # equal time: both candidates run every epoch
        "epochs": args.epochs,
        **CANDIDATES[name],
    }
    if args.size:
        changes["size"] = args.size
    with quiet(args):
        result = train(dataclasses.replace(config, **changes))
    m = result.metrics
    return {
        "candidate": name,
        "run": str(result.run_dir),
        "test_miou": m["test"]["miou"],
        "test_mean_dice": m["test"]["mean_dice"],
        "test_per_class_iou": {k: v["iou"] for k, v in m["test"]["per_class"].items()},
        "val_miou": m["val"]["miou"],
        "wall_s": result.wall_s,
        "train_s": m["run"]["train_s"],
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
    }


def reused_candidate(name: str, work: Path) -> dict:
    """A finished run's figures, read back from its ``metrics.json`` (``--reuse-runs``)."""
    run = work / name
    m = json.loads((run / "metrics.json").read_text())
    return {
        "candidate": name,
        "run": str(run),
        "reused": True,
        "test_miou": m["test"]["miou"],
        "test_mean_dice": m["test"]["mean_dice"],
        "test_per_class_iou": {k: v["iou"] for k, v in m["test"]["per_class"].items()},
        "val_miou": m["val"]["miou"],
        "wall_s": m["run"]["wall_s"],
        "train_s": m["run"]["train_s"],
        "epochs_run": m["run"]["epochs_run"],
        "best_epoch": m["run"]["best_epoch"],
    }


# -- 2. build -----------------------------------------------------------------------------------
def build(run: Path, out: Path, args: argparse.Namespace, float_head: str | None) -> dict:
    from edgevision.compile import BuildConfig, build_bundle

    config = BuildConfig(
        input=run,
        out=out,
        calib_size=args.calib_size,
        method=args.method,
        float_head=float_head,
        seed=args.seed,
    )
    start = time.perf_counter()
    with quiet(args):
        result = build_bundle(config)
    ev = result.evaluation
    return {
        "bundle": str(out),
        "float_head": float_head or "task default",
        "float_nodes": len(result.report["nodes_to_exclude"]),
        "wall_s": round(time.perf_counter() - start, 1),
        "build_time_s": round(result.build_time_s, 1),
        "images": ev.n,
        "miou": {k: round(ev.score(k), 3) for k in ev.predictions},
        "drop": {k: round(ev.drop(k), 3) for k in ev.predictions if k != ev.reference},
        "agreement": {k: round(ev.agreement(k), 3) for k in ev.predictions if k != ev.reference},
        "per_class_drop": {k: ev.per_class_drop(k) for k in ev.predictions if k != ev.reference},
        "deploy": {t: d["artifact"] for t, d in result.report["deploy"].items()},
    }


# -- 3. latency -------------------------------------------------------------------------------
def _classmap_onnx(run: Path, out: Path) -> tuple[Path, Any]:
    """The run's best weights exported with ``output="classmap"`` (same weights as the bundle)."""
    from edgevision.compile import BuildConfig
    from edgevision.compile.export import export_onnx
    from edgevision.compile.progress import silent
    from edgevision.compile.source import load_source

    source = load_source(run)
    spec = dataclasses.replace(
        source.spec, segmentation=dataclasses.replace(source.spec.segmentation, output="classmap")
    )
    defaults = BuildConfig(input=run, out=out)  # the exporter and opset `build` uses
    return export_onnx(source.model, spec, out, defaults.exporter, defaults.opset, silent), spec


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "p10": round(float(np.percentile(values, 10)), 3),
        "p90": round(float(np.percentile(values, 90)), 3),
    }


def latency(run: Path, bundle_dir: Path, work: Path, args: argparse.Namespace) -> dict:
    from bench_build import _image

    from edgevision.backends.ort import OrtRunner
    from edgevision.bundle import Bundle
    from edgevision.runtime.segment import SegmentationHead

    bundle = Bundle.open(bundle_dir)
    x = _image(bundle_dir)
    threads = args.ort_threads
    runners = {
        "fp32": OrtRunner.from_bundle(bundle, "fp32", threads=threads),
        "int8-cpu": OrtRunner.from_bundle(bundle, "int8-cpu", threads=threads),
    }
    torch_runner, note = torch_reference(run, bundle, threads)
    if torch_runner is not None:
        runners["pytorch eager"] = torch_runner
    cm_path, cm_spec = _classmap_onnx(run, work / "classmap.onnx")
    runners["fp32 classmap"] = OrtRunner(cm_path, threads=threads)
    heads = {"logits": SegmentationHead(bundle.spec), "classmap": SegmentationHead(cm_spec)}
    for r in runners.values():
        r.activate()

    def end_to_end(runner: Any, head: Any) -> Any:
        return lambda: head(runner.infer(x), FRAME)

    fns = {k: (lambda r=r: r.infer(x)) for k, r in runners.items()}
    fns["e2e fp32 logits"] = end_to_end(runners["fp32"], heads["logits"])
    fns["e2e int8-cpu logits"] = end_to_end(runners["int8-cpu"], heads["logits"])
    fns["e2e fp32 classmap"] = end_to_end(runners["fp32 classmap"], heads["classmap"])
    try:
        times = interleaved(fns, args.rounds, args.iters)
    finally:
        for r in runners.values():
            r.deactivate()
    spread = {k: _spread(v) for k, v in times.items()}
    fp32 = spread["fp32"]["median"]
    per_round = [f / i for f, i in zip(times["fp32"], times["int8-cpu"], strict=True)]
    return {
        "ms": spread,
        "int8_speedup_median": round(fp32 / spread["int8-cpu"]["median"], 2),
        "int8_speedup_per_round": _spread(per_round),
        "note": note,
        "threads": threads,
        "frame": list(FRAME),
    }


# -- 4. pipeline ------------------------------------------------------------------------------
def pipeline(bundle_dir: Path, work: Path, args: argparse.Namespace) -> dict:
    from bench_runtime import interleaved as runtime_rounds

    from edgevision.data.synth_segment import write_segmentation_clip

    clip = write_segmentation_clip(
        work / "clip.mp4", seconds=args.clip_seconds, fps=15, seed=args.seed, progress=False
    )
    r = runtime_rounds(bundle_dir, clip, args.ort_threads, 5)
    return {k: r[k] for k in ("throughput_ratio", "throughput_ratios", "bare_runner")} | {
        "pipeline_fps": r["pipeline_file"]["fps"]
    }


# -- report -------------------------------------------------------------------------------------
def verdicts(results: dict) -> dict[str, Any]:
    out: dict[str, Any] = {}
    runs = {r["candidate"]: r for r in results["train"]}
    if "finetune" in runs:
        f = runs["finetune"]
        out["finetune_miou_ok"] = f["test_miou"] / 100 >= GOALS["miou"]
        out["finetune_time_ok"] = f["train_s"] <= GOALS["train_s"]
    if "build" in results:
        worst = max(results["build"]["default"]["drop"].values())
        out["worst_drop"] = worst
        out["drop_ok"] = worst <= GOALS["drop"]
    if "latency" in results:
        s = results["latency"]["int8_speedup_median"]
        out["speedup"], out["speedup_ok"] = s, s >= GOALS["speedup"]
    if "pipeline" in results:
        ratio = results["pipeline"]["throughput_ratio"]
        out["pipeline_ratio"], out["pipeline_ok"] = ratio, ratio >= GOALS["pipeline"]
    return out


def print_report(results: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    t = Table(title="training (test split)")
    for col in ("candidate", "test mIoU", "mean Dice", "per-class IoU", "epochs", "train s"):
        t.add_column(col)
    for r in results["train"]:
        per = "  ".join(f"{k} {v:.1f}" for k, v in r["test_per_class_iou"].items() if v is not None)
        t.add_row(
            r["candidate"],
            f"{r['test_miou']:.2f}",
            f"{r['test_mean_dice']:.2f}",
            per,
            str(r["epochs_run"]),
            f"{r['train_s']:.0f}",
        )
    console.print(t)
    for name, b in results.get("build", {}).items():
        t = Table(title=f"build ({name}: float head {b['float_head']}, {b['float_nodes']} float)")
        for col in ("artifact", "mIoU", "drop", "pixel agreement %"):
            t.add_column(col)
        for art, miou in b["miou"].items():
            t.add_row(
                art,
                f"{miou:.2f}",
                f"{b['drop'].get(art, 0.0):+.2f}",
                f"{b['agreement'].get(art, 100.0):.2f}",
            )
        console.print(t)
        console.print(f"  build time {b['build_time_s']:.0f} s on {b['images']} test images")
    if "latency" in results:
        lat = results["latency"]
        t = Table(title=f"batch-1 latency, {lat['threads']} ORT thread(s), ms")
        for col in ("what", "median", "p10", "p90"):
            t.add_column(col)
        for k, s in lat["ms"].items():
            t.add_row(k, f"{s['median']:.2f}", f"{s['p10']:.2f}", f"{s['p90']:.2f}")
        console.print(t)
        sp = lat["int8_speedup_per_round"]
        console.print(
            f"  INT8-cpu over FP32: {lat['int8_speedup_median']:.2f}x (per round median "
            f"{sp['median']:.2f}, p10-p90 {sp['p10']:.2f}-{sp['p90']:.2f})"
        )
    if "pipeline" in results:
        p = results["pipeline"]
        rounds = " ".join(f"{x:.2f}" for x in p["throughput_ratios"])
        console.print(
            f"pipeline {p['pipeline_fps']:.1f} FPS vs bare runner {p['bare_runner']['fps']:.1f}: "
            f"{p['throughput_ratio']:.2f} (rounds {rounds})"
        )
    console.print(f"verdicts: {results['verdicts']}  goals: {GOALS}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    names = [n.strip() for n in args.candidates.split(",") if n.strip()]
    results: dict[str, Any] = {"machine": machine(), "args": vars(args), "goals": GOALS}
    keep = contextlib.nullcontext(args.work) if args.work else None
    with keep or tempfile.TemporaryDirectory(prefix="bench_segment.") as tmp:
        work = Path(tmp)
        from edgevision.data.synth_segment import generate_segmentation_dataset

        t0 = time.perf_counter()
        if not args.reuse_runs:
            data, _ = generate_segmentation_dataset(
                work / "scenes", count=args.images, seed=args.seed, progress=False
            )
        results["data_s"] = round(time.perf_counter() - t0, 1)
        results["train"] = []
        for name in names:
            if args.reuse_runs:
                results["train"].append(reused_candidate(name, work))
                continue
            print(f"training {name} …", flush=True)
            results["train"].append(train_candidate(name, data, work, args))
            print(f"  {name}: test mIoU {results['train'][-1]['test_miou']:.2f}", flush=True)
        if "finetune" in names:
            run = Path(results["train"][names.index("finetune")]["run"])
            print("building …", flush=True)
            results["build"] = {
                "default": build(run, work / "bundle", args, None),
                "head-float": build(run, work / "bundle-head", args, "head"),
            }
            print("latency …", flush=True)
            results["latency"] = latency(run, work / "bundle", work, args)
            print("pipeline …", flush=True)
            results["pipeline"] = pipeline(work / "bundle", work, args)
    results["verdicts"] = verdicts(results)
    print_report(results)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
