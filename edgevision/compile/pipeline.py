"""`build_bundle`: export → calibrate → quantize → verify → bundle, composed from the steps.

Each step is a public callable in its own module; this function only wires them together and
writes the bundle atomically at the end (a failed check, e.g. ``max_drop``, writes nothing).
With ``max_drop``, an INT8 artifact over budget starts the accuracy-budget search
(`fit_budget`: the fewest sensitive layers kept in float, same for every target); ``analyze``
adds the sensitivity table to the report; the calibration advisor's verdict is always reported.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from edgevision.bundle import write_bundle
from edgevision.compile.advise import CalibrationAdvice, advise_calibration_size
from edgevision.compile.budget import BudgetResult, fit_budget
from edgevision.compile.budget import render_markdown as budget_markdown
from edgevision.compile.calibrate import METHODS, CalibrationRanges, calibrate
from edgevision.compile.calibration import MIN_IMAGES, CalibrationSet, collect_calibration
from edgevision.compile.deploy import DeployInputs, Deployment, choose_cpu, not_measured
from edgevision.compile.evaluate import (
    EvalSet,
    Evaluation,
    check_max_drop,
    eval_set_from_folder,
    eval_set_from_split,
    evaluate,
    low_agreement,
)
from edgevision.compile.export import (
    EXPORTERS,
    INPUT_NAME,
    OUTPUT_NAME,
    ExportCheck,
    check_export,
    export_onnx,
)
from edgevision.compile.progress import Tracker, silent
from edgevision.compile.quantize import TARGETS, prepare_for_quantization, quantize_for_target
from edgevision.compile.report import PLOT, plot_per_class, write_report
from edgevision.compile.sensitivity import FILES as SENSITIVITY_FILES
from edgevision.compile.sensitivity import SensitivityTable, analyze_sensitivity
from edgevision.compile.source import ModelSource, is_bundle, load_source
from edgevision.errors import BuildError, ConfigError
from edgevision.fileio import atomic_write_text, check_replaceable_dir, scratch_dir
from edgevision.spec import ModelSpec

log = logging.getLogger(__name__)

FP32_FILE = "model.fp32.onnx"
CALIBRATION_FILE = "calibration.json"


@dataclass
class BuildConfig:
    """Everything `build_bundle` needs; the CLI fills it from its options."""

    input: Path
    out: Path
    spec: Path | None = None  # required for an ONNX input
    calib: str | None = None  # folder, glob or manifest; None: sample the training split
    calib_size: int = 512
    method: str = "minmax"
    targets: tuple[str, ...] = ("cpu", "tensorrt")
    eval: Path | None = None  # ImageFolder; None: the checkpoint's test split
    max_drop: float | None = None  # top-1 points an INT8 artifact may lose
    threads: int = 0  # 0: the libraries' defaults
    exporter: str = "dynamo"
    opset: int | None = None
    export_atol: float = 1e-3
    export_min_agreement: float = 0.99
    export_check_images: int = 64
    cache_dir: Path | None = None
    nodes_to_exclude: tuple[str, ...] = ()
    exclude_op_types: tuple[str, ...] = ()  # every node of these types stays float
    seed: int = 0
    batch_size: int = 16
    search_float: bool = True  # over --max-drop: keep the most sensitive layers in float
    max_float_layers: int = 8  # the worst layers that search (and --analyze) may try in float
    analyze: bool = False  # write the sensitivity table into the report
    advise: bool = True  # calibration advisor: how many images the ranges needed
    latency_iterations: int = 100  # interleaved rounds timing the budget's choices (0: skip)
    force: bool = False  # --out may replace a non-empty folder that is not a bundle
    min_agreement: float = 99.0  # % of held-out images INT8 must agree with FP32 on
    deploy_by_latency: bool = True  # time FP32 vs INT8: deploy INT8 only where it is faster
    deploy_max_batch: int = 8  # the largest batch timed for the deployment choice
    deploy_iterations: int = 30  # interleaved rounds of that timing

    def __post_init__(self) -> None:
        for name in ("input", "out", "spec", "eval", "cache_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                setattr(self, name, Path(value))
        self.targets = tuple(self.targets)
        self.nodes_to_exclude = tuple(self.nodes_to_exclude)
        self.exclude_op_types = tuple(self.exclude_op_types)

    def validate(self) -> None:
        """Reject bad options before any work, naming the option and the fix."""
        for name in self.targets:
            TARGETS.get(name)
        METHODS.get(self.method)
        EXPORTERS.get(self.exporter)
        if not self.targets:
            raise ConfigError("no --targets given", f"use some of: {', '.join(TARGETS.names())}")
        if self.calib_size < MIN_IMAGES:
            raise ConfigError(
                f"--calib-size {self.calib_size} is too small", f"use >= {MIN_IMAGES} (512 default)"
            )
        if self.max_drop is not None and self.max_drop < 0:
            raise ConfigError(
                f"--max-drop {self.max_drop} is negative", "give points >= 0, e.g. 0.5"
            )
        if not 0 <= self.min_agreement <= 100:
            raise ConfigError(
                f"--min-agreement {self.min_agreement} is not a percentage", "use e.g. 99"
            )
        if self.deploy_max_batch < 1 or self.deploy_iterations < 1:
            raise ConfigError("the deployment timing needs a max batch and iterations >= 1")
        if self.threads < 0 or self.batch_size < 1:
            raise ConfigError("--threads must be >= 0 and the batch size >= 1")
        if self.max_float_layers < 1 or self.latency_iterations < 0:
            raise ConfigError(
                f"--max-float-layers {self.max_float_layers} / latency iterations "
                f"{self.latency_iterations} out of range",
                "use --max-float-layers >= 1 (8 default) and >= 0 latency iterations",
            )
        if Path(self.out).resolve() == Path(self.input).resolve():
            raise ConfigError(f"--out {self.out} is the input", "write the bundle elsewhere")
        check_out(self.out, self.force)


def check_out(out: Path, force: bool = False) -> None:
    """``out`` may be new, empty or an earlier bundle; anything else of the user's is refused."""
    check_replaceable_dir(out, is_bundle, "bundle", force)
    if force and out.is_dir() and any(out.iterdir()) and not is_bundle(out):
        log.warning("--force: replacing the folder %s, which is not a bundle", out)


@dataclass
class BuildResult:
    """What a build produced; ``evaluation`` is None when there was no labelled set."""

    out: Path
    manifest: dict[str, Any]
    report: dict[str, Any]
    calibration: CalibrationSet
    ranges: CalibrationRanges
    export_check: ExportCheck | None
    evaluation: Evaluation | None
    warnings: list[str] = field(default_factory=list)
    build_time_s: float = 0.0
    advice: CalibrationAdvice | None = None
    budget: BudgetResult | None = None  # with max_drop: what the accuracy budget cost
    sensitivity: SensitivityTable | None = None


def build_bundle(config: BuildConfig, track: Tracker = silent) -> BuildResult:
    """Build a bundle from a checkpoint (RUN folder) or an ONNX file + spec.

    Raises `EdgeVisionError` subclasses for bad inputs and failed checks; on any failure the
    bundle at ``config.out`` is not written (an earlier one there is left untouched).
    """
    config.validate()
    if is_bundle(config.input):
        raise BuildError(
            f"{config.input} is already a bundle",
            "to build its TensorRT engine on the device: edgevision engine BUNDLE",
        )
    started = time.perf_counter()
    timings: dict[str, float] = {}
    source = load_source(config.input, config.spec)
    warnings = list(source.notes)
    for note in source.notes:
        log.warning("%s", note)
    eval_set = _eval_set(config, source, warnings)
    with _torch_threads(config.threads), scratch_dir("ev-build-") as work:
        # The calibration set first: a bad --calib fails before a slow export.
        with _timed(timings, "calibration_set"):
            calib = collect_calibration(
                config.calib, source.spec, config.calib_size, source.split, config.seed, track
            )
        warnings += calib.warnings
        with _timed(timings, "export"):
            fp32 = _fp32_model(source, config, work, track)
        with _timed(timings, "export_check"):
            check = _check_export(source, fp32, calib, config, track)
        with _timed(timings, "calibrate"):
            prep = prepare_for_quantization(fp32, work / "model.prep.onnx")
            config = _with_op_types_excluded(config, prep)
            ranges = calibrate(
                prep,
                calib,
                source.spec,
                method=config.method,
                cache_dir=config.cache_dir,
                threads=config.threads,
                batch_size=config.batch_size,
                track=track,
            )
        with _timed(timings, "quantize"):
            artifacts = _quantize(prep, ranges, config, work)
        with _timed(timings, "evaluate"):
            evaluation = _evaluate(fp32, artifacts, eval_set, source.spec, config, track)
        if evaluation is not None and evaluation.skipped:
            warnings.append(f"skipped {len(evaluation.skipped)} unreadable evaluation image(s)")
        with _timed(timings, "calibration_advice"):
            advice = _advise(prep, calib, source.spec, config, track)
        parts = _Parts(source, config, fp32, artifacts, calib, ranges, check, evaluation, advice)
        with _timed(timings, "accuracy_budget"):
            _accuracy(parts, prep, eval_set, work, track)
        if parts.evaluation is not None:
            warnings += [
                f"low agreement: {w}" for w in low_agreement(parts.evaluation, config.min_agreement)
            ]
        with _timed(timings, "deploy_choice"):
            _deploy(parts, prep, eval_set, work, track)
        elapsed = time.perf_counter() - started
        report = _report(parts, timings, warnings, elapsed)
        manifest = _write(parts, report, work)
    return BuildResult(
        config.out, manifest, report, calib, ranges, check, parts.evaluation, warnings, elapsed,
        advice, parts.budget, parts.table,
    )  # fmt: skip


# -- steps as the pipeline uses them ----------------------------------------------------------
def _eval_set(config: BuildConfig, source: ModelSource, warnings: list[str]) -> EvalSet | None:
    if config.eval is not None:
        return eval_set_from_folder(config.eval, source.spec)
    found = eval_set_from_split(source.split, source.spec) if source.split else None
    if found is None:
        if config.max_drop is not None:
            raise ConfigError(
                "--max-drop needs a labelled held-out set, and there is none",
                "give --eval DIR (an ImageFolder), or build from a RUN folder with split.json",
            )
        warnings.append("no labelled held-out set: accuracy not verified (give --eval DIR)")
    return found


def _fp32_model(source: ModelSource, config: BuildConfig, work: Path, track: Tracker) -> Path:
    out = work / FP32_FILE
    if source.model is not None:
        return export_onnx(source.model, source.spec, out, config.exporter, config.opset, track)
    return normalize_onnx(source.onnx_path, out, source.spec)  # type: ignore[arg-type]


def normalize_onnx(path: Path, out: Path, spec: ModelSpec | None = None) -> Path:
    """Copy a user's ONNX as one file, its input/output renamed ``input``/``logits``.

    Unnamed nodes get stable names (``Conv_0``, …) so ``nodes_to_exclude`` can address them.
    With ``spec``, dynamic input dims other than the batch are fixed to the spec's size, so
    calibration, quantization and the runtime all see the shape the model is deployed at.
    """
    import onnx

    model = onnx.load(str(path))
    inits = {i.name for i in model.graph.initializer}
    graph_input = next(i for i in model.graph.input if i.name not in inits)
    old_in = graph_input.name
    if spec is not None:
        dims = graph_input.type.tensor_type.shape.dim
        for dim, size in zip(dims[1:], spec.input_shape()[1:], strict=True):
            if not dim.HasField("dim_value"):
                dim.dim_value = int(size)
    renames = {old_in: INPUT_NAME, model.graph.output[0].name: OUTPUT_NAME}
    for value in [*model.graph.input, *model.graph.output]:
        value.name = renames.get(value.name, value.name)
    taken = {n.name for n in model.graph.node}
    for i, node in enumerate(model.graph.node):
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
        if not node.name and f"{node.op_type}_{i}" not in taken:
            node.name = f"{node.op_type}_{i}"
    onnx.save(model, str(out))
    return out


def _check_export(
    source: ModelSource, fp32: Path, calib: CalibrationSet, config: BuildConfig, track: Tracker
) -> ExportCheck | None:
    if source.model is None:
        return None  # an ONNX input has no PyTorch model to compare with
    images = calib.tensors[: config.export_check_images]
    return check_export(
        source.model,
        fp32,
        images,
        atol=config.export_atol,
        min_agreement=config.export_min_agreement,
        threads=config.threads,
        batch_size=config.batch_size,
        track=track,
    )


def _with_op_types_excluded(config: BuildConfig, prep: Path) -> BuildConfig:
    """``exclude_op_types`` as node names of the pre-processed model, added to the config's."""
    if not config.exclude_op_types:
        return config
    import onnx

    nodes = onnx.load(str(prep), load_external_data=False).graph.node
    present = {n.op_type for n in nodes}
    missing = [t for t in config.exclude_op_types if t not in present]
    if missing:
        raise ConfigError(
            f"--exclude-op-types {', '.join(missing)}: the model has no node of that type",
            f"its op types: {', '.join(sorted(present))}",
        )
    chosen = [n.name for n in nodes if n.op_type in config.exclude_op_types]
    log.info("--exclude-op-types keeps %d node(s) in float", len(chosen))
    return replace(
        config, nodes_to_exclude=tuple(dict.fromkeys([*config.nodes_to_exclude, *chosen]))
    )


def _quantize(
    prep: Path, ranges: CalibrationRanges, config: BuildConfig, work: Path
) -> dict[str, Path]:
    out = {}
    for name in config.targets:
        target = TARGETS.get(name)
        try:
            out[target.artifact] = quantize_for_target(
                prep, ranges, name, work / target.file, config.nodes_to_exclude
            )
        except BuildError as exc:
            others = [t for t in config.targets if t != name]
            raise BuildError(
                f"target {name}: {exc.message}",
                f"build the other target(s) alone with --targets {','.join(others)}, or keep "
                "the offending nodes in float with --exclude-nodes NAME,… / --exclude-op-types"
                if others
                else "keep the offending nodes in float with --exclude-nodes NAME,… or "
                "--exclude-op-types TYPE,…",
            ) from None
    return out


def _evaluate(
    fp32: Path,
    artifacts: dict[str, Path],
    eval_set: EvalSet | None,
    spec: ModelSpec,
    config: BuildConfig,
    track: Tracker,
) -> Evaluation | None:
    if eval_set is None:
        return None
    models = {"fp32": fp32, **artifacts}
    evaluation = evaluate(models, eval_set, spec, config.threads, 2 * config.batch_size, track)
    for name in artifacts:
        log.info(
            "%s: top-1 %.2f%% (FP32 %.2f%%), drop %.2f points, agreement %.2f%%",
            name,
            evaluation.top1(name),
            evaluation.top1("fp32"),
            evaluation.drop(name),
            evaluation.agreement(name),
        )
    return evaluation


def _advise(
    prep: Path, calib: CalibrationSet, spec: ModelSpec, config: BuildConfig, track: Tracker
) -> CalibrationAdvice | None:
    if not config.advise:
        return None
    advice = advise_calibration_size(
        prep,
        calib,
        spec,
        cache_dir=config.cache_dir,
        threads=config.threads,
        batch_size=config.batch_size,
        track=track,
    )
    log.info("calibration advisor: %s", advice.message())
    return advice


# -- accuracy budget and sensitivity ----------------------------------------------------------
def _accuracy(p: _Parts, prep: Path, eval_set: EvalSet | None, work: Path, track: Tracker) -> None:
    """Meet ``max_drop`` (keeping layers in float when needed) and/or analyze sensitivity."""
    config, spec = p.config, p.source.spec

    def evaluator(models: dict[str, Path]) -> Evaluation:
        # Silent: the search re-verifies many times; its log lines say what each found.
        return evaluate(models, eval_set, spec, config.threads, 2 * config.batch_size, silent)

    search = config.max_drop is not None and config.search_float and p.evaluation is not None
    if search:
        p.budget = fit_budget(
            prep, p.ranges, p.calib, spec, eval_set, config.max_drop, work / "budget",
            targets=config.targets, top_k=config.max_float_layers,
            nodes_to_exclude=config.nodes_to_exclude, reference=p.fp32,
            plain_models=p.artifacts, plain=p.evaluation, evaluator=evaluator,
            latency_iterations=config.latency_iterations, threads=config.threads,
            batch_size=config.batch_size, track=track,
        )  # fmt: skip
        log.info("%s", p.budget.summary())
        p.table, p.artifacts = p.budget.table, p.budget.artifacts
        p.evaluation, p.nodes_to_exclude = p.budget.evaluation, p.budget.nodes_to_exclude
    if p.evaluation is not None:
        check_max_drop(p.evaluation, config.max_drop, config.min_agreement)
    if config.analyze and p.table is None:
        p.table = analyze_sensitivity(
            prep, p.ranges, p.calib, spec, target=_worst_target(p), top_k=config.max_float_layers,
            nodes_to_exclude=config.nodes_to_exclude, reference=p.fp32,
            plain=p.artifacts[TARGETS.get(_worst_target(p)).artifact],
            evaluator=evaluator if eval_set is not None else None, threads=config.threads,
            batch_size=config.batch_size, work_dir=work, track=track,
        )  # fmt: skip


def _worst_target(p: _Parts) -> str:
    """The target whose INT8 lost most top-1 (the first target when not evaluated)."""
    if p.evaluation is None:
        return p.config.targets[0]
    return max(p.config.targets, key=lambda t: p.evaluation.drop(TARGETS.get(t).artifact))


# -- which artifact each target deploys --------------------------------------------------------
def _deploy(p: _Parts, prep: Path, eval_set: EvalSet | None, work: Path, track: Tracker) -> None:
    """Time FP32 vs INT8 for ``cpu`` (keeping layers slower in INT8 in float if that makes it
    faster) and record each target's choice; TensorRT decides on the device."""
    for name in p.config.targets:
        target = TARGETS.get(name)
        if name != "cpu":
            p.deploy[name] = not_measured(
                name, target.artifact, "timed on the device when `edgevision engine` builds it"
            )
        elif not p.config.deploy_by_latency:
            p.deploy[name] = not_measured(
                name, target.artifact, "not timed (--no-deploy-by-latency)"
            )
        else:
            p.deploy[name] = _deploy_cpu(p, prep, eval_set, work)
        log.info("deploy %s: %s", name, p.deploy[name].why)


def _deploy_cpu(p: _Parts, prep: Path, eval_set: EvalSet | None, work: Path) -> Deployment:
    config, target = p.config, TARGETS.get("cpu")
    folder = work / "deploy"

    def requantize(nodes: Sequence[str], sub: Path) -> Path:
        sub.mkdir(parents=True, exist_ok=True)
        return quantize_for_target(prep, p.ranges, "cpu", sub / target.file, tuple(nodes))

    threads = config.threads if config.threads > 0 else 1
    inputs = DeployInputs(
        p.fp32,
        p.artifacts[target.artifact],
        p.source.spec.input_shape(1),
        requantize,
        folder,
        config.deploy_max_batch,
        threads,
        config.deploy_iterations,
        p.nodes_to_exclude,
    )
    decision, model = choose_cpu(inputs)
    if model != p.artifacts[target.artifact]:
        p.artifacts[target.artifact] = model
        p.nodes_to_exclude = tuple(dict.fromkeys([*p.nodes_to_exclude, *decision.float_nodes]))
        if eval_set is not None:  # the shipped INT8 changed: verify it again
            models = {"fp32": p.fp32, **p.artifacts}
            p.evaluation = evaluate(
                models, eval_set, p.source.spec, config.threads, 2 * config.batch_size, silent
            )
            check_max_drop(p.evaluation, config.max_drop, config.min_agreement)
    if p.evaluation is not None and decision.artifact != "fp32":
        ev = p.evaluation
        decision.why += (
            f"; drop {ev.drop(target.artifact):.2f} points, agreement "
            f"{ev.agreement(target.artifact):.2f}%"
        )
    return decision


# -- the bundle -------------------------------------------------------------------------------
@dataclass
class _Parts:
    source: ModelSource
    config: BuildConfig
    fp32: Path
    artifacts: dict[str, Path]
    calib: CalibrationSet
    ranges: CalibrationRanges
    check: ExportCheck | None
    evaluation: Evaluation | None
    advice: CalibrationAdvice | None = None
    budget: BudgetResult | None = None
    table: SensitivityTable | None = None
    nodes_to_exclude: tuple[str, ...] = ()
    deploy: dict[str, Deployment] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.nodes_to_exclude = self.nodes_to_exclude or self.config.nodes_to_exclude


def versions() -> dict[str, str | None]:
    """Versions of the libraries a bundle was built with."""
    out: dict[str, str | None] = {}
    for dist in ("edgevision", "torch", "onnx", "onnxruntime", "timm"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _calibration_record(p: _Parts) -> dict[str, Any]:
    return {
        "file": CALIBRATION_FILE,
        "method": p.config.method,
        "size": len(p.calib),
        "manifest_sha256": p.calib.manifest_sha256,
        "source": p.calib.source,
        "skipped": len(p.calib.skipped),
        "ranges_from_cache": p.ranges.from_cache,
        "cache_key": p.ranges.key,
    }


def _report(
    p: _Parts, timings: dict[str, float], warnings: list[str], elapsed: float
) -> dict[str, Any]:
    return {
        "source": p.source.record(),
        "export_check": p.check.to_dict() if p.check else None,
        "calibration": _calibration_record(p) | {"stats": p.calib.stats},
        "accuracy": p.evaluation.summary() if p.evaluation else None,
        "targets": list(p.config.targets),
        "nodes_to_exclude": list(p.nodes_to_exclude),
        "calibration_advice": p.advice.to_dict() if p.advice else None,
        "accuracy_budget": p.budget.to_dict() if p.budget else None,
        "deploy": {name: d.to_dict() for name, d in p.deploy.items()},
        "sensitivity": _sensitivity_record(p),
        "build_time_s": round(elapsed, 2),
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "warnings": warnings,
        "versions": versions(),
    }


def _write(p: _Parts, report: dict[str, Any], work: Path) -> dict[str, Any]:
    import onnx

    files: dict[str, Any] = {FP32_FILE: p.fp32}
    artifacts: dict[str, dict[str, Any]] = {
        "fp32": {"file": FP32_FILE, "precision": "fp32", "target": "any"}
    }
    for name in p.config.targets:
        target = TARGETS.get(name)
        files[target.file] = p.artifacts[target.artifact]
        artifacts[target.artifact] = target.record() | {"calibration_method": p.config.method}
        if p.nodes_to_exclude:
            artifacts[target.artifact]["float_nodes"] = list(p.nodes_to_exclude)
    calib_doc = p.calib.manifest() | {"method": p.config.method}
    files[CALIBRATION_FILE] = (json.dumps(calib_doc, indent=2) + "\n").encode()
    reports = work / "report"
    reports.mkdir()
    files |= write_report(report, reports)
    extra = _extra_markdown(p, report)
    if extra:
        md = files["report.md"]
        files["report.md"] = atomic_write_text(md, Path(md).read_text(encoding="utf-8") + extra)
    if p.table is not None:
        files |= p.table.write(reports)
    if p.evaluation is not None:
        files[PLOT] = plot_per_class(p.evaluation, reports / PLOT)
    opset = next(
        o.version for o in onnx.load(str(p.fp32)).opset_import if o.domain in ("", "ai.onnx")
    )
    check_out(p.config.out, p.config.force)  # again: the folder may have changed meanwhile
    write_bundle(
        p.config.out,
        files,
        p.source.spec,
        artifacts,
        build={
            "time_s": report["build_time_s"],
            "exporter": p.config.exporter if p.source.model is not None else None,
            "opset": opset,
            "source": report["source"],
            "export_check": report["export_check"],
            "threads": p.config.threads,
        },
        calibration=_calibration_record(p),
        deploy={name: d.to_dict() for name, d in p.deploy.items()},
        accuracy=report["accuracy"],
        accuracy_budget=_budget_record(p),
        versions=report["versions"],
        report={
            "json": "report.json",
            "markdown": "report.md",
            "plot": PLOT if p.evaluation else None,
            "sensitivity": report["sensitivity"],
        },
    )
    return json.loads((Path(p.config.out) / "manifest.json").read_text(encoding="utf-8"))


def _sensitivity_record(p: _Parts) -> dict[str, Any] | None:
    if p.table is None:
        return None
    return dict(SENSITIVITY_FILES) | {"target": p.table.target, "layers": len(p.table.rows)}


def _budget_record(p: _Parts) -> dict[str, Any] | None:
    if p.budget is None:
        return None
    b = p.budget
    return {
        "max_drop": b.max_drop,
        "met": b.met,
        "float_layers": [r.layer for r in b.layers],
        "float_nodes": list(b.nodes_to_exclude),
        "drop_before": {k: round(v, 3) for k, v in b.before.drops.items()},
        "drop_after": {k: round(v, 3) for k, v in b.after.drops.items()},
        "latency_ms": b.latency["median_ms"] if b.latency else None,
    }


def _extra_markdown(p: _Parts, report: dict[str, Any]) -> str:
    """report.md sections for the calibration advisor, the budget and the sensitivity table."""
    text = ""
    if p.advice is not None:
        text += f"\n## Calibration advisor\n\n{p.advice.message()}.\n"
    if report["accuracy_budget"]:
        text += budget_markdown(report["accuracy_budget"])
    if p.table is not None:
        text += (
            f"\n## Sensitivity\n\n{len(p.table.rows)} quantized layers ranked in "
            f"[{SENSITIVITY_FILES['markdown']}]({SENSITIVITY_FILES['markdown']})\n\n"
            f"![sensitivity]({SENSITIVITY_FILES['plot']})\n"
        )
    return text


# -- helpers ----------------------------------------------------------------------------------
@contextlib.contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Limit torch's intra-op threads for the build (export, export check), then restore."""
    if threads <= 0:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


__all__ = ["BuildConfig", "BuildResult", "build_bundle", "normalize_onnx", "versions"]
