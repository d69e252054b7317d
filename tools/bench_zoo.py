"""Model zoo: ten timm architectures a team might bring, through `edgevision build`.

Each is created with random weights (timm, nothing downloaded) at --size px, exported the way
users export it (``torch.onnx.export``: legacy exporter, opset 17, dynamic batch) and built from
that ONNX and a 10-label spec with ``build_bundle`` and default options (calibration: 64
synthetic road-sign images; targets cpu and tensorrt). Per model: whether the build passed (or
its error, one line), TensorRT's Q/DQ rules on the int8-trt artifact (`check_tensorrt_qdq`), the
share of Conv/MatMul/Gemm layers quantized in each artifact, INT8/FP32 latency at batch 1 (the
build's own deployment timing, and timed again here, interleaved), and the artifact the cpu
target deploys and why.

Two of them (--train) are also trained briefly from scratch on the synthetic road signs and
built from their RUN folder (legacy exporter, opset 17): the deployed artifacts' agreement with
FP32 on the run's test split, each under 99 % checked to be flagged in the build's warnings.

    .venv/bin/python tools/bench_zoo.py --json zoo.json            # all ten + two trained
    .venv/bin/python tools/bench_zoo.py --models resnet18,levit_128s --skip-train
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from common import machine, write_json  # tools/common.py

ZOO = (
    "resnet18",
    "mobilenetv4_conv_small",
    "regnetx_002",
    "deit_tiny_patch16_224",
    "convnext_atto",
    "mobilenetv3_large_100",
    "mobilevitv2_050",
    "efficientvit_m0",
    "fastvit_t8",
    "levit_128s",
)
TRAINED = ("resnet18", "mobilenetv4_conv_small")
CLASSES = 10
MIN_AGREEMENT = 99.0
TRAINED_GOAL = "every trained model's deployed artifacts >= 99% agreement or flagged"
QUANTIZABLE = ("Conv", "MatMul", "Gemm")
FP32_FILE, CPU_FILE, TRT_FILE = "model.fp32.onnx", "model.int8.cpu.onnx", "model.int8.trt.onnx"


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.WARNING if args.verbose else logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="bench-zoo-") as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = run(args, work)
    print_tables(results)
    write_json(args.json, results)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default=",".join(ZOO), help="comma-separated timm names (the ten)")
    p.add_argument("--size", type=int, default=128, help="input size of the zoo models (128)")
    p.add_argument("--train", default=",".join(TRAINED), help="models to train briefly")
    p.add_argument("--skip-train", action="store_true", help="skip the trained models")
    p.add_argument("--train-size", type=int, default=96, help="input size when training (96)")
    p.add_argument("--epochs", type=int, default=20, help="training epochs (20)")
    p.add_argument("--per-class", type=int, default=60, help="road-sign images per class (60)")
    p.add_argument("--calib-size", type=int, default=64, help="calibration images (64)")
    p.add_argument("--threads", type=int, default=2, help="threads for training and builds")
    p.add_argument("--rounds", type=int, default=40, help="interleaved rounds, timed again")
    p.add_argument("--work", help="keep the exports and bundles in this folder")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--verbose", action="store_true", help="show the build's log warnings")
    return p.parse_args(argv)


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Every zoo model built from its ONNX, then the trained ones from their RUN folders."""
    from edgevision.data.synth import generate_dataset

    models = [m for m in args.models.split(",") if m]
    per_class = math.ceil(args.calib_size / 13)  # the synthetic set has 13 classes
    calib = generate_dataset(
        work / "calib", per_class=per_class, seed=1, size=(args.size, args.size), progress=False
    )
    rows = []
    for i, name in enumerate(models, 1):
        print(f"[{i}/{len(models)}] {name} ...", flush=True)
        rows.append(bench_model(name, args, work / name, calib))
        print(f"  {summary_line(rows[-1])}", flush=True)
    trained = []
    if not args.skip_train:
        for name in [m for m in args.train.split(",") if m]:
            print(f"[train] {name} ...", flush=True)
            trained.append(bench_trained(name, args, work / f"trained-{name}"))
            print(f"  {trained_line(trained[-1])}", flush=True)
    results = {
        "machine": machine(),
        "size": args.size,
        "calib_size": args.calib_size,
        "threads": args.threads,
        "models": rows,
        "trained": trained,
    }
    results["warnings"] = report_warnings(rows, trained)
    results["goals"] = goals(rows, trained, skipped_train=args.skip_train)
    return results


# -- one zoo model ------------------------------------------------------------------------------
def create(name: str, size: int, classes: int = CLASSES, seed: int = 0) -> Any:
    """The timm model with random weights, a ``classes`` head, built for ``size`` px where its
    constructor takes a size (DeiT, LeViT, …), in eval mode."""
    import torch

    from edgevision.train.backbones import create_model

    torch.manual_seed(seed)
    return create_model(name, num_classes=classes, weights=None, img_size=(size, size)).eval()


def export_legacy(model: Any, path: Path, size: int) -> Path:
    """``torch.onnx.export`` as a user calls it: legacy exporter, opset 17, dynamic batch."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(1, 3, size, size),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["images"],
            output_names=["output"],
            dynamic_axes={"images": {0: "batch"}, "output": {0: "batch"}},
        )
    return path


def bench_model(name: str, args: argparse.Namespace, work: Path, calib: Path) -> dict[str, Any]:
    """Export ``name``, build it from the ONNX with default options, and inspect the bundle."""
    from edgevision.compile import BuildConfig
    from edgevision.spec import ModelSpec

    row: dict[str, Any] = {"model": name}
    try:
        model = create(name, args.size)
        row["params_m"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
        onnx_path = export_legacy(model, work / f"{name}.onnx", args.size)
    except Exception as exc:  # a model this torch/timm cannot make or export
        return row | {"build_ok": False, "error": f"export: {one_line(exc)}"}
    labels = [f"class{i}" for i in range(CLASSES)]
    spec = ModelSpec(labels=labels, input_size=(args.size, args.size)).save(work / "spec.json")
    config = BuildConfig(
        input=onnx_path,
        out=work / "bundle",
        spec=spec,
        calib=str(calib),
        calib_size=args.calib_size,
        targets=("cpu", "tensorrt"),
        threads=args.threads,
        cache_dir=work / "cache",
    )
    result, row["build_s"], error = build(config)
    if result is None:
        return row | {"build_ok": False, "error": error}
    return row | {"build_ok": True, "error": None} | inspect_bundle(result.out, args.rounds)


def build(config: Any) -> tuple[Any, float, str | None]:
    """``build_bundle(config)``: the result (None when it failed), seconds, the error line."""
    from edgevision.compile import build_bundle

    start = time.perf_counter()
    try:
        result, error = build_bundle(config), None
    except Exception as exc:  # user errors and bugs alike: one model must not stop the zoo
        result, error = None, one_line(exc)
    return result, round(time.perf_counter() - start, 1), error


def one_line(exc: BaseException) -> str:
    """An exception as one line: its type (for a bug) and message, lines joined."""
    from edgevision.errors import EdgeVisionError

    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    text = text if isinstance(exc, EdgeVisionError) else f"{type(exc).__name__}: {text}"
    return text if len(text) <= 400 else text[:397] + "..."


def quantized_share(path: Path) -> dict[str, int]:
    """How many Conv/MatMul/Gemm nodes read both their inputs through DequantizeLinear."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {o: n.op_type for n in graph.node for o in n.output}
    ops = [n for n in graph.node if n.op_type in QUANTIZABLE]
    done = [n for n in ops if all(producer.get(i) == "DequantizeLinear" for i in n.input[:2])]
    return {"quantized": len(done), "layers": len(ops)}


def inspect_bundle(bundle: Path, rounds: int) -> dict[str, Any]:
    """Q/DQ check, quantized share, the deployment record and INT8/FP32 timed again."""
    from edgevision.bundle import Bundle
    from edgevision.compile.deploy import time_models
    from edgevision.compile.trt_check import check_tensorrt_qdq

    manifest = json.loads((bundle / "manifest.json").read_text())
    out: dict[str, Any] = {}
    if (bundle / TRT_FILE).is_file():
        problems = check_tensorrt_qdq(bundle / TRT_FILE)
        out["qdq_check"] = "ok" if not problems else f"{len(problems)}: {problems[0]}"
    out["quantized"] = {
        artifact: quantized_share(bundle / file)
        for artifact, file in (("int8-cpu", CPU_FILE), ("int8-trt", TRT_FILE))
        if (bundle / file).is_file()
    }
    deploy = manifest.get("deploy", {}).get("cpu", {})
    latency = deploy.get("latency_ms") or {}
    out["deployed"] = deploy.get("artifact")
    out["why"] = deploy.get("why")
    out["float_nodes_for_speed"] = len(deploy.get("float_nodes_for_speed") or [])
    out["latency_ms"] = {name: ms.get("1") for name, ms in latency.items()}
    if "fp32" in latency and "int8-cpu" in latency:
        out["int8_over_fp32"] = round(latency["int8-cpu"]["1"] / latency["fp32"]["1"], 3)
    shape = Bundle.open(bundle).spec.input_shape(1)
    models = {"fp32": bundle / FP32_FILE, "int8-cpu": bundle / CPU_FILE}
    again = time_models(models, [1], shape, iterations=rounds, threads=1)
    out["retimed_ms"] = {name: ms["1"] for name, ms in again.items()}
    out["int8_over_fp32_retimed"] = round(again["int8-cpu"]["1"] / again["fp32"]["1"], 3)
    out["deployed_slower"] = out["deployed"] == "int8-cpu" and out["int8_over_fp32_retimed"] > 1
    out["build_warnings"] = manifest_warnings(bundle)
    return out


def manifest_warnings(bundle: Path) -> list[str]:
    report = bundle / "report.json"
    return json.loads(report.read_text()).get("warnings", []) if report.is_file() else []


# -- trained models ---------------------------------------------------------------------------
def bench_trained(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Train ``name`` from scratch on the road signs, build from the RUN, read the agreement."""
    from edgevision.compile import BuildConfig
    from edgevision.data.synth import generate_dataset
    from edgevision.train import TrainConfig, train

    row: dict[str, Any] = {"model": name, "size": args.train_size, "epochs": args.epochs}
    data = work.parent / "signs"
    if not data.is_dir():
        generate_dataset(data, per_class=args.per_class, seed=0, progress=False)
    start = time.perf_counter()
    try:
        trained = train(
            TrainConfig(
                data=str(data),
                out=str(work / "run"),
                backbone=name,
                weights=None,
                size=args.train_size,
                epochs=args.epochs,
                patience=args.epochs,
                threads=args.threads,
                overwrite=True,
                quiet=True,
            )
        )
    except Exception as exc:
        return row | {"build_ok": False, "error": f"train: {one_line(exc)}"}
    row["train_s"] = round(time.perf_counter() - start, 1)
    row["fp32_test_top1"] = round(100 * trained.test_top1, 2)
    config = BuildConfig(
        input=trained.run_dir,
        out=work / "bundle",
        calib_size=args.calib_size,
        targets=("cpu", "tensorrt"),
        threads=args.threads,
        exporter="legacy",
        opset=17,
        cache_dir=work / "cache",
    )
    result, row["build_s"], error = build(config)
    if result is None:
        return row | {"build_ok": False, "error": error}
    row |= {"build_ok": True, "error": None}
    return row | agreement(result)


def agreement(result: Any) -> dict[str, Any]:
    """What each target deploys, its agreement with FP32, and whether the build flagged it."""
    manifest, ev = result.manifest, result.evaluation
    out: dict[str, Any] = {"images": ev.n, "deployed": {}, "agreement": {}, "flagged": {}}
    for target, record in manifest.get("deploy", {}).items():
        artifact = record["artifact"]
        value = 100.0 if artifact == "fp32" else round(ev.agreement(artifact), 2)
        out["deployed"][target] = artifact
        out["agreement"][target] = value
        out["flagged"][target] = any(
            "low agreement" in w and artifact in w for w in result.warnings
        )
    out["int8_agreement"] = {
        name: round(ev.agreement(name), 2) for name in ev.predictions if name != ev.reference
    }
    out["why"] = manifest.get("deploy", {}).get("cpu", {}).get("why")
    return out


# -- goals and output -------------------------------------------------------------------------
def report_warnings(rows: list[dict], trained: list[dict]) -> list[str]:
    """Everything short of a goal, one line each."""
    out = [f"{r['model']}: build failed: {r['error']}" for r in rows if not r.get("build_ok")]
    out += [
        f"{r['model']}: TensorRT Q/DQ check: {r['qdq_check']}"
        for r in rows
        if r.get("build_ok") and r.get("qdq_check") != "ok"
    ]
    out += [
        f"{r['model']}: deployed int8-cpu is slower than FP32 at batch 1 when timed again "
        f"({r['int8_over_fp32_retimed']:.2f}x)"
        for r in rows
        if r.get("deployed_slower")
    ]
    for r in trained:
        if not r.get("build_ok"):
            out.append(f"{r['model']} (trained): {r['error']}")
            continue
        for target, value in r["agreement"].items():
            if value < MIN_AGREEMENT:
                flag = "flagged in the build's warnings" if r["flagged"][target] else "NOT flagged"
                out.append(
                    f"{r['model']} (trained): {target} deploys {r['deployed'][target]}, "
                    f"{value:.2f}% agreement with FP32 on {r['images']} test images "
                    f"(< {MIN_AGREEMENT:g}%, {flag})"
                )
    return out


def goals(rows: list[dict], trained: list[dict], skipped_train: bool = False) -> dict[str, Any]:
    ok = sum(bool(r.get("build_ok")) for r in rows)
    slower = sum(bool(r.get("deployed_slower")) for r in rows)
    out: dict[str, Any] = {
        f"{ok}/{len(rows)} build with default options": ok == len(rows),
        f"{slower} deployed artifacts slower than FP32 at batch 1": slower == 0,
    }
    if not skipped_train:
        good = all(
            r.get("build_ok")
            and all(v >= MIN_AGREEMENT or r["flagged"][t] for t, v in r["agreement"].items())
            for r in trained
        )
        out[TRAINED_GOAL] = good and bool(trained)
    return out


def _share(q: dict[str, int] | None) -> str:
    return "-" if not q else f"{q['quantized']}/{q['layers']}"


def table_row(r: dict[str, Any]) -> list[str]:
    """One zoo model as the table's cells."""
    if not r.get("build_ok"):
        return [r["model"], "FAIL", "-", "-", "-", "-", "-", r.get("error") or ""]
    q = r.get("quantized", {})
    ratio = r.get("int8_over_fp32")
    return [
        r["model"],
        f"ok ({r['build_s']:.0f} s)",
        r.get("qdq_check", "-") if len(r.get("qdq_check", "-")) < 30 else "FAIL",
        f"{_share(q.get('int8-cpu'))} · {_share(q.get('int8-trt'))}",
        "-" if ratio is None else f"{ratio:.2f}",
        f"{r['int8_over_fp32_retimed']:.2f}",
        str(r.get("deployed")),
        r.get("why") or "",
    ]


HEADERS = (
    "model",
    "build",
    "trt Q/DQ",
    "quantized cpu · trt",
    "INT8/FP32 b1 (build)",
    "INT8/FP32 b1 (again)",
    "cpu deploys",
    "why",
)


def summary_line(r: dict[str, Any]) -> str:
    return " | ".join(table_row(r)[1:])


def trained_line(r: dict[str, Any]) -> str:
    if not r.get("build_ok"):
        return f"FAIL: {r['error']}"
    parts = [f"{t} {r['deployed'][t]} {v:.2f}%" for t, v in r["agreement"].items()]
    return f"FP32 test top-1 {r['fp32_test_top1']:.2f}%; " + ", ".join(parts)


def print_tables(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    m = results["machine"]
    console.print(
        f"{m['cpu']}, {m['cores']} cores, ONNX Runtime {m['ort']}; {results['size']} px, "
        f"{results['calib_size']} calibration images, {results['threads']} build thread(s)"
    )
    t = Table(title="model zoo: legacy export, opset 17, dynamic batch, default build")
    for col in HEADERS:
        t.add_column(col, overflow="fold")
    for r in results["models"]:
        t.add_row(*table_row(r))
    console.print(t)
    if results["trained"]:
        t = Table(title="trained briefly (from scratch, synthetic road signs): agreement")
        for col in ("model", "px", "epochs", "FP32 top-1", "test images", "deployed: agreement"):
            t.add_column(col, overflow="fold")
        for r in results["trained"]:
            cells = [r["model"], str(r["size"]), str(r["epochs"])]
            if not r.get("build_ok"):
                t.add_row(*cells, "-", "-", f"FAIL: {r['error']}")
                continue
            deployed = ", ".join(
                f"{target} {r['deployed'][target]} {value:.2f}%"
                for target, value in r["agreement"].items()
            )
            t.add_row(*cells, f"{r['fp32_test_top1']:.2f}%", str(r["images"]), deployed)
        console.print(t)
    for w in results["warnings"]:
        console.print(f"warning: {w}")
    console.print(f"goals: {results['goals']}")


if __name__ == "__main__":
    sys.exit(main())
