"""What the build steps share: one object each step takes, instead of a dozen arguments.

Every step after calibration — quantize for each target, verify, the accuracy budget
(`fit_budget`), the sensitivity analysis (`analyze_sensitivity`), the deployment choice — needs
the same things: the pre-processed model that was calibrated and its ranges, the calibration
and evaluation sets, how to evaluate, the targets, the nodes already kept in float, threads,
batch size, progress and a folder for its models. A `Job` holds them; a step takes the job and
its own options only. A new task adds what it needs (its metric: an ``evaluator``) here, not a
parameter to every step.

`BuildContext` is the job of one `build_bundle`: the job, plus the build's config and source and
what its steps have produced so far (artifacts, evaluation, budget, …), which the report and the
bundle are written from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from edgevision.compile.evaluate import EvalSet, Evaluation, Evaluator
from edgevision.compile.progress import Tracker, silent
from edgevision.compile.quantize import quantize_for_target
from edgevision.errors import ConfigError

if TYPE_CHECKING:
    from edgevision.compile.advise import CalibrationAdvice
    from edgevision.compile.budget import BudgetResult
    from edgevision.compile.calibrate import CalibrationRanges
    from edgevision.compile.calibration import CalibrationSet
    from edgevision.compile.deploy import Deployment
    from edgevision.compile.export import ExportCheck
    from edgevision.compile.pipeline import BuildConfig
    from edgevision.compile.sensitivity import SensitivityTable
    from edgevision.compile.source import ModelSource
    from edgevision.spec import ModelSpec


@dataclass(kw_only=True)
class Job:
    """The calibrated model and everything the steps after calibration share."""

    prep: Path  # the pre-processed FP32 model that was calibrated (and is quantized)
    ranges: CalibrationRanges
    calib: CalibrationSet
    spec: ModelSpec
    eval_set: EvalSet | None = None  # labelled held-out images
    evaluator: Evaluator | None = None  # default: `evaluate` on eval_set
    reference: Path | None = None  # the FP32 model INT8 is compared with (default: prep)
    targets: tuple[str, ...] = ("cpu", "tensorrt")
    nodes_to_exclude: tuple[str, ...] = ()  # kept in float in every artifact
    threads: int = 0  # 0: the libraries' defaults
    batch_size: int = 16
    work: Path | None = None  # where the steps write their models (see `folder`)
    track: Tracker = silent

    def __post_init__(self) -> None:
        self.prep = Path(self.prep)
        self.reference = None if self.reference is None else Path(self.reference)
        self.work = None if self.work is None else Path(self.work)
        self.targets = tuple(self.targets)
        self.nodes_to_exclude = tuple(self.nodes_to_exclude)

    @property
    def fp32(self) -> Path:
        """The FP32 model drops are measured and latencies compared against."""
        return self.reference or self.prep

    @property
    def can_evaluate(self) -> bool:
        return self.evaluator is not None or self.eval_set is not None

    def require_evaluation(self, what: str) -> None:
        """Refuse ``what`` (a step that verifies accuracy) when there is nothing to verify on."""
        if not self.can_evaluate:
            _no_evaluation(what)

    def evaluate(self, models: Mapping[str, Path]) -> Evaluation:
        """Predictions of ``models`` (name → path) on the evaluation set, compared."""
        if self.evaluator is not None:
            return self.evaluator(models)
        if self.eval_set is None:
            _no_evaluation("this step")
        from edgevision.compile.source import build_hooks

        return build_hooks(self.spec).evaluate(
            models, self.eval_set, self.spec, self.threads, 2 * self.batch_size, self.track
        )

    def quantize(
        self, target: str, out: Path, nodes: Sequence[str] = (), finalize: bool = True
    ) -> Path:
        """``prep`` quantized for ``target`` into ``out`` with ``nodes`` kept in float."""
        return quantize_for_target(
            self.prep, self.ranges, target, out, tuple(nodes), finalize=finalize
        )

    def folder(self, name: str) -> Path:
        """``work/name``, created: a step's folder for the models it writes."""
        if self.work is None:
            raise ConfigError(
                f"the {name} step writes models and the job has no work folder",
                "give the Job a work=FOLDER",
            )
        out = self.work / name
        out.mkdir(parents=True, exist_ok=True)
        return out


def _no_evaluation(what: str) -> NoReturn:
    raise ConfigError(
        f"{what} needs a labelled evaluation set, and there is none",
        "give --eval DIR (labelled images in the task's dataset layout), or build from a "
        "RUN folder with split.json",
    )


@dataclass(kw_only=True)
class BuildContext(Job):
    """One build's job, plus what its steps have produced so far."""

    config: BuildConfig
    source: ModelSource
    work: Path = field()  # the build's private temp folder (required here)
    started: float  # time.perf_counter() when the build began
    check: ExportCheck | None = None  # PyTorch vs ONNX (None: an ONNX input)
    artifacts: dict[str, Path] = field(default_factory=dict)  # INT8 artifact name → model
    evaluation: Evaluation | None = None  # of the artifacts as they stand
    advice: CalibrationAdvice | None = None
    budget: BudgetResult | None = None
    table: SensitivityTable | None = None
    deploy: dict[str, Deployment] = field(default_factory=dict)  # target → its choice
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # step → seconds
    float_default: dict | None = None  # the task's float-by-default nodes and why (report)


__all__ = ["BuildContext", "Job"]
