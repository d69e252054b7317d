"""The profiler's own overhead: its latency vs a bare ``session.run`` loop, side by side.

For each model size, one bundle is profiled with a bare onnxruntime session (same model, same
threads) timed in the same round-robin rounds. A ratio near 1.00 means the numbers the profiler
reports are the backend's, not the profiler's. Prints a table and writes JSON.

    .venv/bin/python tools/bench_profile.py --sizes 64,128,224 --iterations 300 --json out.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.helpers (the tiny classifier builder)


def bench_size(size: int, iterations: int, warmup: int, threads: int, tmp: Path) -> dict:
    """Profile one model size against a bare session; p50/mean ratios and absolute times."""
    import numpy as np
    import onnxruntime as ort

    from edgevision.bundle import write_bundle
    from edgevision.profile import profile_models
    from edgevision.spec import ModelSpec
    from tests.helpers import tiny_classifier_onnx

    onnx_path = tiny_classifier_onnx(tmp / f"m{size}.onnx", size=(size, size))
    bundle = write_bundle(
        tmp / f"b{size}",
        {"model.fp32.onnx": onnx_path},
        ModelSpec(labels=("a", "b", "c"), input_size=(size, size)),
        {"fp32": {"file": "model.fp32.onnx", "precision": "fp32", "target": "any"}},
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    feed = {"input": np.random.default_rng(0).normal(size=(1, 3, size, size)).astype(np.float32)}
    report = profile_models(
        bundle,
        iterations=iterations,
        warmup=warmup,
        threads=threads,
        baselines={"bare": lambda: session.run(None, feed)},
    )
    prof = report.find("fp32")[0].stats
    bare = report.find("baseline:bare")[0].stats
    return {
        "size": size,
        "profiler_p50_ms": prof.p50,
        "bare_p50_ms": bare.p50,
        "ratio_p50": prof.p50 / bare.p50,
        "profiler_mean_ms": prof.mean,
        "bare_mean_ms": bare.mean,
        "ratio_mean": prof.mean / bare.mean,
        "preprocess_p50_ms": report.find("preprocess")[0].stats.p50,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64,128,224", help="square input sizes, comma-separated")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)

    from rich.console import Console
    from rich.table import Table

    from edgevision.fileio import atomic_write_json
    from edgevision.profile import describe_machine

    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [bench_size(s, args.iterations, args.warmup, args.threads, Path(tmp)) for s in sizes]
    table = Table(title=f"profiler vs bare session.run ({args.threads} thread(s), interleaved)")
    for col in ("input", "profiler p50", "bare p50", "ratio p50", "ratio mean", "preproc p50"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            f"{r['size']}x{r['size']}",
            f"{r['profiler_p50_ms']:.4f} ms",
            f"{r['bare_p50_ms']:.4f} ms",
            f"{r['ratio_p50']:.3f}",
            f"{r['ratio_mean']:.3f}",
            f"{r['preprocess_p50_ms']:.4f} ms",
        )
    Console().print(table)
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k != "json"}
        payload = {"machine": describe_machine(), "settings": settings, "results": rows}
        atomic_write_json(args.json, payload)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
