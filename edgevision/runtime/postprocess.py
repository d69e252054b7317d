"""Classification postprocess: softmax, temporal smoothing, top-k, score threshold.

Smoothing averages the class probabilities of the last N frames, so one odd frame does not make
the label flicker; a smoothed top score under the threshold is the "unknown" outcome.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgevision.errors import ConfigError

UNKNOWN = "unknown"
OUTPUT_KINDS = ("auto", "logits", "probabilities")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis (float64 for exact sums)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def looks_like_probabilities(values: np.ndarray, tol: float = 1e-3) -> bool:
    """True when ``values`` is already a distribution (a model that ends in softmax)."""
    v = np.asarray(values, dtype=np.float64)
    return bool(v.min() >= 0.0 and abs(v.sum() - 1.0) <= tol)


@dataclass(frozen=True)
class Prediction:
    """One frame's smoothed outcome."""

    label: str
    score: float
    topk: list[tuple[str, float]]
    known: bool
    probabilities: np.ndarray


class Classifier:
    """Turn a classifier's output vector into a `Prediction`, smoothing over ``smooth`` frames.

    ``outputs`` says what the model emits: ``logits`` (softmax is applied), ``probabilities``,
    or ``auto`` (probabilities if the vector already sums to 1 and is non-negative).
    """

    def __init__(
        self,
        labels: Sequence[str],
        topk: int = 3,
        threshold: float = 0.0,
        smooth: int = 1,
        outputs: str = "auto",
    ) -> None:
        self.labels = tuple(labels)
        _check(topk >= 1, f"topk {topk}", "use --topk 1 or more")
        _check(0.0 <= threshold <= 1.0, f"threshold {threshold}", "use a probability in [0, 1]")
        _check(smooth >= 1, f"smooth {smooth}", "use --smooth 1 (off) or more frames")
        _check(outputs in OUTPUT_KINDS, f"outputs {outputs!r}", f"use {', '.join(OUTPUT_KINDS)}")
        self.topk = min(int(topk), len(self.labels))
        self.threshold = float(threshold)
        self.smooth = int(smooth)
        self.outputs = outputs
        self._window: collections.deque[np.ndarray] = collections.deque(maxlen=self.smooth)

    def reset(self) -> None:
        """Forget the smoothing window (after a reconnect the scene is new)."""
        self._window.clear()

    def probabilities(self, output: np.ndarray) -> np.ndarray:
        """The class probabilities of one output (shape (C,) or (1, C))."""
        vector = np.asarray(output).reshape(-1)
        if vector.size != len(self.labels):
            raise ConfigError(
                f"the model output has {vector.size} values but the bundle has "
                f"{len(self.labels)} labels",
                "rebuild the bundle: its spec and model disagree",
            )
        if self.outputs == "probabilities" or (
            self.outputs == "auto" and looks_like_probabilities(vector)
        ):
            return vector.astype(np.float64)
        return softmax(vector)

    def __call__(self, output: np.ndarray) -> Prediction:
        """Add one frame's output to the window and return the smoothed prediction."""
        self._window.append(self.probabilities(output))
        mean = np.mean(self._window, axis=0)
        order = np.argsort(-mean, kind="stable")[: self.topk]
        topk = [(self.labels[i], float(mean[i])) for i in order]
        best, score = topk[0]
        known = score >= self.threshold
        return Prediction(best if known else UNKNOWN, score, topk, known, mean)


def _check(ok: bool, what: str, fix: str) -> None:
    if not ok:
        raise ConfigError(f"postprocess {what} is out of range", fix)
