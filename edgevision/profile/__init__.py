"""Latency and throughput measurement, budgets, reports and plots (torch-free).

Model mode (`profile_models`) times every artifact of a bundle that can run here, interleaved
round-robin; pipeline mode (`profile_pipeline`) times the runtime end to end on a source.
`check_budget` turns a report into a CI gate, `compare` two reports into a regression check.
"""

from edgevision.profile.budget import EXIT_BUDGET, BudgetResult, check_budget
from edgevision.profile.compare import Change, Comparison, compare, parse_threshold
from edgevision.profile.machine import describe_machine
from edgevision.profile.models import parse_batch_sizes, profile_models
from edgevision.profile.pipeline import profile_pipeline
from edgevision.profile.plot import plot_report
from edgevision.profile.report import Measurement, PipelineProfile, ProfileReport
from edgevision.profile.stats import PERCENTILES, LatencyStats, summarize

__all__ = [
    "EXIT_BUDGET",
    "PERCENTILES",
    "BudgetResult",
    "Change",
    "Comparison",
    "LatencyStats",
    "Measurement",
    "PipelineProfile",
    "ProfileReport",
    "check_budget",
    "compare",
    "describe_machine",
    "parse_batch_sizes",
    "parse_threshold",
    "plot_report",
    "profile_models",
    "profile_pipeline",
    "summarize",
]
