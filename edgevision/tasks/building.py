"""The hooks a task gives `edgevision build` (export → calibrate → quantize → verify → bundle).

The build's steps (edgevision/compile) are generic: they quantize whatever graph they are
given, search layers by SQNR and measure accuracy through an evaluation object with one
interface (``metric``, ``score``, ``drop``, ``agreement``, ``per_class``, ``summary``). What
differs per task sits here: the graph's output names and the module exported, the contract a
user's ONNX must follow, the split and evaluation set, the metric, the export check, the
layers kept in float by default and the report's plot. Each task registers one instance as
``BUILD`` in ``edgevision.tasks.<task>.build``; `Task.building()` imports it. Torch is
imported only inside `export_module`/`check_export` (a checkpoint's build needs it anyway).

Reading a user's ONNX, loading the split, the evaluation sets, the evaluation and the float
head have defaults here, driven by ``"module:attribute"`` references the task sets
(`contract`, `split_class`, `eval_sets`, `evaluator`) and its `float_head_why`, imported on
first use; a task whose step differs overrides the method instead.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _load(ref: str, what: str) -> Any:
    """Import a ``"module:attribute"`` reference; an unset one is a method left to override."""
    if not ref:
        raise NotImplementedError(f"the task's build hooks set no {what}")
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


class BuildHooks:
    """Base hooks; a task overrides every method that raises `NotImplementedError` (the
    defaults below raise it while the reference they read is unset)."""

    task: str = ""
    plot_file: str = ""  # the report's per-class PNG, in the bundle
    min_agreement: float = 99.0  # the default --min-agreement (%), in the metric's agreement
    float_head: str = "none"  # the default --float-head: "head", "tail" or "none"
    # the default --method (calibration), as measured for the task (`edgevision.compile.calibrate`)
    calibration_method: str = "minmax"
    # "module:function" checking a user's ONNX against the contract: (path, spec) -> an IO
    # record with ``input_shape`` and ``notes``
    contract: str = ""
    split_class: str = ""  # "module:class" of the split a training run saves (``.load(path)``)
    # the module with ``eval_set_from_split(split, spec)`` and ``eval_set_from_folder(root, spec)``
    eval_sets: str = ""
    # "module:function" (models, eval_set, spec, threads, batch_size, track) -> an evaluation
    evaluator: str = ""
    # --float-head mode ("head", "tail") -> why those nodes stay in float (the report's
    # record); None: nothing is kept in float by default
    float_head_why: Mapping[str, str] | None = None

    def output_names(self, spec: Any) -> tuple[str, ...]:
        """The ONNX graph's output names, in order."""
        raise NotImplementedError

    def export_module(self, model: Any, spec: Any) -> Any:
        """The torch module whose forward() is the deployed graph (``model`` in eval mode)."""
        raise NotImplementedError

    def read_onnx(self, path: Path, spec_path: str | os.PathLike[str]) -> tuple[Any, tuple, list]:
        """A user's ONNX checked against this task's contract: ``(spec, input shape, notes)``."""
        from edgevision.compile.source import check_input_shape, dynamic_dims_note
        from edgevision.spec import ModelSpec

        spec = ModelSpec.load(spec_path)
        io = _load(self.contract, "contract")(path, spec)
        check_input_shape(path, io.input_shape, spec)
        return spec, io.input_shape, [*io.notes, *dynamic_dims_note(path, io.input_shape, spec)]

    def load_split(self, path: Path) -> Any:
        """The split a training run saved (``RUN/split.json``)."""
        return _load(self.split_class, "split_class").load(path)

    def eval_set_from_split(self, split: Any, spec: Any) -> Any | None:
        """The split's held-out images with their labels (None when it has none)."""
        return _load(f"{self.eval_sets}:eval_set_from_split", "eval_sets")(split, spec)

    def eval_set_from_folder(self, root: Path, spec: Any) -> Any:
        """``--eval DIR``: a labelled folder in this task's dataset layout."""
        return _load(f"{self.eval_sets}:eval_set_from_folder", "eval_sets")(root, spec)

    def evaluate(
        self,
        models: Mapping[str, Path],
        eval_set: Any,
        spec: Any,
        threads: int = 0,
        batch_size: int = 32,
        track: Any = None,
    ) -> Any:
        """Every model in ``models`` (name → ONNX) on ``eval_set``: an evaluation object.

        ``track`` is a progress `Tracker` (None: silent).
        """
        from edgevision.compile.progress import silent

        run = _load(self.evaluator, "evaluator")
        return run(models, eval_set, spec, threads, batch_size, track or silent)

    def check_export(
        self, model: Any, onnx_path: Path, images: Any, spec: Any, **options: Any
    ) -> Any:
        """PyTorch vs ONNX Runtime on preprocessed ``images``; raises `BuildError` on a gap."""
        raise NotImplementedError

    def default_float_nodes(
        self, prep: Path, spec: Any, mode: str = "head"
    ) -> tuple[tuple[str, ...], dict | None]:
        """Nodes every INT8 artifact keeps in float by default, and why (for the report);
        ``mode`` is `BuildConfig.float_head` ("head" or "tail"; the task's `float_head` when
        not given). With `float_head_why` set: the head walked back from the graph's outputs
        (`edgevision.tasks.onnx_head.head_in_float`); else none."""
        if self.float_head_why is None:
            return (), None
        from edgevision.tasks.onnx_head import head_in_float

        return head_in_float(prep, self.output_names(spec), mode, self.float_head_why)

    def class_axis(self, spec: Any) -> tuple[str, int] | None:
        """The exported graph's (output, axis) whose size is the class count, checked after
        export (None: no axis holds it, e.g. a class map)."""
        return self.output_names(spec)[-1], -1

    def plot(self, evaluation: Any, out: Path) -> Path:
        """The report's per-class PNG of FP32 vs every INT8 artifact."""
        raise NotImplementedError

    def report_files(self, evaluation: Any, folder: Path) -> dict[str, Path]:
        """Every report figure the bundle carries (bundle name → path written in ``folder``):
        by default the per-class plot alone."""
        return {self.plot_file: self.plot(evaluation, Path(folder) / self.plot_file)}

    def markdown(self, evaluation: Any) -> str | None:
        """A report.md section of the task's own figures (None: the generic table only)."""
        return None

    def describe_check(self, check: dict[str, Any]) -> str:
        """One line of report.md for the export check's record."""
        raise NotImplementedError


__all__ = ["BuildHooks"]
