"""Latency budgets a team's CI can gate on."""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgevision.errors import EdgeVisionError
from edgevision.profile.report import Measurement, ProfileReport
from edgevision.profile.stats import check_percentile

# Exit code of a missed budget or a flagged regression: distinct from 2 (a user error), so a CI
# job can tell "too slow" from "called wrongly".
EXIT_BUDGET = 3

_GATEABLE = ("model", "pipeline")
# What an unnamed budget target is, by report mode (said in the message).
_DEFAULT_WHY = {
    "models": "the deployed artifact: the one the runtime runs on this machine",
    "pipeline": "end to end through the runtime",
}


@dataclass(frozen=True)
class BudgetResult:
    """The outcome of one budget check; ``message`` says it in one line."""

    ok: bool
    key: str
    percentile: str
    batch: int
    value_ms: float
    budget_ms: float
    default_target: bool  # the artifact was not named: the deployed one was gated
    mode: str = "models"

    @property
    def over_ms(self) -> float:
        """How far over the budget (negative: the margin left)."""
        return self.value_ms - self.budget_ms

    @property
    def over_pct(self) -> float:
        return 100.0 * self.over_ms / self.budget_ms

    @property
    def message(self) -> str:
        what = self.key + (f" ({_DEFAULT_WHY[self.mode]})" if self.default_target else "")
        head = f"{what} {self.percentile} = {self.value_ms:.3f} ms at batch {self.batch}"
        if self.ok:
            return (
                f"within budget: {head}, {-self.over_ms:.3f} ms under the "
                f"{self.budget_ms:g} ms budget"
            )
        return (
            f"budget missed: {head} is {self.over_ms:.3f} ms ({self.over_pct:.1f}%) over the "
            f"{self.budget_ms:g} ms budget"
        )


def _candidates(report: ProfileReport, name: str) -> list[Measurement]:
    # A name is a measurement key (int8-cpu, int8-trt@ort) or an artifact name; the key wins.
    gateable = [m for m in report.measurements if m.kind in _GATEABLE]
    exact = [m for m in gateable if m.key == name]
    return exact or [m for m in gateable if m.artifact == name]


def _pick(report: ProfileReport, name: str, batch: int | None) -> Measurement:
    found = _candidates(report, name)
    if not found:
        keys = sorted({m.key for m in report.measurements if m.kind in _GATEABLE})
        raise EdgeVisionError(
            f"no measurement named {name!r} to check the budget against",
            f"use one of: {', '.join(keys) or '(none)'}",
        )
    ran = [m for m in found if m.ran]
    if not ran:
        raise EdgeVisionError(
            f"{name} was not measured ({found[0].skipped}), so its budget cannot be checked",
            "gate another artifact with --budget-artifact, or profile on the device",
        )
    if batch is not None:
        ran = [m for m in ran if m.batch == batch]
        if not ran:
            raise EdgeVisionError(f"{name} was not measured at batch {batch}")
    # A frame-latency budget is about one frame: batch 1, else the smallest batch measured.
    return min(ran, key=lambda m: m.batch)


def validate_budget(budget_ms: float, percentile: str) -> None:
    """Raise `EdgeVisionError` for a budget that is not a positive number or a bad percentile."""
    check_percentile(percentile)
    if not (isinstance(budget_ms, int | float) and math.isfinite(budget_ms) and budget_ms > 0):
        raise EdgeVisionError(
            f"budget must be a positive number of ms, got {budget_ms!r}", "use e.g. --budget-ms 20"
        )


def check_budget(
    report: ProfileReport,
    budget_ms: float,
    percentile: str = "p99",
    artifact: str | None = None,
    batch: int | None = None,
) -> BudgetResult:
    """Check ``artifact``'s ``percentile`` latency against ``budget_ms``.

    Without ``artifact``, the report's deployed measurement is gated: the artifact the runtime
    picks on this machine, or the capture-to-result latency of a pipeline profile.
    """
    validate_budget(budget_ms, percentile)
    name = artifact or report.deployed
    if name is None:
        raise EdgeVisionError(
            "the report names no deployed artifact to gate", "name one with --budget-artifact"
        )
    m = _pick(report, name, batch)
    assert m.stats is not None  # _pick returns measured ones only
    value = m.stats.get(percentile)
    return BudgetResult(
        ok=value <= budget_ms,
        key=m.key,
        percentile=percentile,
        batch=m.batch,
        value_ms=value,
        budget_ms=float(budget_ms),
        default_target=artifact is None,
        mode=report.mode,
    )
