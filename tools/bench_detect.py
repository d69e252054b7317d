"""Benchmark detection training on the synthetic road scenes: fine-tuned vs from scratch.

Both candidates train the same detector (EfficientNet-Lite0 features → FPN/PAN → anchor-free
head) on the same split of the same generated data, in one process, one after the other, with
the CLI's defaults except what the candidate changes, for the same number of epochs with early
stopping off, so they spend the same time:

* ``finetune``: the shipped ImageNet weights (the default);
* ``scratch``: random init (``--weights none``).

Prints a table (test mAP@[.5:.95], mAP@.5, AP S/M/L, wall time, the ratio of the two) and
writes JSON with every epoch. The goals stated in the issue: fine-tuned test mAP@.5 >= 0.90 and
mAP@[.5:.95] >= 0.65 within 12 minutes of CPU training, and fine-tuned >= 1.5x the scratch
mAP@[.5:.95] at equal time.

    .venv/bin/python tools/bench_detect.py --epochs 14 --omp-wait-policy unset  # the README run
    .venv/bin/python tools/bench_detect.py --candidates finetune --epochs 10
    .venv/bin/python tools/bench_detect.py --copy-paste 0   # no pasted objects (as before #15)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

GOAL_MAP50 = 0.90
GOAL_MAP = 0.65
GOAL_SECONDS = 720.0
GOAL_RATIO = 1.5
CANDIDATES = {"finetune": {}, "scratch": {"weights": None}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", help="a COCO/YOLO detection folder instead of generating scenes")
    p.add_argument("--images", type=int, default=600, help="synthetic scenes to generate")
    p.add_argument("--size", default=None, help="input WIDTHxHEIGHT (default: train's)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: train's)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument(
        "--copy-paste", type=int, default=None, help="objects pasted per image (train's)"
    )
    p.add_argument(
        "--omp-wait-policy",
        default="PASSIVE",
        help="OMP_WAIT_POLICY to set (PASSIVE: for shared cores; 'unset': as edgevision train)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch threads (all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--candidates", default="finetune,scratch", help="finetune, scratch")
    p.add_argument("--work", help="folder for data and runs (default: a temp folder)")
    p.add_argument("--json", default="runs/bench_detect.json", help="where to write results")
    p.add_argument("--verbose", action="store_true", help="show each run's log")
    return p.parse_args(argv)


def run_candidate(name: str, data: Path, work: Path, args: argparse.Namespace) -> dict:
    from edgevision.train import TrainConfig, train

    config = TrainConfig(data=str(data), out=str(work / name), task="detection")
    changes: dict[str, object] = {
        "seed": args.seed,
        "threads": args.threads,
        "overwrite": True,
        "quiet": not args.verbose,
        "patience": 0,  # equal time: both candidates run every epoch
        **CANDIDATES[name],
    }
    if args.size:
        changes["size"] = args.size
    if args.epochs:
        changes["epochs"] = args.epochs
    if args.batch_size:
        changes["batch_size"] = args.batch_size
    if args.copy_paste is not None:
        changes["copy_paste"] = args.copy_paste
    config = dataclasses.replace(config, **changes)
    quiet = contextlib.redirect_stdout(io.StringIO()) if not args.verbose else None
    with quiet or contextlib.nullcontext():
        result = train(config)
    m = result.metrics
    return {
        "candidate": name,
        "weights": config.weights,
        "copy_paste": result.config["copy_paste"],
        "test": {
            k: m["test"][k]
            for k in (
                "map",
                "map50",
                "map75",
                "map_small",
                "map_medium",
                "map_large",
                "ar100",
                "per_class",
            )
        },
        "val_map": m["val"]["map"],
        "wall_s": result.wall_s,
        "train_s": m["run"]["train_s"],
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "images_per_s": sum(h["images_per_s"] for h in result.history) / len(result.history),
        "history": result.history,
    }


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def render(rows: list[dict], console: Console) -> dict:
    table = Table(title="edgevision train --task detection: synthetic road scenes (test split)")
    for col in (
        "candidate",
        "mAP@[.5:.95]",
        "mAP@.5",
        "mAP@.75",
        "AP S",
        "AP M",
        "AP L",
        "val mAP",
        "epochs (best)",
        "img/s",
        "wall",
    ):
        table.add_column(col, justify="left" if col == "candidate" else "right")
    for r in rows:
        t = r["test"]
        table.add_row(
            r["candidate"],
            _pct(t["map"]),
            _pct(t["map50"]),
            _pct(t["map75"]),
            _pct(t["map_small"]),
            _pct(t["map_medium"]),
            _pct(t["map_large"]),
            _pct(r["val_map"]),
            f"{r['epochs_run']} ({r['best_epoch']})",
            f"{r['images_per_s']:.0f}",
            f"{r['wall_s']:.0f} s",
        )
    console.print(table)
    by = {r["candidate"]: r for r in rows}
    verdicts: dict[str, object] = {}
    if "finetune" in by:
        f = by["finetune"]
        ok = (
            f["test"]["map50"] >= GOAL_MAP50
            and f["test"]["map"] >= GOAL_MAP
            and f["train_s"] <= GOAL_SECONDS
        )
        verdicts["finetune_goal_met"] = ok
        console.print(
            f"goal (fine-tuned mAP@.5 >= {GOAL_MAP50:.2f} and mAP@[.5:.95] >= {GOAL_MAP:.2f} "
            f"within {GOAL_SECONDS:.0f} s of training): {'[green]met' if ok else '[red]not met'}"
            f"[/] — {f['test']['map50']:.3f} / {f['test']['map']:.3f} in {f['train_s']:.0f} s"
        )
    if "finetune" in by and "scratch" in by:
        f, s = by["finetune"], by["scratch"]
        ratio = f["test"]["map"] / max(s["test"]["map"], 1e-9)
        verdicts["ratio"] = ratio
        verdicts["time_ratio"] = f["train_s"] / s["train_s"]
        ok = ratio >= GOAL_RATIO
        console.print(
            f"goal (fine-tuned >= {GOAL_RATIO}x scratch mAP@[.5:.95] at equal time): "
            f"{'[green]met' if ok else '[red]not met'}[/] — {ratio:.2f}x "
            f"({f['test']['map']:.3f} vs {s['test']['map']:.3f}; training time "
            f"{f['train_s']:.0f} s vs {s['train_s']:.0f} s)"
        )
    return verdicts


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.omp_wait_policy.lower() != "unset":  # spinning OpenMP threads on shared cores
        os.environ.setdefault("OMP_WAIT_POLICY", args.omp_wait_policy)
    console = Console() if Console().is_terminal else Console(width=150)
    names = [n.strip() for n in args.candidates.split(",") if n.strip()]
    unknown = [n for n in names if n not in CANDIDATES]
    if unknown:
        raise SystemExit(f"unknown candidate(s) {unknown}: use {', '.join(CANDIDATES)}")
    keep = contextlib.nullcontext(args.work) if args.work else None
    with keep or tempfile.TemporaryDirectory(prefix="bench_detect.") as tmp:
        work = Path(tmp)
        data = Path(args.data) if args.data else work / "scenes"
        if not args.data:
            from edgevision.data.synth_detect import generate_detection_dataset

            t0 = time.perf_counter()
            generate_detection_dataset(data, images=args.images, seed=args.seed, progress=False)
            console.print(f"generated {data} in {time.perf_counter() - t0:.1f} s")
        rows = []
        for name in names:
            console.print(f"training {name} …")
            rows.append(run_candidate(name, data, work, args))
            t = rows[-1]["test"]
            console.print(
                f"  {name}: test mAP@[.5:.95] {t['map']:.3f}, mAP@.5 {t['map50']:.3f} "
                f"in {rows[-1]['wall_s']:.0f} s ({rows[-1]['epochs_run']} epochs)"
            )
    verdicts = render(rows, console)
    import torch

    meta = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "size": args.size,
        "images": args.images,
        "load_avg_at_end": os.getloadavg(),
        "goal": {
            "map50": GOAL_MAP50,
            "map": GOAL_MAP,
            "train_s": GOAL_SECONDS,
            "ratio": GOAL_RATIO,
        },
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    out = {"meta": meta, "verdicts": verdicts, "runs": rows}
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
