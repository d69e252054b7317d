"""Benchmark the INT8 accuracy budget: FP32, plain INT8 and budgeted INT8 side by side.

One build with ``--max-drop`` (edgevision.compile.build_bundle): plain INT8 is quantized and
verified first; when it loses more than the budget, the fewest sensitive layers are kept in
float. Top-1, drop and agreement with FP32 come from the build's own verification on the
held-out set, for both targets; latency (batch 1, ONNX Runtime CPU, the cpu artifact) is
measured interleaved round-robin in the same run: FP32, plain INT8 and INT8 with each float
layer added in turn. A fresh calibration cache is used, so the build time is real.

    .venv/bin/python tools/bench_budget.py --run RUN [--max-drop 0] [--json out.json]
    .venv/bin/python tools/bench_budget.py --run RUN --tight        # budget: half plain's drop
    .venv/bin/python tools/bench_budget.py --run model.onnx --spec spec.json --calib DIR --eval DIR

With ``--tight`` the budget is half of what plain INT8 loses (a plain build runs first to find
out), so the search always has work when plain INT8 loses anything. When the budget cannot be
met, the best result found is reported (the build itself writes nothing then).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import build_parser, machine, write_json  # tools/common.py


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    results: dict[str, Any] = {"machine": machine(), "input": str(args.run)}
    with tempfile.TemporaryDirectory(prefix="bench-budget-") as tmp:
        out = args.bundle or Path(tmp) / "bundle"
        max_drop = args.max_drop
        if args.tight:
            plain = _build(args, Path(tmp) / "plain", None, Path(tmp) / "cache-plain")
            worst = max(plain.evaluation.drop(n) for n in _int8(plain.evaluation))
            results["plain_build_s"] = round(plain.build_time_s, 1)
            max_drop = max(0.0, worst / 2)
        results["max_drop"] = max_drop
        start = time.perf_counter()
        try:
            result = _build(args, out, max_drop, Path(tmp) / "cache")
            budget, results["met"] = result.budget, True
            results["build_s"] = round(result.build_time_s, 1)
            results["steps_s"] = result.report["timings_s"]
            results["calibration_advice"] = result.advice.to_dict() if result.advice else None
        except _budget_error() as exc:
            budget, results["met"] = exc.result, False
            results["build_s"] = round(time.perf_counter() - start, 1)
            results["error"] = exc.message
        results |= side_by_side(budget)
    print_tables(results)
    write_json(args.json, results)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = build_parser(__doc__, method="minmax")
    p.add_argument("--run", type=Path, required=True, help="RUN folder (or .onnx with --spec)")
    p.add_argument("--spec", type=Path, help="ModelSpec JSON for an .onnx input")
    p.add_argument("--eval", type=Path, help="labelled ImageFolder (default: the test split)")
    p.add_argument("--bundle", type=Path, help="keep the budgeted bundle here")
    p.add_argument("--max-drop", type=float, default=0.0, help="budget, top-1 points (0)")
    p.add_argument("--tight", action="store_true", help="budget = half plain INT8's drop")
    p.add_argument("--max-float-layers", type=int, default=8)
    p.add_argument("--targets", default="cpu,tensorrt")
    p.add_argument("--exporter", default="dynamo")
    p.add_argument("--threads", type=int, default=1, help="threads (build and timing)")
    p.add_argument("--iterations", type=int, default=300, help="interleaved timing rounds")
    return p.parse_args(argv)


def _budget_error() -> type[Exception]:
    from edgevision.errors import BudgetExceededError

    return BudgetExceededError


def _int8(evaluation: Any) -> list[str]:
    return [n for n in evaluation.predictions if n != evaluation.reference]


def _build(args: argparse.Namespace, out: Path, max_drop: float | None, cache: Path) -> Any:
    from edgevision.compile import BuildConfig, build_bundle

    config = BuildConfig(
        input=args.run,
        out=out,
        spec=args.spec,
        calib=args.calib,
        calib_size=args.calib_size,
        method=args.method,
        targets=tuple(t for t in args.targets.split(",") if t),
        eval=args.eval,
        max_drop=max_drop,
        threads=args.threads,
        exporter=args.exporter,
        cache_dir=cache,
        max_float_layers=args.max_float_layers,
        latency_iterations=args.iterations,
    )
    return build_bundle(config)


def side_by_side(budget: Any) -> dict[str, Any]:
    """FP32, plain and budgeted INT8 per artifact: top-1, drop, agreement, latency (cpu)."""
    before, after, lat = budget.before, budget.after, budget.latency or {}
    ms = lat.get("median_ms", {})
    rows = [{"model": "fp32", "top1": round(budget.fp32_top1, 2), "latency_ms": ms.get("fp32")}]
    for label, step, key in (("plain", before, "int8"), ("budgeted", after, "budgeted")):
        for art in step.drops:
            timed = art == f"int8-{lat.get('target')}" or (
                lat.get("target") == "tensorrt" and art == "int8-trt"
            )
            rows.append(
                {
                    "model": f"{label} {art}",
                    "top1": round(step.top1[art], 2),
                    "drop": round(step.drops[art], 2),
                    "agreement": round(step.agreement[art], 2),
                    "latency_ms": ms.get(key) if timed else None,
                }
            )
    return {
        "rows": rows,
        "float_layers": [
            {
                "layer": r.layer,
                "op_type": r.op_type,
                "sqnr_db": r.sqnr_db,
                "nodes": len(r.float_nodes),
            }
            for r in budget.layers
        ],
        "nodes_to_exclude": list(budget.nodes_to_exclude),
        "latency": lat or None,
        "evaluations": len(budget.steps) - 1,
        "steps": [s.to_dict() for s in budget.steps],
        "ranked_on": budget.table.target if budget.table else None,
    }


def print_tables(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=130)
    m = results["machine"]
    console.print(f"{m['cpu']}, {m['cores']} cores, ONNX Runtime {m['ort']}; {results['input']}")
    verdict = "met" if results["met"] else "NOT met (best result found shown)"
    t = Table(title=f"--max-drop {results['max_drop']:g}: {verdict}")
    for col in ("model", "top-1 %", "drop", "agreement %", "latency ms (cpu, b1)", "vs FP32"):
        t.add_column(col)
    fp32_ms = results["rows"][0]["latency_ms"]
    for r in results["rows"]:
        ms = r["latency_ms"]
        speed = f"{fp32_ms / ms:.2f}x" if ms and fp32_ms else "—"
        t.add_row(
            r["model"],
            f"{r['top1']:.2f}",
            "—" if "drop" not in r else f"{r['drop']:.2f}",
            "—" if "agreement" not in r else f"{r['agreement']:.2f}",
            "—" if ms is None else f"{ms:.3f}",
            speed,
        )
    console.print(t)
    lat = results.get("latency") or {}
    for entry in lat.get("layers", []):
        console.print(
            f"  float {entry['layer']}: +{entry['added_ms']:.3f} ms "
            f"(cumulative {entry['cumulative_ms']:.3f} ms)",
            markup=False,
        )
    console.print(
        f"{len(results['float_layers'])} layer(s) / {len(results['nodes_to_exclude'])} nodes in "
        f"float after {results['evaluations']} re-verifications "
        f"(ranked on {results['ranked_on']}); "
        f"build {results['build_s']} s, steps {results.get('steps_s')}",
        markup=False,
    )
    if results.get("error"):
        console.print(results["error"], markup=False)
    advice = results.get("calibration_advice")
    if advice:
        console.print(f"calibration advisor: {advice['message']}", markup=False)


if __name__ == "__main__":
    sys.exit(main())
