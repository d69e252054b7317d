"""Memory over a long `edgevision run`: RSS sampled every few seconds, growth after warm-up.

A vehicle runs for hours, so a cache or a queue that grows by a few KB a frame is a defect. This
runs the real command (``python -m edgevision run BUNDLE --source S --events …``) in a child
process on each source for ``--seconds``, samples its resident memory from ``/proc/PID/status``
every ``--interval`` seconds, and reports, per source, RSS at the end of ``--warmup``, the peak
after it, the growth (last sample minus the warm-up sample, and a least-squares slope in MB per
hour). Goal: growth <= 5 MB after the first minute.

Sources default to ``synthetic://?fps=15`` (a live-rate camera) and a looping file
(``clip.mp4?loop=1``, as fast as the pipeline goes). The bundle is ``--bundle`` or the medium
~0.5 GFLOP classifier of ``tools/bench_runtime.py``.

    .venv/bin/python tools/soak_run.py --seconds 600 --json soak.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
GOAL_MB = 5.0


def rss_mb(pid: int) -> float | None:
    """Resident set size of ``pid`` in MB (None once it has exited)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def soak(
    bundle: Path,
    source: str,
    seconds: float,
    interval: float,
    warmup: float,
    tmp: Path,
    threads: int,
) -> dict[str, Any]:
    """Run ``edgevision run`` on ``source`` for ``seconds``; RSS samples and their summary."""
    events = tmp / f"events-{abs(hash(source))}.jsonl"
    cmd = [
        sys.executable,
        "-m",
        "edgevision",
        "run",
        str(bundle),
        "--source",
        source,
        "--events",
        str(events),
        "--quiet",
        "--threads",
        str(threads),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    start, samples = time.monotonic(), []
    try:
        while (elapsed := time.monotonic() - start) < seconds and proc.poll() is None:
            value = rss_mb(proc.pid)
            if value is not None:
                samples.append((round(elapsed, 1), round(value, 2)))
            time.sleep(interval)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    if proc.returncode not in (0, -15, 130, 143) and len(samples) < 2:
        raise SystemExit(f"edgevision run failed on {source}:\n{err.decode()[-2000:]}")
    with events.open() as f:
        frames = sum(1 for _ in f)
    return summarize(source, samples, warmup) | {"frames": frames}


def summarize(source: str, samples: list[tuple[float, float]], warmup: float) -> dict[str, Any]:
    """Growth after warm-up: last minus first sample past ``warmup``, and the slope (MB/h)."""
    after = [(t, v) for t, v in samples if t >= warmup] or samples[-1:]
    t0, v0 = after[0]
    ts = [t for t, _ in after]
    vs = [v for _, v in after]
    mean_t, mean_v = sum(ts) / len(ts), sum(vs) / len(vs)
    var = sum((t - mean_t) ** 2 for t in ts)
    slope = sum((t - mean_t) * (v - mean_v) for t, v in after) / var if var else 0.0
    return {
        "source": source,
        "samples": samples,
        "rss_start_mb": samples[0][1] if samples else None,
        "rss_after_warmup_mb": v0,
        "rss_peak_after_warmup_mb": max(vs),
        "rss_last_mb": vs[-1],
        "growth_mb": round(vs[-1] - v0, 2),
        "peak_growth_mb": round(max(vs) - v0, 2),
        "slope_mb_per_hour": round(slope * 3600, 2),
        "ok": max(vs) - v0 <= GOAL_MB,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, help="bundle to run (default: a medium model)")
    parser.add_argument("--source", action="append", help="source URI (repeat); default: both")
    parser.add_argument("--seconds", type=float, default=600.0, help="run time per source")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=60.0, help="growth counts from here")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads")
    parser.add_argument("--json", type=Path, help="write the samples and summary here")
    args = parser.parse_args(argv)
    if args.warmup >= args.seconds:
        parser.error("--warmup must be shorter than --seconds")
    with tempfile.TemporaryDirectory(prefix="ev-soak-") as tmp_name:
        tmp = Path(tmp_name)
        from bench_runtime import make_bundle

        from edgevision.data.video import write_video

        bundle = args.bundle or make_bundle("medium", tmp)
        clip = f"{write_video(tmp / 'clip.mp4', seconds=20)}?loop=1"
        sources = args.source or ["synthetic://?fps=15", clip]
        results = [
            soak(bundle, s, args.seconds, args.interval, args.warmup, tmp, args.threads)
            for s in sources
        ]
    print(
        f"{'source':<36} {'frames':>8} {'RSS at warm-up':>15} {'peak after':>11} "
        f"{'growth':>8} {'peak growth':>12} {'MB/h':>7}  goal <= {GOAL_MB:g} MB"
    )
    for r in results:
        name = r["source"] if len(r["source"]) <= 36 else "…" + r["source"][-35:]
        print(
            f"{name:<36} {r['frames']:>8} {r['rss_after_warmup_mb']:>14.1f}M "
            f"{r['rss_peak_after_warmup_mb']:>10.1f}M {r['growth_mb']:>+7.2f}M "
            f"{r['peak_growth_mb']:>+11.2f}M {r['slope_mb_per_hour']:>+7.1f}  "
            f"{'ok' if r['ok'] else 'OVER'}"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"seconds": args.seconds, "warmup": args.warmup, "results": results}, indent=2
            )
            + "\n"
        )
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
