"""Classification's build hooks: one ``logits`` output, top-1 on an ImageFolder, no float layers.

The implementations are the build's original ones (edgevision/compile: `evaluate`,
`check_export`, `plot_per_class`, `onnx_io`); this table only points the generic steps at them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgevision.tasks.building import BuildHooks


class ClassificationBuild(BuildHooks):
    """Hooks for ``task == "classification"``."""

    task = "classification"
    plot_file = "accuracy_per_class.png"
    split_class = "edgevision.data.split:Split"
    eval_sets = "edgevision.compile.evaluate"
    evaluator = "edgevision.compile.evaluate:evaluate"
    # Percentile (99.999) ranges with the default weight rounding: on the ImageNet Lite0 and
    # 1,000 held-out real-photo crops, agreement with FP32 94.8 / 93.6 % (cpu / trt) against
    # minmax's 93.1 / 92.9 (a second crop set: 94.3 / 92.9 against 93.3 / 92.0;
    # tools/bench_fidelity.py). On the synthetic signs (the demo) percentile: >= 99.5 % on an
    # independent 1,040-image set; minmax 99.6 % cpu there but 98.97 % on the 195-image test
    # split (2 images).
    calibration_method = "percentile"

    def output_names(self, spec: Any) -> tuple[str, ...]:
        from edgevision.compile.export import OUTPUT_NAME

        return (OUTPUT_NAME,)

    def export_module(self, model: Any, spec: Any) -> Any:
        return model

    def read_onnx(self, path: Path, spec_path: str | os.PathLike[str]) -> tuple[Any, tuple, list]:
        from edgevision.compile.source import check_input_shape, dynamic_dims_note, onnx_io
        from edgevision.spec import ModelSpec

        outputs, shape = onnx_io(path)
        spec = ModelSpec.load(spec_path, num_outputs=outputs)
        check_input_shape(path, shape, spec)
        return spec, shape, dynamic_dims_note(path, shape, spec)

    def check_export(
        self, model: Any, onnx_path: Path, images: Any, spec: Any, **options: Any
    ) -> Any:
        from edgevision.compile.export import check_export

        return check_export(model, onnx_path, images, **options)

    def plot(self, evaluation: Any, out: Path) -> Path:
        from edgevision.compile.report import plot_per_class

        return plot_per_class(evaluation, out)

    def describe_check(self, check: dict[str, Any]) -> str:
        return (
            f"max abs diff {check['max_abs_diff']:.3g}, top-1 agreement "
            f"{100 * check['top1_agreement']:.2f}% on {check['images']} images"
        )


BUILD = ClassificationBuild()

__all__ = ["BUILD", "ClassificationBuild"]
