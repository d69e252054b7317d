"""An accuracy budget for INT8: keep the fewest layers in float that bring the top-1 drop
within ``max_drop`` points, for every target at once, and say what it cost in latency.

`fit_budget` ranks layers with `analyze_sensitivity` on the target plain INT8 hurts most, then

1. adds candidates greedily — the ones whose float version measured best first, then by SQNR —
   re-quantizing every target with the same ``nodes_to_exclude`` and re-verifying on the
   evaluation set after each (a candidate that makes the drop worse is set back), until all
   targets are within budget;
2. prunes: tries the result without each earlier candidate, and drops those not needed;
3. times FP32, plain INT8 and INT8 with each kept layer added in turn, interleaved round-robin
   with ONNX Runtime, so every float layer has its latency price.

When even the ``top_k`` worst layers all in float miss the budget, it raises
`BudgetExceededError` naming the best result found (the exception's ``result`` holds it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgevision.compile.context import Job
from edgevision.compile.deploy import median_ms
from edgevision.compile.evaluate import Evaluation
from edgevision.compile.quantize import TARGETS
from edgevision.compile.sensitivity import (
    LayerSensitivity,
    SensitivityTable,
    analyze_sensitivity,
    union,
)
from edgevision.errors import BudgetExceededError, ConfigError

log = logging.getLogger(__name__)

FP32 = "fp32"


@dataclass
class BudgetStep:
    """One re-verification: these layers in float, and what every target then lost."""

    phase: str  # "plain", "add" (kept), "reject" (made it worse) or "prune"
    layers: list[str]
    nodes: tuple[str, ...]
    drops: dict[str, float]  # artifact → points of the metric (top-1, mAP) lost vs FP32
    top1: dict[str, float]  # the metric itself (the key is historical: mAP for a detector)
    agreement: dict[str, float]
    ok: bool

    @property
    def worst(self) -> float:
        return max(self.drops.values())

    @property
    def score(self) -> tuple[float, float]:
        """Lower is better: the worst target's drop, then all targets' drops together."""
        return self.worst, sum(self.drops.values())

    def to_dict(self) -> dict[str, Any]:
        r = lambda d: {k: round(v, 3) for k, v in d.items()}  # noqa: E731
        return {
            "phase": self.phase,
            "layers": self.layers,
            "nodes": list(self.nodes),
            "drops": r(self.drops),
            "top1": r(self.top1),
            "agreement": r(self.agreement),
            "ok": self.ok,
        }

    def describe(self) -> str:
        return ", ".join(f"{n} drops {d:.2f} points" for n, d in self.drops.items())


@dataclass
class BudgetResult:
    """What the budget search found. ``evaluation`` and ``artifacts`` are those of the result
    (the plain ones when plain INT8 was already within budget)."""

    max_drop: float
    met: bool
    fp32_top1: float
    layers: list[LayerSensitivity]  # kept in float, in the order they were added
    nodes_to_exclude: tuple[str, ...]
    before: BudgetStep
    after: BudgetStep
    steps: list[BudgetStep]
    evaluation: Evaluation
    artifacts: dict[str, Path]
    table: SensitivityTable | None = None
    latency: dict[str, Any] | None = None
    searched: int = 0  # candidates the search could use
    notes: list[str] = field(default_factory=list)
    metric: str = "top-1"  # what the drops are points of (the evaluation's ``metric``)

    def to_dict(self) -> dict[str, Any]:
        """The report section (JSON-ready)."""
        added = {e["layer"]: e for e in (self.latency or {}).get("layers", [])}
        return {
            "max_drop": self.max_drop,
            "met": self.met,
            "metric": self.metric,
            "fp32_top1": round(self.fp32_top1, 3),
            "ranked_on": self.table.target if self.table else None,
            "float_layers": [
                {
                    "layer": r.layer,
                    "op_type": r.op_type,
                    "float_nodes": list(r.float_nodes),
                    "sqnr_db": r.sqnr_db,
                    "drop_alone": r.drop,
                    "added_ms": added.get(r.layer, {}).get("added_ms"),
                }
                for r in self.layers
            ],
            "nodes_to_exclude": list(self.nodes_to_exclude),
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "latency": self.latency,
            "evaluations": len(self.steps) - 1,
            "candidates": self.searched,
            "steps": [s.to_dict() for s in self.steps],
            "notes": self.notes,
        }

    def summary(self) -> str:
        """One line for the console."""
        if not self.layers:
            return f"plain INT8 is within --max-drop {self.max_drop:g} ({self.before.describe()})"
        price = ""
        if self.latency:
            price = (
                f"; latency {self.latency['median_ms']['int8']:.3f} → "
                f"{self.latency['median_ms']['budgeted']:.3f} ms "
                f"({self.latency['target']}, x{self.latency['budgeted_over_plain']:.2f})"
            )
        return (
            f"{len(self.layers)} layer(s) kept in float ({len(self.nodes_to_exclude)} nodes) to "
            f"meet --max-drop {self.max_drop:g}: before {self.before.describe()}; after "
            f"{self.after.describe()}{price}"
        )


def check_max_drop_value(max_drop: float) -> None:
    """Refuse a negative budget (``--max-drop``, `fit_budget`'s ``max_drop``) before any work."""
    if max_drop < 0:
        raise ConfigError(f"--max-drop {max_drop} is negative", "give points >= 0, e.g. 0.5")


def fit_budget(
    job: Job,
    max_drop: float,
    *,
    top_k: int = 8,
    plain_models: Mapping[str, str | os.PathLike[str]] | None = None,
    plain: Evaluation | None = None,
    table: SensitivityTable | None = None,
    latency_iterations: int = 100,
) -> BudgetResult:
    """Keep the fewest layers of ``job.prep`` (the pre-processed FP32 model that was
    calibrated) in float so that every one of ``job.targets``' INT8 loses at most ``max_drop``
    top-1 points against ``job.fp32``, on top of the job's ``nodes_to_exclude``.

    The INT8 artifacts are written under ``job.work``/budget; ``plain_models``/``plain``
    (artifact name → path, and their evaluation) and ``table`` (a ranking of the ``top_k``
    candidates) are reused when given. Raises `BudgetExceededError` (``.result`` holds the
    best `BudgetResult`) when the ``top_k`` worst layers all in float still miss the budget.
    """
    check_max_drop_value(max_drop)
    job.require_evaluation("an accuracy budget")
    search = _Search(job, max_drop, job.folder("budget"))
    models = {
        k: Path(v) for k, v in (plain_models or search.quantize(search.base, "plain")).items()
    }
    before = search.record(
        "plain", [], search.base, plain or job.evaluate({FP32: job.fp32, **models})
    )
    if before.ok:
        result = search.result(True, [], before, models, None)
    else:
        ranking = table if table is not None else _rank(job, before, models, top_k)
        result = search.run(ranking, top_k)
    if latency_iterations > 0:
        sample = job.calib.tensors[:1]
        result.latency = search.latency(result, models, sample, latency_iterations)
    return result


def _rank(job: Job, before: BudgetStep, models: dict[str, Path], top_k: int) -> SensitivityTable:
    """The sensitivity table on the target plain INT8 hurts most."""
    worst = max(before.drops, key=before.drops.__getitem__)
    return analyze_sensitivity(job, _target_of(worst), top_k=top_k, plain=models[worst])


def _target_of(artifact: str) -> str:
    return next(n for n in TARGETS.names() if TARGETS.get(n).artifact == artifact)


class _Search:
    """The state of one budget search: every quantize + evaluate it did, and the best so far."""

    def __init__(self, job: Job, max_drop: float, out: Path) -> None:
        self.job, self.max_drop, self.out = job, max_drop, out
        self.base = job.nodes_to_exclude  # in float from the start, in every trial
        self.steps: list[BudgetStep] = []
        self.found: dict[int, tuple[dict[str, Path], Evaluation]] = {}
        self.fp32_top1 = 0.0
        self.last_eval: Evaluation | None = None

    def quantize(self, nodes: Sequence[str], folder: str, only: str | None = None) -> dict:
        """INT8 models of every target (or ``only`` one) with ``nodes`` in float."""
        out = {}
        (self.out / folder).mkdir(parents=True, exist_ok=True)
        for name in (only,) if only else self.job.targets:
            t = TARGETS.get(name)
            out[t.artifact] = self.job.quantize(name, self.out / folder / t.file, nodes)
        return out

    def record(
        self,
        phase: str,
        layers: list[LayerSensitivity],
        nodes: tuple[str, ...],
        ev: Evaluation,
        label: str = "plain INT8",
    ) -> BudgetStep:
        names = [n for n in ev.predictions if n != ev.reference]
        step = BudgetStep(
            phase,
            [r.layer for r in layers],
            nodes,
            {n: ev.drop(n) for n in names},
            {n: ev.score(n) for n in names},
            {n: ev.agreement(n) for n in names},
            all(ev.drop(n) <= self.max_drop for n in names),
        )
        self.steps.append(step)
        self.fp32_top1 = ev.score(ev.reference)
        self.last_eval = ev
        log.info("accuracy budget, %s: %s", label, step.describe())
        return step

    def trial(self, phase: str, layers: list[LayerSensitivity], label: str) -> BudgetStep:
        nodes = union(self.base, *(r.float_nodes for r in layers))
        models = self.quantize(nodes, f"try{len(self.steps)}")
        ev = self.job.evaluate({FP32: self.job.fp32, **models})
        step = self.record(phase, layers, nodes, ev, f"{label} ({len(layers)} in float)")
        self.found[id(step)] = (models, self.last_eval)
        return step

    def run(self, table: SensitivityTable, top_k: int) -> BudgetResult:
        candidates = table.candidates()[:top_k]
        chosen: list[LayerSensitivity] = []
        step = self.steps[0]
        for row in candidates:
            if set(row.float_nodes) <= set(union(self.base, *(r.float_nodes for r in chosen))):
                continue  # already in float through an earlier choice
            tried = self.trial("add", [*chosen, row], f"+ {row.layer}")
            # Keep a layer unless it made things worse: on a finite evaluation set a layer
            # may help only together with another (the drop stays level), or only add noise.
            if tried.ok or tried.score <= step.score:
                chosen, step = [*chosen, row], tried
            else:
                tried.phase = "reject"
            if step.ok:
                break
        if not step.ok:
            raise self.failure(table, candidates)
        for row in reversed(chosen[:-1]):
            rest = [r for r in chosen if r is not row]
            pruned = self.trial("prune", rest, f"- {row.layer}")
            if pruned.ok:
                chosen, step = rest, pruned
        models, ev = self.found[id(step)]
        return self.result(True, chosen, step, models, table, len(candidates), ev)

    def result(
        self,
        met: bool,
        layers: list[LayerSensitivity],
        step: BudgetStep,
        models: dict[str, Path],
        table: SensitivityTable | None,
        searched: int = 0,
        ev: Evaluation | None = None,
    ) -> BudgetResult:
        evaluation = ev or self.last_eval
        return BudgetResult(
            self.max_drop,
            met,
            self.fp32_top1,
            layers,
            step.nodes,
            self.steps[0],
            step,
            self.steps,
            evaluation,
            models,
            table,
            searched=searched,
            metric=getattr(evaluation, "metric", "top-1"),
        )

    def failure(
        self, table: SensitivityTable, candidates: list[LayerSensitivity]
    ) -> BudgetExceededError:
        best = min(self.steps, key=lambda s: s.score)
        models, ev = self.found.get(id(best), ({}, self.last_eval))
        result = self.result(False, [table.row(n) for n in best.layers], best, models, table)
        result.searched = len(candidates)
        listing = ", ".join(best.layers) or "none"
        err = BudgetExceededError(
            f"INT8 accuracy is outside --max-drop {self.max_drop:g} even with the "
            f"{len(candidates)} most sensitive layer(s) in float. Plain INT8: "
            f"{self.steps[0].describe()}; best found: {best.describe()} with "
            f"{len(best.layers)} layer(s) in float ({listing}); FP32 "
            f"{getattr(self.last_eval, 'metric', 'top-1')} {self.fp32_top1:.2f}. "
            "The bundle was not written",
            "loosen --max-drop, raise --max-float-layers, try --method entropy or percentile, "
            "or calibrate on more representative images (--calib)",
        )
        err.result = result  # type: ignore[attr-defined]
        return err

    def latency(
        self, result: BudgetResult, plain: dict[str, Path], sample: np.ndarray, iterations: int
    ) -> dict[str, Any]:
        """Median batch-1 ORT latency of FP32, plain INT8 and INT8 with each layer added."""
        targets, threads = self.job.targets, self.job.threads
        target = "cpu" if "cpu" in targets else targets[0]
        art = TARGETS.get(target).artifact
        models: dict[str, Path] = {FP32: self.job.fp32, "int8": plain[art]}
        for i, _row in enumerate(result.layers[:-1]):
            nodes = union(self.base, *(r.float_nodes for r in result.layers[: i + 1]))
            models[f"+{i + 1}"] = self.quantize(nodes, f"latency{i}", target)[art]
        if result.layers:
            models[f"+{len(result.layers)}"] = result.artifacts[art]
        ms = {n: t["1"] for n, t in median_ms(models, {"1": sample}, iterations, threads).items()}
        layers, prev = [], ms["int8"]
        for i, row in enumerate(result.layers):
            now = ms[f"+{i + 1}"]
            layers.append(
                {
                    "layer": row.layer,
                    "float_nodes": list(row.float_nodes),
                    "cumulative_ms": round(now, 4),
                    "added_ms": round(now - prev, 4),
                }
            )
            prev = now
        budgeted = ms[f"+{len(result.layers)}"] if result.layers else ms["int8"]
        return {
            "target": target,
            "backend": "onnxruntime CPU",
            "batch": 1,
            "threads": threads,
            "iterations": iterations,
            "interleaved": True,
            "median_ms": {
                "fp32": round(ms[FP32], 4),
                "int8": round(ms["int8"], 4),
                "budgeted": round(budgeted, 4),
            },
            "layers": layers,
            "budgeted_over_plain": round(budgeted / ms["int8"], 3),
            "fp32_over_budgeted": round(ms[FP32] / budgeted, 3),
        }


def render_markdown(section: dict[str, Any]) -> str:
    """The report.md section for a `BudgetResult.to_dict()`."""
    lines = ["", "## Accuracy budget", ""]
    before, after = section["before"], section["after"]
    how = (
        f", {len(section['float_layers'])} layer(s) kept in float."
        if section["float_layers"]
        else " by plain INT8."
    )
    metric = section.get("metric", "top-1")
    lines += [
        f"--max-drop {section['max_drop']:g} {metric} points (FP32 {section['fp32_top1']:.2f}): "
        f"{'met' if section['met'] else 'missed'}{how}",
        "",
        f"| artifact | {metric} before | drop before | {metric} after | drop after "
        "| agreement after |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in after["drops"]:
        lines.append(
            f"| {name} | {before['top1'][name]:.2f} | {before['drops'][name]:.2f} "
            f"| {after['top1'][name]:.2f} | {after['drops'][name]:.2f} "
            f"| {after['agreement'][name]:.2f} |"
        )
    lat = section.get("latency")
    if section["float_layers"]:
        lines += [
            "",
            "| layer in float | op | SQNR (dB) | drop with it alone | latency added (ms) | nodes |",
            "|---|---|---:|---:|---:|---|",
        ]
        for f in section["float_layers"]:
            alone = "—" if f["drop_alone"] is None else f"{f['drop_alone']:.2f}"
            ms = "—" if f["added_ms"] is None else f"{f['added_ms']:+.3f}"
            nodes = ", ".join(f"`{n}`" for n in f["float_nodes"])
            lines.append(
                f"| `{f['layer']}` | {f['op_type']} | {f['sqnr_db']:.2f} | {alone} | {ms} "
                f"| {nodes} |"
            )
    if lat:
        m = lat["median_ms"]
        lines += [
            "",
            f"Latency ({lat['backend']}, {lat['target']} artifact, batch 1, interleaved, median): "
            f"FP32 {m['fp32']:.3f} ms, plain INT8 {m['int8']:.3f} ms, budgeted INT8 "
            f"{m['budgeted']:.3f} ms (x{lat['budgeted_over_plain']:.2f} of plain, "
            f"{lat['fp32_over_budgeted']:.2f}x faster than FP32).",
        ]
    return "\n".join(lines) + "\n"
