"""Build: export → calibrate → quantize → verify → bundle, each a small callable.

``build_bundle(BuildConfig(...))`` composes the steps; the steps are public for callers that
need to run them separately (the demo, the accuracy-budget search: `analyze_sensitivity`,
`fit_budget`, `advise_calibration_size`); the steps after calibration take a `Job` (the
calibrated model and what they share). torch, onnx and
onnxruntime.quantization are imported inside the functions that need them.
"""

from edgevision.compile.advise import CalibrationAdvice, advise_calibration_size
from edgevision.compile.budget import BudgetResult, fit_budget
from edgevision.compile.calibrate import METHODS, CalibrationRanges, calibrate
from edgevision.compile.calibration import CalibrationSet, collect_calibration, write_manifest
from edgevision.compile.context import Job
from edgevision.compile.evaluate import (
    EvalSet,
    Evaluation,
    check_max_drop,
    eval_set_from_folder,
    eval_set_from_split,
    evaluate,
)
from edgevision.compile.export import EXPORTERS, ExportCheck, check_export, export_onnx
from edgevision.compile.pipeline import BuildConfig, BuildResult, build_bundle
from edgevision.compile.quantize import TARGETS, prepare_for_quantization, quantize_for_target
from edgevision.compile.sensitivity import LayerSensitivity, SensitivityTable, analyze_sensitivity
from edgevision.compile.source import ModelSource, load_source
from edgevision.compile.trt_check import check_tensorrt_qdq

__all__ = [
    "EXPORTERS",
    "METHODS",
    "TARGETS",
    "BudgetResult",
    "BuildConfig",
    "BuildResult",
    "CalibrationAdvice",
    "CalibrationRanges",
    "CalibrationSet",
    "EvalSet",
    "Evaluation",
    "ExportCheck",
    "Job",
    "LayerSensitivity",
    "ModelSource",
    "SensitivityTable",
    "advise_calibration_size",
    "analyze_sensitivity",
    "build_bundle",
    "calibrate",
    "check_export",
    "check_max_drop",
    "check_tensorrt_qdq",
    "collect_calibration",
    "eval_set_from_folder",
    "eval_set_from_split",
    "evaluate",
    "export_onnx",
    "fit_budget",
    "load_source",
    "prepare_for_quantization",
    "quantize_for_target",
    "write_manifest",
]
