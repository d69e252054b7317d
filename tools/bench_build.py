"""Benchmark `edgevision build` on the demo model: INT8 speed, accuracy, build time.

Everything is measured in one run and latencies interleaved round by round, so the ratios hold
on a shared, noisy machine. Batch 1, the same real preprocessed image for every backend.

    .venv/bin/python tools/bench_build.py --run RUN [--bundle BUNDLE] [--json out.json]
    .venv/bin/python tools/bench_build.py --bundle BUNDLE     # any bundle, also one from an ONNX
    .venv/bin/python tools/bench_build.py --variants [--run RUN]   # INT8 CPU recipes side by side

Without --bundle (or with --rebuild) the bundle is built here, with a fresh calibration cache, so
the build time is real. A --bundle alone is measured as it is; its PyTorch-eager column needs
the checkpoint it was built from (skipped, with a note, for a bundle built from an ONNX model).
--variants quantizes EfficientNet-Lite0 (the RUN's model, else
``create_model(num_classes=13)`` with ImageNet weights) at 128 px with several ORT recipes and
times each against FP32; it needs no trained model (speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from common import build_parser, machine, write_json  # tools/common.py

GOALS = {"speedup": 2.5, "moonshot": 3.0, "drop": 0.5, "agreement": 99.0, "build_s": 120.0}


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    results: dict[str, Any] = {"machine": machine(), "threads": args.threads}
    if args.variants:
        results["variants"] = bench_variants(args)
    if args.run or args.bundle:
        bundle, build = ensure_bundle(args)
        results["build"] = build
        results["latency"] = bench_latency(args.run, bundle, args)
        results["accuracy"] = accuracy(bundle)
        results["goals"] = goals(results)
    print_tables(results)
    write_json(args.json, results)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = build_parser(__doc__)  # the task's method, as the demo builds
    p.add_argument("--run", type=Path, help="RUN folder from `edgevision train` (the demo model)")
    p.add_argument("--bundle", type=Path, help="bundle to measure (built here if missing)")
    p.add_argument("--rebuild", action="store_true", help="build the bundle even if it exists")
    p.add_argument("--build-threads", type=int, default=2, help="threads for the build")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads when timing")
    p.add_argument("--rounds", type=int, default=30, help="interleaved rounds")
    p.add_argument("--iters", type=int, default=20, help="inferences per backend per round")
    p.add_argument("--variants", action="store_true", help="compare INT8 CPU recipes")
    p.add_argument("--size", type=int, default=128, help="--variants: input size without --run")
    args = p.parse_args(argv)
    if not args.run and not args.bundle and not args.variants:
        p.error("give --run RUN (and optionally --bundle), --bundle BUNDLE, or --variants")
    if args.bundle and not args.run and (args.rebuild or not args.bundle.exists()):
        p.error(f"--bundle {args.bundle}: building it needs --run RUN")
    return args


# -- build -------------------------------------------------------------------------------------
def ensure_bundle(args: argparse.Namespace) -> tuple[Path, dict[str, Any]]:
    """The bundle to measure, built here (fresh calibration cache) when asked or missing."""
    from edgevision.compile import BuildConfig, build_bundle

    bundle = args.bundle or Path(tempfile.mkdtemp(prefix="bench-build-")) / "bundle"
    if bundle.exists() and not args.rebuild:
        manifest = json.loads((bundle / "manifest.json").read_text())
        return bundle, {"seconds": manifest["build"]["time_s"], "measured": "from manifest"}
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as cache:
        config = BuildConfig(
            input=args.run,
            out=bundle,
            calib=args.calib,
            calib_size=args.calib_size,
            method=args.method,
            threads=args.build_threads,
            cache_dir=Path(cache),
        )
        start = time.perf_counter()
        result = build_bundle(config)
        seconds = time.perf_counter() - start
    return bundle, {
        "seconds": round(seconds, 1),
        "measured": "here",
        "threads": args.build_threads,
        "calibration_images": len(result.calibration),
        "steps_s": result.report["timings_s"],
    }


# -- latency -----------------------------------------------------------------------------------
def interleaved(fns: dict[str, Callable[[], Any]], rounds: int, iters: int) -> dict[str, list]:
    """Per-call milliseconds of each fn, one block of ``iters`` calls per fn per round."""
    for fn in fns.values():
        for _ in range(max(3, iters // 2)):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(iters):
                fn()
            times[name].append(1000 * (time.perf_counter() - start) / iters)
    return times


def _image(bundle: Path) -> np.ndarray:
    """A real preprocessed calibration image (falls back to a mid-grey frame)."""
    from edgevision.bundle import Bundle
    from edgevision.data.images import read_image
    from edgevision.preprocess import preprocess

    b = Bundle.open(bundle)
    calib = json.loads(b.path("calibration.json").read_text())
    for entry in calib.get("files", []):
        path = Path(calib["root"]) / entry["path"]
        if path.is_file():
            return preprocess(read_image(path), b.spec)
    return preprocess(np.full((b.spec.height, b.spec.width, 3), 128, np.uint8), b.spec)


TORCH = "pytorch eager"


def torch_reference(run: Path | None, bundle: Any, threads: int) -> tuple[Any, str | None]:
    """The PyTorch-eager runner for the bundle's model, or None and why it is skipped: RUN when
    given, else the checkpoint the bundle was built from (an ONNX input has no PyTorch model)."""
    from edgevision.backends.torch import TorchRunner
    from edgevision.errors import EdgeVisionError

    if run is not None:
        return TorchRunner.from_checkpoint(run, threads=threads), None
    source = bundle.manifest.get("build", {}).get("source") or {}
    if source.get("kind") == "onnx":
        return None, f"{TORCH} skipped: the bundle was built from an ONNX model ({source['path']})"
    try:
        return TorchRunner.from_bundle(bundle, threads=threads), None
    except EdgeVisionError as exc:
        return None, f"{TORCH} skipped: {exc.message}"


def bench_latency(run: Path | None, bundle: Path, args: argparse.Namespace) -> dict[str, Any]:
    from edgevision.backends.ort import OrtRunner
    from edgevision.bundle import Bundle

    b = Bundle.open(bundle)
    x = _image(bundle)
    runners = {
        "int8-cpu (ORT)": OrtRunner.from_bundle(b, "int8-cpu", threads=args.threads),
        "fp32 (ORT)": OrtRunner.from_bundle(b, "fp32", threads=args.threads),
    }
    reference, note = torch_reference(run, b, args.threads)
    if reference is not None:
        runners[TORCH] = reference
    for r in runners.values():
        r.activate()
    try:
        fns = {name: (lambda r=r: r.infer(x)) for name, r in runners.items()}
        times = interleaved(fns, args.rounds, args.iters)
    finally:
        for r in runners.values():
            r.deactivate()
    med = {k: statistics.median(v) for k, v in times.items()}
    int8, fp32, torch_ms = med["int8-cpu (ORT)"], med["fp32 (ORT)"], med.get(TORCH)
    return {
        "median_ms": {k: round(v, 3) for k, v in med.items()},
        "p90_ms": {k: round(float(np.percentile(v, 90)), 3) for k, v in times.items()},
        "fp32_over_int8": round(fp32 / int8, 2),
        "torch_over_int8": None if torch_ms is None else round(torch_ms / int8, 2),
        "torch_over_fp32": None if torch_ms is None else round(torch_ms / fp32, 2),
        "note": note,
        "batch": 1,
        "rounds": args.rounds,
        "iters": args.iters,
    }


def accuracy(bundle: Path) -> dict[str, Any]:
    """The build's own verification on the test split (from the manifest)."""
    acc = json.loads((bundle / "manifest.json").read_text()).get("accuracy") or {}
    models = acc.get("models", {})
    out = {"images": acc.get("images"), "fp32_top1": models.get("fp32", {}).get("top1")}
    for name in ("int8-cpu", "int8-trt"):
        if name in models:
            m = models[name]
            out[name] = {k: m[k] for k in ("top1", "drop_points", "agreement")}
    return out


def goals(results: dict[str, Any]) -> dict[str, Any]:
    """Each goal met (True / False), or None where the bundle has no accuracy to judge."""
    speed = results["latency"]["fp32_over_int8"]
    cpu = results["accuracy"].get("int8-cpu")
    return {
        "int8 >= 2.5x fp32": speed >= GOALS["speedup"],
        "int8 >= 3x fp32 (moonshot)": speed >= GOALS["moonshot"],
        "drop <= 0.5 points": None if cpu is None else cpu["drop_points"] <= GOALS["drop"],
        "agreement >= 99%": None if cpu is None else cpu["agreement"] >= GOALS["agreement"],
        "build < 2 min": results["build"]["seconds"] < GOALS["build_s"],
    }


# -- INT8 CPU recipes ---------------------------------------------------------------------------
DEFAULT_RECIPE = "QDQ U8S8 per-channel (default)"
SHIPPED_RECIPE = "+ input padded to 4 channels (shipped)"


def _variant_recipes() -> dict[str, dict[str, Any]]:
    from onnxruntime.quantization import QuantFormat, QuantType

    u8s8 = dict(activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    s8s8 = dict(activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True)
    return {
        DEFAULT_RECIPE: u8s8,
        "QDQ U8S8 per-tensor": u8s8 | {"per_channel": False},
        "QDQ U8S8 reduce_range": u8s8 | {"reduce_range": True},
        "QDQ U8S8 keep Clip": u8s8 | {"extra_options": {"QDQKeepRemovableActivations": True}},
        "QDQ U8S8 Conv/Gemm/Add only": u8s8 | {"op_types_to_quantize": ["Conv", "Gemm", "Add"]},
        "QDQ S8S8": s8s8,
        "QDQ S8S8 symmetric act.": s8s8 | {"extra_options": {"ActivationSymmetric": True}},
        "QOperator U8S8": u8s8 | {"quant_format": QuantFormat.QOperator},
        "QOperator S8S8": s8s8 | {"quant_format": QuantFormat.QOperator},
    }


def _variant_model(args: argparse.Namespace, work: Path) -> tuple[Path, Path, Path, Any]:
    """Exported Lite0, pre-processed by ORT alone and by `prepare_for_quantization`, and cached
    minmax ranges from real or random images."""
    from edgevision.compile.calibrate import calibrate
    from edgevision.compile.calibration import CalibrationSet
    from edgevision.compile.export import export_onnx
    from edgevision.compile.quantize import prepare_for_quantization
    from edgevision.spec import ModelSpec

    if args.run:
        from edgevision.train.checkpoint import load_checkpoint

        ckpt = load_checkpoint(args.run)
        model, spec = ckpt.model, ckpt.spec
    else:
        from edgevision.train.backbones import create_model

        model = create_model(num_classes=13).eval()
        spec = ModelSpec(labels=[f"c{i}" for i in range(13)], input_size=(args.size, args.size))
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32 = export_onnx(model, spec, work / "fp32.onnx")
    prep = prepare_for_quantization(fp32, work / "prep.onnx")
    raw = work / "prep.raw.onnx"  # ORT's pre-processing alone (same tensor names)
    quant_pre_process(str(fp32), str(raw))
    rng = np.random.default_rng(0)
    tensors = rng.normal(size=(32, *spec.input_shape(1)[1:])).astype(np.float32)
    calib = CalibrationSet(work, "random normal (speed only)", [], tensors)
    ranges = calibrate(prep, calib, spec, cache_dir=work / "cache", threads=args.build_threads)
    return fp32, raw, prep, ranges


def bench_variants(args: argparse.Namespace) -> dict[str, Any]:
    """Each INT8 recipe vs FP32, interleaved, plus graph-optimisation level on the default.

    The recipes quantize ORT's own pre-processed model; the last two rows add this project's
    exact CPU rewrites one at a time (global mean as GlobalAveragePool, then the 3-channel
    input padded to 4: what `edgevision build` ships as ``model.int8.cpu.onnx``).
    """
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import quantize_static

    from edgevision.compile.quantize import quantize_for_target

    all_opt = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    with tempfile.TemporaryDirectory(prefix="bench-variants-") as tmp:
        work = Path(tmp)
        fp32, raw, prep, ranges = _variant_model(args, work)
        models = {"FP32": (fp32, all_opt)}
        for i, (name, kw) in enumerate(_variant_recipes().items()):
            out = work / f"v{i}.onnx"
            quantize_static(
                str(raw),
                str(out),
                None,
                calibrate_method=ranges.ort_method,
                calibration_cache_path=str(ranges.cache_path),
                **kw,
            )
            models[name] = (out, all_opt)
        default = models[DEFAULT_RECIPE][0]
        models["default, graph opt EXTENDED"] = (
            default,
            ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        )
        gap = quantize_for_target(prep, ranges, "cpu", work / "gap.onnx", finalize=False)
        models["default + mean as GlobalAveragePool"] = (gap, all_opt)
        shipped = quantize_for_target(prep, ranges, "cpu", work / "shipped.onnx")
        assert any(n.op_type == "Pad" for n in onnx.load(str(shipped)).graph.node)
        models[SHIPPED_RECIPE] = (shipped, all_opt)
        sessions = {
            name: _session(path, level, args.threads) for name, (path, level) in models.items()
        }
        x = {"input": np.random.default_rng(1).normal(size=(1, 3, 128, 128)).astype(np.float32)}
        if args.run:
            x = {"input": np.zeros(sessions["FP32"].get_inputs()[0].shape[1:], np.float32)[None]}
        fns = {name: (lambda s=s: s.run(None, x)) for name, s in sessions.items()}
        times = interleaved(fns, args.rounds, args.iters)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        name: {"median_ms": round(ms, 3), "speedup_vs_fp32": round(med["FP32"] / ms, 2)}
        for name, ms in med.items()
    }


def _session(path: Path, level: Any, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = level
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# -- output ------------------------------------------------------------------------------------
def print_tables(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=120)
    m = results["machine"]
    console.print(
        f"{m['cpu']}, {m['cores']} cores, AVX-512 VNNI: {m.get('avx512_vnni')}, "
        f"ONNX Runtime {m['ort']}, {results['threads']} thread(s) when timing"
    )
    if "variants" in results:
        t = Table(title="INT8 CPU recipes vs FP32 (batch 1, interleaved)")
        for col in ("recipe", "median ms", "speedup vs FP32"):
            t.add_column(col)
        for name, v in results["variants"].items():
            t.add_row(name, f"{v['median_ms']:.3f}", f"{v['speedup_vs_fp32']:.2f}x")
        console.print(t)
    if "latency" in results:
        lat = results["latency"]
        t = Table(title="latency, batch 1, interleaved")
        for col in ("backend", "median ms", "p90 ms"):
            t.add_column(col)
        for name, ms in lat["median_ms"].items():
            t.add_row(name, f"{ms:.3f}", f"{lat['p90_ms'][name]:.3f}")
        console.print(t)
        ratios = f"FP32/INT8 {lat['fp32_over_int8']}x"
        if lat["torch_over_int8"] is not None:
            ratios += f", PyTorch/INT8 {lat['torch_over_int8']}x"
            ratios += f", PyTorch/FP32 {lat['torch_over_fp32']}x"
        console.print(ratios)
        if lat["note"]:
            console.print(lat["note"])
        console.print(f"accuracy: {results['accuracy']}")
        console.print(f"build: {results['build']}")
        console.print(f"goals: {results['goals']}")


if __name__ == "__main__":
    sys.exit(main())
