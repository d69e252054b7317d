"""Benchmark `edgevision build` on the demo detector: INT8 speed, mAP, the float head, build time.

One run measures, side by side:

* the default build (``--float-head tail``: what follows the head's final convolutions --
  decode, sigmoid, top-K -- in float) with a fresh calibration cache: its wall time with
  ``--calib-size`` images (512 by default) and its FP32 / INT8 mAP;
* the plain build (``--float-head none``: every layer INT8), same calibration ranges;
* the head-float build (``--float-head head``): the final convolutions in float too, same
  ranges;
* the budgeted build (``--float-head none --max-drop``): the sensitivity search alone;
* batch-1 latency, interleaved round by round: FP32 under ONNX Runtime, the PyTorch eager
  detector and every build's INT8-cpu artifact, medians and the p90.

    .venv/bin/python tools/bench_build_detect.py --run RUN [--calib DIR] [--json out.json]

RUN is a detection run from `edgevision train` (e.g. `tools/bench_detect.py`'s fine-tuned one).
Without --calib, 512 fresh synthetic scenes (another seed than the training data's) are written
to the work folder and calibrated on: the training split of a 600-scene run holds only 420.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_build import _image, interleaved, torch_reference  # tools/bench_build.py
from common import build_parser, machine, write_json  # tools/common.py

GOALS = {"drop": 0.5, "speedup": 2.0, "build_s": 180.0}
CALIB_SEED = 101


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    with tempfile.TemporaryDirectory(prefix="bench-build-detect-") as tmp:
        work = Path(args.work or tmp)
        calib = args.calib or _scenes(work / "calib", args.calib_size, args.run)
        results: dict[str, Any] = {"machine": machine(), "threads": args.threads}
        builds = results["builds"] = {}
        builds["tail-float"] = _build(args, work, calib, "tail-float", "tail", fresh=True)
        builds["plain"] = _build(args, work, calib, "plain", "none")
        builds["head-float"] = _build(args, work, calib, "head-float", "head")
        builds["budgeted"] = _build(args, work, calib, "budgeted", "none", args.max_drop)
        results["latency"] = latency(args, work, [n for n, b in builds.items() if "map" in b])
        results["goals"] = goals(results)
    print_tables(results)
    write_json(args.json, results)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = build_parser(__doc__)  # --calib (default here: fresh scenes), --method, --json
    p.add_argument("--run", type=Path, required=True, help="detection RUN folder")
    p.add_argument("--max-drop", type=float, default=0.5, help="the budgeted build's budget")
    p.add_argument("--build-threads", type=int, default=0, help="threads for the builds")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads when timing")
    p.add_argument("--rounds", type=int, default=30, help="interleaved rounds")
    p.add_argument("--iters", type=int, default=10, help="inferences per backend per round")
    p.add_argument("--work", type=Path, help="keep the bundles here (default: a temp folder)")
    return p.parse_args(argv)


def _scenes(out: Path, n: int, run: Path) -> Path:
    """``n`` synthetic scenes at the training data's frame size, another seed."""
    from edgevision.data.synth_detect import generate_detection_dataset

    synth = json.loads((_data_root(run) / "synth.json").read_text())
    generate_detection_dataset(out, n, seed=CALIB_SEED, size=tuple(synth["size"]), progress=False)
    return out / "images"


def _data_root(run: Path) -> Path:
    return Path(json.loads((run / "split.json").read_text())["root"])


def _build(
    args: argparse.Namespace,
    work: Path,
    calib: Path,
    name: str,
    float_head: str,
    max_drop: float | None = None,
    fresh: bool = False,
) -> dict[str, Any]:
    """One `build_bundle`: its time, what stayed float, and its mAP per artifact."""
    from edgevision.compile import BuildConfig, build_bundle
    from edgevision.errors import BudgetExceededError

    cache = work / ("cache-fresh" if fresh else "cache")
    config = BuildConfig(
        input=args.run,
        out=work / name,
        calib=str(calib),
        calib_size=args.calib_size,
        method=args.method,
        threads=args.build_threads,
        cache_dir=cache,
        float_head=float_head,
        max_drop=max_drop,
    )
    start = time.perf_counter()
    try:
        result = build_bundle(config)
    except BudgetExceededError as exc:
        return {"failed": exc.message, "wall_s": round(time.perf_counter() - start, 1)}
    wall = time.perf_counter() - start
    if fresh:  # the other builds reuse the fresh build's ranges
        import shutil

        shutil.copytree(cache, work / "cache", dirs_exist_ok=True)
    acc = result.report["accuracy"]["models"]
    budget = result.report.get("accuracy_budget") or {}
    return {
        "wall_s": round(wall, 1),
        "build_time_s": round(result.build_time_s, 1),
        "timings_s": result.report["timings_s"],
        "calibration_images": len(result.calibration),
        "eval_images": result.evaluation.n,
        "float_nodes": len(result.report["nodes_to_exclude"]),
        "budget_layers": [r["layer"] for r in budget.get("float_layers", [])],
        "deploy": {t: d["artifact"] for t, d in result.report["deploy"].items()},
        "map": {k: m["map"] for k, m in acc.items()},
        "map50": {k: m["map50"] for k, m in acc.items()},
        "drop": {k: m["drop_points"] for k, m in acc.items() if "drop_points" in m},
        "agreement": {k: m["agreement"] for k, m in acc.items() if "agreement" in m},
        "mean_matched_score": {k: m["mean_matched_score"] for k, m in acc.items()},
        "threshold_for_fp32_precision": {
            k: m["threshold_for_reference_precision"] for k, m in acc.items()
        },
    }


def latency(args: argparse.Namespace, work: Path, names: list[str]) -> dict[str, Any]:
    """Batch-1 milliseconds, interleaved: FP32 ORT, PyTorch eager, each build's INT8-cpu."""
    import statistics

    import numpy as np

    from edgevision.backends.ort import OrtRunner
    from edgevision.bundle import Bundle

    bundle = Bundle.open(work / "tail-float")
    runners = {"fp32 (ORT)": OrtRunner.from_bundle(bundle, "fp32", threads=args.threads)}
    for name in names:
        b = Bundle.open(work / name)
        runners[f"int8-cpu {name}"] = OrtRunner.from_bundle(b, "int8-cpu", threads=args.threads)
    torch_runner, note = torch_reference(args.run, bundle, args.threads)
    if torch_runner is not None:
        runners["pytorch eager"] = torch_runner
    x = _image(work / "tail-float")
    for r in runners.values():
        r.activate()
    try:
        times = interleaved(
            {k: (lambda r=r: r.infer(x)) for k, r in runners.items()}, args.rounds, args.iters
        )
    finally:
        for r in runners.values():
            r.deactivate()
    med = {k: statistics.median(v) for k, v in times.items()}
    fp32 = med["fp32 (ORT)"]
    return {
        "median_ms": {k: round(v, 3) for k, v in med.items()},
        "p10_ms": {k: round(float(np.percentile(v, 10)), 3) for k, v in times.items()},
        "p90_ms": {k: round(float(np.percentile(v, 90)), 3) for k, v in times.items()},
        "fp32_over": {k: round(fp32 / v, 2) for k, v in med.items()},
        "note": note,
        "batch": 1,
        "rounds": args.rounds,
        "iters": args.iters,
    }


def goals(results: dict[str, Any]) -> dict[str, Any]:
    default = results["builds"]["tail-float"]
    lat = results["latency"]
    worst = max(default["drop"].values())
    speedup = lat["fp32_over"]["int8-cpu tail-float"]
    return {
        "default_drop_points": worst,
        "default_drop_ok": worst <= GOALS["drop"],
        "int8_over_fp32_speedup": speedup,
        "speedup_ok": speedup >= GOALS["speedup"],
        "build_s": default["build_time_s"],
        "build_ok": default["build_time_s"] < GOALS["build_s"],
    }


def print_tables(results: dict[str, Any]) -> None:
    print(f"machine: {results['machine']}")
    print("\nbuild        artifact   mAP@[.5:.95]  mAP@.5   drop   agreement  time s  float")
    for name, b in results["builds"].items():
        if "failed" in b:
            print(f"{name:<12} failed: {b['failed']}")
            continue
        for art, m in b["map"].items():
            drop = b["drop"].get(art)
            agree = b["agreement"].get(art)
            print(
                f"{name:<12} {art:<10} {m:>12.2f}  {b['map50'][art]:>6.2f}  "
                f"{'—' if drop is None else f'{drop:5.2f}':>5}  "
                f"{'—' if agree is None else f'{agree:7.2f}':>9}  {b['build_time_s']:>6.1f}  "
                f"{b['float_nodes']}"
            )
    lat = results["latency"]
    print(f"\nlatency, batch 1, {results['threads']} thread(s), median (p10–p90) ms, FP32/it:")
    for k, v in lat["median_ms"].items():
        print(
            f"  {k:<22} {v:8.3f} ({lat['p10_ms'][k]:.3f}–{lat['p90_ms'][k]:.3f})  "
            f"{lat['fp32_over'][k]:.2f}x"
        )
    print(f"\ngoals: {json.dumps(results['goals'])}")


if __name__ == "__main__":
    sys.exit(main())
