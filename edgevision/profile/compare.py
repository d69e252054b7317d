"""Two profile reports side by side: what changed, and which changes are regressions."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field

from edgevision.errors import EdgeVisionError
from edgevision.profile.report import Measurement, ProfileReport
from edgevision.profile.stats import check_percentile

COMPARED = ("p50", "p90", "p99", "max", "mean")
# The tail maximum is one sample: shown, but too noisy to gate a CI on by default.
GATED = ("p50", "p90", "p99", "mean")
# Below this, a change is timer noise whatever its ratio (a 20 µs stage moving by 3 µs).
MIN_DELTA_MS = 0.05
_MACHINE_KEYS = ("cpu_model", "usable_cores", "board", "gpus", "versions")


@dataclass(frozen=True)
class Change:
    """One measurement's percentile in run A and run B."""

    key: str
    batch: int
    percentile: str
    a_ms: float
    b_ms: float
    regression: bool

    @property
    def change(self) -> float:
        """Relative change B vs A (0.1 = 10% slower)."""
        return self.b_ms / self.a_ms - 1.0 if self.a_ms > 0 else math.inf


@dataclass
class Comparison:
    """All changes between two runs; ``regressions`` are the flagged ones."""

    threshold: float
    changes: list[Change]
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)
    # What else differs between the runs (machine, library versions, bundle, threads): a
    # "regression" on another CPU or another bundle is not the same claim.
    differences: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.regression]

    @property
    def ok(self) -> bool:
        return not self.regressions


def parse_threshold(value: str | float) -> float:
    """``"10%"``, ``"10"`` or ``0.1`` → 0.10 (a number above 1 or with % is a percentage)."""
    text = str(value).strip()
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)\s*(%?)", text)
    if not m:
        raise EdgeVisionError(f"threshold {value!r} is not a percentage", "use e.g. 10%")
    number = float(m.group(1))
    fraction = number / 100.0 if m.group(2) or number > 1 else number
    if fraction <= 0:
        raise EdgeVisionError(f"threshold {value!r} must be above 0", "use e.g. 10%")
    return fraction


def _as_report(r: ProfileReport | str | os.PathLike[str]) -> ProfileReport:
    return r if isinstance(r, ProfileReport) else ProfileReport.load(r)


def _index(report: ProfileReport) -> dict[tuple[str, int], Measurement]:
    return {(m.key, m.batch): m for m in report.measurements if m.ran}


def _differences(a: ProfileReport, b: ProfileReport) -> list[str]:
    pairs = [(f"machine {k}", a.machine.get(k), b.machine.get(k)) for k in _MACHINE_KEYS]
    pairs += [(f"setting {k}", a.settings.get(k), b.settings.get(k)) for k in ("threads",)]
    pairs.append(
        ("bundle manifest_sha256", a.bundle.get("manifest_sha256"), b.bundle.get("manifest_sha256"))
    )
    return [f"{what}: {va!r} → {vb!r}" for what, va, vb in pairs if va != vb]


def compare(
    a: ProfileReport | str | os.PathLike[str],
    b: ProfileReport | str | os.PathLike[str],
    threshold: float | str = 0.10,
    percentiles: tuple[str, ...] = COMPARED,
    gated: tuple[str, ...] = GATED,
    min_delta_ms: float = MIN_DELTA_MS,
) -> Comparison:
    """Compare run ``b`` against run ``a`` (reports or JSON paths), per measurement and percentile.

    A change is a regression when B is slower than A by more than ``threshold`` (a fraction or
    "10%") and by more than ``min_delta_ms``, on one of the ``gated`` percentiles.
    """
    frac = parse_threshold(threshold)
    for p in (*percentiles, *gated):
        check_percentile(p)
    ra, rb = _as_report(a), _as_report(b)
    if ra.mode != rb.mode:
        raise EdgeVisionError(
            f"cannot compare a {ra.mode!r} profile with a {rb.mode!r} profile",
            "compare two model profiles, or two pipeline profiles",
        )
    ia, ib = _index(ra), _index(rb)
    changes = []
    for key in (k for k in ia if k in ib):
        sa, sb = ia[key].stats, ib[key].stats
        assert sa is not None and sb is not None  # _index keeps measured ones only
        for p in percentiles:
            va, vb = sa.get(p), sb.get(p)
            slower = vb - va > max(min_delta_ms, frac * va)
            changes.append(Change(key[0], key[1], p, va, vb, p in gated and slower))
    label = "{}@batch{}".format
    return Comparison(
        threshold=frac,
        changes=changes,
        only_in_a=[label(*k) for k in ia if k not in ib],
        only_in_b=[label(*k) for k in ib if k not in ia],
        differences=_differences(ra, rb),
    )
