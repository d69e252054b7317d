"""`build_bundle`: export → calibrate → quantize → verify → bundle, composed from the steps.

Each step is a public callable in its own module; this function only wires them together and
writes the bundle atomically at the end (a failed check, e.g. ``max_drop``, writes nothing).
Up to the calibrated ranges the steps run in turn; from there on they share one
`BuildContext` (compile/context.py) and run in the order of ``STEPS``, each taking the context.
With ``max_drop``, an INT8 artifact over budget starts the accuracy-budget search
(`fit_budget`: the fewest sensitive layers kept in float, same for every target); ``analyze``
adds the sensitivity table to the report; the calibration advisor's verdict is always reported.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from edgevision.bundle import write_bundle_manifest
from edgevision.compile.advise import CalibrationAdvice, advise_calibration_size
from edgevision.compile.budget import BudgetResult, check_max_drop_value, fit_budget
from edgevision.compile.budget import render_markdown as budget_markdown
from edgevision.compile.calibrate import METHODS, CalibrationRanges, calibrate
from edgevision.compile.calibration import MIN_IMAGES, CalibrationSet, collect_calibration
from edgevision.compile.context import BuildContext
from edgevision.compile.deploy import DeployInputs, Deployment, choose_cpu, not_measured
from edgevision.compile.evaluate import (
    EvalSet,
    Evaluation,
    Evaluator,
    check_max_drop,
    low_agreement,
)
from edgevision.compile.export import (
    EXPORTERS,
    INPUT_NAME,
    OUTPUT_NAME,
    ExportCheck,
    export_onnx,
)
from edgevision.compile.progress import Tracker, silent
from edgevision.compile.quantize import TARGETS, prepare_for_quantization, quantize_for_target
from edgevision.compile.report import write_report
from edgevision.compile.sensitivity import FILES as SENSITIVITY_FILES
from edgevision.compile.sensitivity import SensitivityTable, analyze_sensitivity, union
from edgevision.compile.source import ModelSource, build_hooks, is_bundle, load_source
from edgevision.errors import BuildError, ConfigError
from edgevision.fileio import atomic_write_text, check_replaceable_dir, scratch_dir
from edgevision.spec import ModelSpec

log = logging.getLogger(__name__)

FP32_FILE = "model.fp32.onnx"
FLOAT_HEAD = ("head", "tail", "none")
CALIBRATION_FILE = "calibration.json"


@dataclass
class BuildConfig:
    """Everything `build_bundle` needs; the CLI fills it from its options."""

    input: Path
    out: Path
    spec: Path | None = None  # required for an ONNX input
    calib: str | None = None  # folder, glob or manifest; None: sample the training split
    calib_size: int = 512
    method: str | None = None  # calibration; None: the task's (`BuildHooks.calibration_method`)
    targets: tuple[str, ...] = ("cpu", "tensorrt")
    eval: Path | None = None  # ImageFolder; None: the checkpoint's test split
    max_drop: float | None = None  # points of the task's metric (top-1, mAP) INT8 may lose
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
    # INT8's agreement with FP32 in % (None: the task's default, 99 for a classifier's top-1,
    # 90 for a detector's detections at its score threshold)
    min_agreement: float | None = None
    deploy_by_latency: bool = True  # time FP32 vs INT8: deploy INT8 only where it is faster
    deploy_max_batch: int = 8  # the largest batch timed for the deployment choice
    deploy_iterations: int = 30  # interleaved rounds of that timing
    # The task's float-by-default layers (a detector's head tail): "head" (its final layers and
    # what follows them), "tail" (only what follows: decode, sigmoid, top-K), "none"; None:
    # the task's default (`BuildHooks.float_head`: a detector's "tail", otherwise "none")
    float_head: str | None = None

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
        if self.method is not None:
            METHODS.get(self.method)
        EXPORTERS.get(self.exporter)
        if not self.targets:
            raise ConfigError("no --targets given", f"use some of: {', '.join(TARGETS.names())}")
        if self.calib_size < MIN_IMAGES:
            raise ConfigError(
                f"--calib-size {self.calib_size} is too small", f"use >= {MIN_IMAGES} (512 default)"
            )
        if self.max_drop is not None:
            check_max_drop_value(self.max_drop)
        if self.float_head is not None and self.float_head not in FLOAT_HEAD:
            raise ConfigError(
                f"--float-head {self.float_head!r} is not one of {', '.join(FLOAT_HEAD)}",
                "use head, tail or none (default: the task's)",
            )
        if self.min_agreement is not None and not 0 <= self.min_agreement <= 100:
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
    source = load_source(config.input, config.spec)
    hooks = build_hooks(source.spec)
    if config.min_agreement is None:
        config = dataclasses.replace(config, min_agreement=hooks.min_agreement)
    if config.method is None:
        config = dataclasses.replace(config, method=hooks.calibration_method)
    for note in source.notes:
        log.warning("%s", note)
    eval_set = _eval_set(config, source)
    with _torch_threads(config.threads), scratch_dir("ev-build-") as work:
        ctx = _calibrated(config, source, eval_set, work, track, started)
        for name, step in STEPS:
            with _timed(ctx.timings, name):
                step(ctx)
        return _finish(ctx)


# -- up to the calibrated model ---------------------------------------------------------------
NO_EVAL_SET = "no labelled held-out set: accuracy not verified (give --eval DIR)"


def _eval_set(config: BuildConfig, source: ModelSource) -> EvalSet | None:
    hooks = build_hooks(source.spec)
    if config.eval is not None:
        return hooks.eval_set_from_folder(config.eval, source.spec)
    found = hooks.eval_set_from_split(source.split, source.spec) if source.split else None
    if found is None and config.max_drop is not None:
        raise ConfigError(
            "--max-drop needs a labelled held-out set, and there is none",
            "give --eval DIR (labelled images in the task's dataset layout), or build from a "
            "RUN folder with split.json",
        )
    return found


def _calibrated(
    config: BuildConfig,
    source: ModelSource,
    eval_set: EvalSet | None,
    work: Path,
    track: Tracker,
    started: float,
) -> BuildContext:
    """Calibration set, export, export check, calibrated ranges: the build's shared context.

    The calibration set first: a bad --calib fails before a slow export.
    """
    timings: dict[str, float] = {}
    warnings = [*source.notes, *([] if eval_set is not None else [NO_EVAL_SET])]
    spec = source.spec
    with _timed(timings, "calibration_set"):
        calib = collect_calibration(
            config.calib, spec, config.calib_size, source.split, config.seed, track
        )
    warnings += calib.warnings
    with _timed(timings, "export"):
        fp32 = _fp32_model(source, config, work, track)
    with _timed(timings, "export_check"):
        check = _check_export(source, fp32, calib, config, track)
    with _timed(timings, "calibrate"):
        prep = prepare_for_quantization(fp32, work / "model.prep.onnx")
        nodes, float_default = _nodes_to_exclude(config, prep, spec)
        ranges = calibrate(
            prep, calib, spec, config.method, config.cache_dir, **_batched(config, track)
        )
    return BuildContext(
        prep=prep,
        ranges=ranges,
        calib=calib,
        spec=spec,
        eval_set=eval_set,
        evaluator=_quiet_evaluator(eval_set, spec, config),
        reference=fp32,
        targets=config.targets,
        nodes_to_exclude=nodes,
        threads=config.threads,
        batch_size=config.batch_size,
        work=work,
        track=track,
        config=config,
        source=source,
        started=started,
        check=check,
        warnings=warnings,
        timings=timings,
        float_default=float_default,
    )


def _quiet_evaluator(
    eval_set: EvalSet | None, spec: ModelSpec, config: BuildConfig
) -> Evaluator | None:
    """The re-verifications (budget search, sensitivity, deployment choice) run silently:
    there are many, and their log lines say what each found."""
    if eval_set is None:
        return None
    return functools.partial(
        build_hooks(spec).evaluate,
        eval_set=eval_set,
        spec=spec,
        threads=config.threads,
        batch_size=2 * config.batch_size,
        track=silent,
    )


def _fp32_model(source: ModelSource, config: BuildConfig, work: Path, track: Tracker) -> Path:
    out = work / FP32_FILE
    if source.model is not None:
        return export_onnx(source.model, source.spec, out, config.exporter, config.opset, track)
    return normalize_onnx(source.onnx_path, out, source.spec)  # type: ignore[arg-type]


def normalize_onnx(path: Path, out: Path, spec: ModelSpec | None = None) -> Path:
    """Copy a user's ONNX as one file, its input renamed ``input`` (a single output: the
    task's name for it, ``logits`` or a segmenter's ``classes``; a detector's ``boxes``/
    ``scores`` keep their contract names).

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
    renames = {old_in: INPUT_NAME}
    if len(model.graph.output) == 1:  # the task's one output name (logits, classes)
        single = build_hooks(spec).output_names(spec)[0] if spec is not None else OUTPUT_NAME
        renames[model.graph.output[0].name] = single
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
    return build_hooks(source.spec).check_export(
        source.model,
        fp32,
        images,
        source.spec,
        atol=config.export_atol,
        min_agreement=config.export_min_agreement,
        **_batched(config, track),
    )


def _batched(config: BuildConfig, track: Tracker) -> dict[str, Any]:
    """What every batched ONNX Runtime pass of the build takes (export check, calibration,
    the advisor)."""
    return {"threads": config.threads, "batch_size": config.batch_size, "track": track}


def _nodes_to_exclude(
    config: BuildConfig, prep: Path, spec: ModelSpec
) -> tuple[tuple[str, ...], dict[str, Any] | None]:
    """The nodes every artifact keeps in float: the task's default ones (a detector's head tail,
    or its whole head; none with ``float_head="none"``), ``nodes_to_exclude`` and every node of the
    ``exclude_op_types`` in the prepared model; and the record of the task's default."""
    default, record = (), None
    hooks = build_hooks(spec)
    mode = config.float_head or hooks.float_head
    if mode != "none":
        default, record = hooks.default_float_nodes(prep, spec, mode)
    if record is not None:
        log.info("keeping %d node(s) of the head in float (--float-head %s)", len(default), mode)
    nodes = union(default, config.nodes_to_exclude)
    if not config.exclude_op_types:
        return nodes, record
    import onnx

    graph_nodes = onnx.load(str(prep), load_external_data=False).graph.node
    present = {n.op_type for n in graph_nodes}
    missing = [t for t in config.exclude_op_types if t not in present]
    if missing:
        raise ConfigError(
            f"--exclude-op-types {', '.join(missing)}: the model has no node of that type",
            f"its op types: {', '.join(sorted(present))}",
        )
    chosen = [n.name for n in graph_nodes if n.op_type in config.exclude_op_types]
    log.info("--exclude-op-types keeps %d node(s) in float", len(chosen))
    return union(nodes, chosen), record


# -- the steps on the calibrated model, in order; each takes the build's context ---------------
def _quantize(ctx: BuildContext) -> None:
    """One INT8 artifact per target, from the same ranges."""
    targets = ctx.targets
    for name in targets:
        target = TARGETS.get(name)
        try:
            ctx.artifacts[target.artifact] = quantize_for_target(
                ctx.prep, ctx.ranges, name, ctx.work / target.file, ctx.nodes_to_exclude
            )
        except BuildError as exc:
            others = [t for t in targets if t != name]
            raise BuildError(
                f"target {name}: {exc.message}",
                f"build the other target(s) alone with --targets {','.join(others)}, or keep "
                "the offending nodes in float with --exclude-nodes NAME,… / --exclude-op-types"
                if others
                else "keep the offending nodes in float with --exclude-nodes NAME,… or "
                "--exclude-op-types TYPE,…",
            ) from None


def _evaluate(ctx: BuildContext) -> None:
    """The task's metric (top-1, mAP) of FP32 and every artifact on the held-out set (none:
    not verified)."""
    if ctx.eval_set is None:
        return
    models = {"fp32": ctx.fp32, **ctx.artifacts}
    hooks = build_hooks(ctx.spec)
    ev = hooks.evaluate(models, ctx.eval_set, ctx.spec, ctx.threads, 2 * ctx.batch_size, ctx.track)
    for name in ctx.artifacts:
        log.info(
            "%s: %s %.2f (FP32 %.2f), drop %.2f points, agreement %.2f%%",
            name,
            ev.metric,
            ev.score(name),
            ev.score("fp32"),
            ev.drop(name),
            ev.agreement(name),
        )
    if ev.skipped:
        ctx.warnings.append(f"skipped {len(ev.skipped)} unreadable evaluation image(s)")
    ctx.evaluation = ev


def _advise(ctx: BuildContext) -> None:
    """The calibration advisor: how many images the ranges needed."""
    config = ctx.config
    if not config.advise:
        return
    ctx.advice = advise_calibration_size(
        ctx.prep, ctx.calib, ctx.spec, cache_dir=config.cache_dir, **_batched(config, ctx.track)
    )
    log.info("calibration advisor: %s", ctx.advice.message())


def _accuracy(ctx: BuildContext) -> None:
    """Meet ``max_drop`` (keeping layers in float when needed) and/or analyze sensitivity."""
    config = ctx.config
    if config.max_drop is not None and config.search_float and ctx.evaluation is not None:
        _fit_budget(ctx, config.max_drop)
    if ctx.evaluation is not None:
        check_max_drop(ctx.evaluation, config.max_drop, config.min_agreement)
    if config.analyze and ctx.table is None:
        target = _worst_target(ctx)
        plain = ctx.artifacts[TARGETS.get(target).artifact]
        ctx.table = analyze_sensitivity(ctx, target, top_k=config.max_float_layers, plain=plain)


def _agreement(ctx: BuildContext) -> None:
    """Warn about every shipped INT8 artifact below --min-agreement (after the deployment
    choice, which may have re-quantized the cpu one)."""
    if ctx.evaluation is not None:
        low = low_agreement(ctx.evaluation, ctx.config.min_agreement)
        ctx.warnings += [f"low agreement: {w}" for w in low]


def _fit_budget(ctx: BuildContext, max_drop: float) -> None:
    """The fewest sensitive layers in float that meet ``max_drop``: its artifacts are shipped."""
    ctx.budget = fit_budget(
        ctx,
        max_drop,
        top_k=ctx.config.max_float_layers,
        plain_models=ctx.artifacts,
        plain=ctx.evaluation,
        latency_iterations=ctx.config.latency_iterations,
    )
    log.info("%s", ctx.budget.summary())
    ctx.table, ctx.artifacts = ctx.budget.table, ctx.budget.artifacts
    ctx.evaluation, ctx.nodes_to_exclude = ctx.budget.evaluation, ctx.budget.nodes_to_exclude


def _worst_target(ctx: BuildContext) -> str:
    """The target whose INT8 lost most of the metric (the first target when not evaluated)."""
    ev = ctx.evaluation
    if ev is None:
        return ctx.targets[0]
    return max(ctx.targets, key=lambda t: ev.drop(TARGETS.get(t).artifact))


def _deploy(ctx: BuildContext) -> None:
    """Time FP32 vs INT8 for ``cpu`` (keeping layers slower in INT8 in float if that makes it
    faster) and record each target's choice; TensorRT decides on the device."""
    for name in ctx.targets:
        artifact = TARGETS.get(name).artifact
        if name != "cpu":
            why = "timed on the device when `edgevision engine` builds it"
            ctx.deploy[name] = not_measured(name, artifact, why)
        elif not ctx.config.deploy_by_latency:
            ctx.deploy[name] = not_measured(name, artifact, "not timed (--no-deploy-by-latency)")
        else:
            ctx.deploy[name] = _deploy_cpu(ctx)
        log.info("deploy %s: %s", name, ctx.deploy[name].why)


def _deploy_cpu(ctx: BuildContext) -> Deployment:
    artifact = TARGETS.get("cpu").artifact
    inputs = DeployInputs(
        fp32=ctx.fp32,
        int8=ctx.artifacts[artifact],
        shape=ctx.spec.input_shape(1),
        requantize=functools.partial(_requantize_cpu, ctx),
        work=ctx.work / "deploy",
        max_batch=ctx.config.deploy_max_batch,
        threads=1,  # the vehicle's runner: one thread on a pinned CPU; two oversubscribe here
        iterations=ctx.config.deploy_iterations,
        already_float=ctx.nodes_to_exclude,
    )
    decision, model = choose_cpu(inputs)
    if model != ctx.artifacts[artifact]:
        _ship_cpu(ctx, model, decision.float_nodes)
    if ctx.evaluation is not None and decision.artifact != "fp32":
        ev = ctx.evaluation
        decision.why += (
            f"; drop {ev.drop(artifact):.2f} points, agreement {ev.agreement(artifact):.2f}%"
        )
    return decision


def _requantize_cpu(ctx: BuildContext, nodes: Sequence[str], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return ctx.quantize("cpu", folder / TARGETS.get("cpu").file, nodes)


def _ship_cpu(ctx: BuildContext, model: Path, float_nodes: Sequence[str]) -> None:
    """Ship ``model`` (INT8 with ``float_nodes`` in float for speed), verified again. The
    nodes are the cpu artifact's alone (its deployment record lists them): the other targets'
    graphs keep them quantized, so ``ctx.nodes_to_exclude`` (every artifact's) stays as it is."""
    ctx.artifacts[TARGETS.get("cpu").artifact] = model
    if ctx.eval_set is not None:
        ctx.evaluation = ctx.evaluate({"fp32": ctx.fp32, **ctx.artifacts})
        check_max_drop(ctx.evaluation, ctx.config.max_drop, ctx.config.min_agreement)


STEPS: tuple[tuple[str, Callable[[BuildContext], None]], ...] = (
    ("quantize", _quantize),
    ("evaluate", _evaluate),
    ("calibration_advice", _advise),
    ("accuracy_budget", _accuracy),
    ("deploy_choice", _deploy),
    ("agreement", _agreement),
)


# -- the report and the bundle ----------------------------------------------------------------
def _finish(ctx: BuildContext) -> BuildResult:
    elapsed = time.perf_counter() - ctx.started
    report = _report(ctx, elapsed)
    manifest = _write(ctx, report)
    return BuildResult(
        out=ctx.config.out,
        manifest=manifest,
        report=report,
        calibration=ctx.calib,
        ranges=ctx.ranges,
        export_check=ctx.check,
        evaluation=ctx.evaluation,
        warnings=ctx.warnings,
        build_time_s=elapsed,
        advice=ctx.advice,
        budget=ctx.budget,
        sensitivity=ctx.table,
    )


def versions() -> dict[str, str | None]:
    """Versions of the libraries a bundle was built with."""
    out: dict[str, str | None] = {}
    for dist in ("edgevision", "torch", "onnx", "onnxruntime", "timm"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _calibration_record(ctx: BuildContext) -> dict[str, Any]:
    return {
        "file": CALIBRATION_FILE,
        "method": ctx.config.method,
        "size": len(ctx.calib),
        "manifest_sha256": ctx.calib.manifest_sha256,
        "source": ctx.calib.source,
        "skipped": len(ctx.calib.skipped),
        "ranges_from_cache": ctx.ranges.from_cache,
        "cache_key": ctx.ranges.key,
    }


def _report(ctx: BuildContext, elapsed: float) -> dict[str, Any]:
    return {
        "source": ctx.source.record(),
        "export_check": ctx.check.to_dict() if ctx.check else None,
        "calibration": _calibration_record(ctx) | {"stats": ctx.calib.stats},
        "accuracy": ctx.evaluation.summary() if ctx.evaluation else None,
        "targets": list(ctx.targets),
        "nodes_to_exclude": list(ctx.nodes_to_exclude),
        "float_default": ctx.float_default,
        "calibration_advice": ctx.advice.to_dict() if ctx.advice else None,
        "accuracy_budget": ctx.budget.to_dict() if ctx.budget else None,
        "deploy": {name: d.to_dict() for name, d in ctx.deploy.items()},
        "sensitivity": _sensitivity_record(ctx),
        "build_time_s": round(elapsed, 2),
        "timings_s": {k: round(v, 2) for k, v in ctx.timings.items()},
        "warnings": ctx.warnings,
        "versions": versions(),
    }


def _write(ctx: BuildContext, report: dict[str, Any]) -> dict[str, Any]:
    """Write the bundle atomically; its manifest, as written."""
    files, artifacts = _bundle_files(ctx, report)
    check_out(ctx.config.out, ctx.config.force)  # again: the folder may have changed meanwhile
    _, manifest = write_bundle_manifest(
        ctx.config.out,
        files,
        ctx.spec,
        artifacts,
        build=_build_record(ctx, report),
        calibration=_calibration_record(ctx),
        deploy=report["deploy"],
        accuracy=report["accuracy"],
        accuracy_budget=_budget_record(ctx),
        versions=report["versions"],
        report={
            "json": "report.json",
            "markdown": "report.md",
            "plot": build_hooks(ctx.spec).plot_file if ctx.evaluation else None,
            "sensitivity": report["sensitivity"],
        },
    )
    return manifest


def _bundle_files(
    ctx: BuildContext, report: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The bundle's files (name → path or bytes) and its artifacts' manifest entries."""
    files: dict[str, Any] = {FP32_FILE: ctx.fp32}
    artifacts: dict[str, dict[str, Any]] = {
        "fp32": {"file": FP32_FILE, "precision": "fp32", "target": "any"}
    }
    method = ctx.config.method
    for name in ctx.targets:
        target = TARGETS.get(name)
        files[target.file] = ctx.artifacts[target.artifact]
        artifacts[target.artifact] = target.record() | {"calibration_method": method}
        deployed = ctx.deploy.get(name)
        nodes = union(ctx.nodes_to_exclude, deployed.float_nodes if deployed else ())
        if nodes:  # every artifact's float nodes, plus those this target keeps for speed
            artifacts[target.artifact]["float_nodes"] = list(nodes)
    calib_doc = ctx.calib.manifest() | {"method": method}
    files[CALIBRATION_FILE] = (json.dumps(calib_doc, indent=2) + "\n").encode()
    return files | _report_files(ctx, report), artifacts


def _report_files(ctx: BuildContext, report: dict[str, Any]) -> dict[str, Path]:
    """report.json/.md, the per-class plot and the sensitivity table, written under work."""
    reports = ctx.work / "report"
    reports.mkdir()
    hooks = build_hooks(ctx.spec)
    if report.get("export_check"):
        report["export_check"]["text"] = hooks.describe_check(report["export_check"])
    accuracy_md = hooks.markdown(ctx.evaluation) if ctx.evaluation is not None else None
    files = write_report(report, reports, accuracy_md)
    extra = _extra_markdown(ctx, report)
    if extra:
        md = files["report.md"]
        files["report.md"] = atomic_write_text(md, Path(md).read_text(encoding="utf-8") + extra)
    if ctx.table is not None:
        files |= ctx.table.write(reports)
    if ctx.evaluation is not None:
        files |= hooks.report_files(ctx.evaluation, reports)
    return files


def _build_record(ctx: BuildContext, report: dict[str, Any]) -> dict[str, Any]:
    """The manifest's ``build``: how the FP32 model was made, and with what."""
    import onnx

    opsets = onnx.load(str(ctx.fp32)).opset_import
    return {
        "time_s": report["build_time_s"],
        "exporter": ctx.config.exporter if ctx.source.model is not None else None,
        "opset": next(o.version for o in opsets if o.domain in ("", "ai.onnx")),
        "source": report["source"],
        "export_check": report["export_check"],
        "threads": ctx.config.threads,
    }


def _sensitivity_record(ctx: BuildContext) -> dict[str, Any] | None:
    if ctx.table is None:
        return None
    return dict(SENSITIVITY_FILES) | {"target": ctx.table.target, "layers": len(ctx.table.rows)}


def _budget_record(ctx: BuildContext) -> dict[str, Any] | None:
    if ctx.budget is None:
        return None
    b = ctx.budget
    return {
        "max_drop": b.max_drop,
        "met": b.met,
        "float_layers": [r.layer for r in b.layers],
        "float_nodes": list(b.nodes_to_exclude),
        "drop_before": {k: round(v, 3) for k, v in b.before.drops.items()},
        "drop_after": {k: round(v, 3) for k, v in b.after.drops.items()},
        "latency_ms": b.latency["median_ms"] if b.latency else None,
    }


def _extra_markdown(ctx: BuildContext, report: dict[str, Any]) -> str:
    """report.md sections for the calibration advisor, the budget and the sensitivity table."""
    text = ""
    if ctx.float_default is not None:
        fd = ctx.float_default
        finals = ", ".join(f"`{n}`" for n in fd.get("final_layers", []))
        what = (
            f"the {fd.get('after', 0)} after the final layers ({finals})"
            if fd.get("mode") == "tail"
            else f"{finals} and {fd.get('after', 0)} after them"
        )
        text += (
            f"\n## Kept in float by default\n\n{len(fd['nodes'])} node(s): {what}. "
            f"Why: {fd['why']}.\n"
        )
    if ctx.advice is not None:
        text += f"\n## Calibration advisor\n\n{ctx.advice.message()}.\n"
    if report["accuracy_budget"]:
        text += budget_markdown(report["accuracy_budget"])
    if ctx.table is not None:
        text += (
            f"\n## Sensitivity\n\n{len(ctx.table.rows)} quantized layers ranked in "
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
