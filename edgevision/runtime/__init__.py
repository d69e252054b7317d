"""The torch-free in-vehicle runtime: sources, pipeline, postprocess, sinks.

Public API (stable; the profiler's pipeline mode builds on it)::

    Pipeline(bundle, source, sinks=[...], backend="auto", threads=0, topk=3, threshold=0.0,
             smooth=1, realtime=False, max_frames=None, reconnect=Reconnect(), ...)
        .run() -> RunSummary          # or: for result in Pipeline(...): ...  (Result)
    open_source(uri, **options) -> Source       SOURCES (registry by scheme)
    make_sink(name, *args, **options) -> Sink   SINKS ("jsonl", "video", "window", "stdout")
"""

from edgevision.runtime.capture import Reconnect
from edgevision.runtime.frame import Result
from edgevision.runtime.pipeline import Pipeline
from edgevision.runtime.postprocess import UNKNOWN, Classifier, Prediction, softmax
from edgevision.runtime.sinks import SINKS, Sink, StreamInfo, make_sink
from edgevision.runtime.sources import (
    SOURCES,
    CorruptFrame,
    EndOfSource,
    Source,
    SourceLostError,
    make_source,
    open_source,
)
from edgevision.runtime.summary import STAGES, RunSummary, percentiles

__all__ = [
    "SINKS",
    "SOURCES",
    "STAGES",
    "UNKNOWN",
    "Classifier",
    "CorruptFrame",
    "EndOfSource",
    "Pipeline",
    "Prediction",
    "Reconnect",
    "Result",
    "RunSummary",
    "Sink",
    "Source",
    "SourceLostError",
    "StreamInfo",
    "make_sink",
    "make_source",
    "open_source",
    "percentiles",
    "softmax",
]
