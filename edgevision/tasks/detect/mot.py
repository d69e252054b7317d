"""Tracking scores against a clip's ground truth: CLEAR MOT (MOTA) and IDF1 via py-motmetrics.

The runtime writes every frame's objects (``edgevision run --events-mode frames``: ``frame``,
``objects`` [{box, label, score, track}]); the synthetic dash-cam's ground truth gives every
sign an identity per frame (`edgevision.data.video`, ``objects`` [{id, label, box}]). Per frame,
ground truth and confirmed tracks are matched by IoU >= ``iou`` (distance 1 - IoU) in a
``motmetrics.MOTAccumulator``; MOTA, IDF1, switches, misses and false positives come from its
metrics. Signs smaller than ``min_height`` pixels (far away: a few pixels, below what the
detector is trained to find) are "don't care": they are neither misses nor is a track on them a
false positive. ``signs_one_track`` counts the signs whose matches all went to one track id.

motmetrics is in the ``[train]`` extra (not the runtime). Its ``distances.iou_matrix`` uses
``np.asfarray`` (gone in NumPy 2), so the IoU matrix here is `metrics.box_iou`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edgevision.errors import DataError, DependencyError
from edgevision.tasks.detect.metrics import box_iou

MIN_HEIGHT = 12.0  # px: the dataset's farthest signs are ~11 px tall


def read_frames(path: str | os.PathLike[str]) -> dict[int, list[dict[str, Any]]]:
    """``frame index → objects`` from a per-frame JSON Lines file (``--events-mode frames``)."""
    frames: dict[int, list[dict[str, Any]]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            event = json.loads(line)
            if "frame" in event and "objects" in event:
                frames[int(event["frame"])] = event["objects"]
    if not frames:
        raise DataError(
            f"{path} has no per-frame objects",
            "write it from a detection bundle with `edgevision run --events-mode frames`",
        )
    return frames


def tracking_scores(
    frames: Mapping[int, list[dict[str, Any]]],
    truth: Mapping[str, Any],
    iou: float = 0.5,
    min_height: float = MIN_HEIGHT,
) -> dict[str, Any]:
    """MOTA, IDF1 and the one-track-per-sign share of ``frames`` against the clip's ``truth``
    (`edgevision.data.video.read_truth`). Frames the run did not process are skipped."""
    try:
        import motmetrics as mm
    except ImportError as exc:
        raise DependencyError(
            f"tracking scores need py-motmetrics, which cannot be imported ({exc})",
            "pip install 'edgevision[train]'",
        ) from None
    acc = mm.MOTAccumulator(auto_id=False)
    labels_right = labels_total = 0
    signs: set[int] = set()
    for entry in truth["frames"]:
        index = int(entry["index"])
        if index not in frames:
            continue
        gt = [o for o in entry.get("objects", [])]
        care = [o for o in gt if o["box"][3] - o["box"][1] >= min_height]
        small = [o for o in gt if o["box"][3] - o["box"][1] < min_height]
        hyp = [o for o in frames[index] if o.get("track") is not None]
        hyp = _outside(hyp, small, iou)  # a track on a don't-care sign is not a false positive
        signs.update(int(o["id"]) for o in care)
        dist = _distances(care, hyp, iou)
        acc.update(
            [int(o["id"]) for o in care], [int(o["track"]) for o in hyp], dist, frameid=index
        )
        for i, j in zip(*np.nonzero(~np.isnan(dist)), strict=True):
            labels_total += 1
            labels_right += care[i]["label"] == hyp[j]["label"]
    names = ["mota", "motp", "idf1", "num_switches", "num_false_positives", "num_misses"]
    names += ["num_objects", "mostly_tracked", "num_unique_objects"]
    summary = mm.metrics.create().compute(acc, metrics=names, name="run").iloc[0]
    events = acc.mot_events
    matched = events[events["Type"].isin(["MATCH", "SWITCH"])]
    per_sign = matched.groupby("OId")["HId"].nunique()
    one = int((per_sign == 1).sum())
    return {
        "mota": float(summary["mota"]),
        "idf1": float(summary["idf1"]),
        "motp_iou": None if np.isnan(summary["motp"]) else float(1 - summary["motp"]),
        "switches": int(summary["num_switches"]),
        "false_positives": int(summary["num_false_positives"]),
        "misses": int(summary["num_misses"]),
        "objects": int(summary["num_objects"]),
        "signs": len(signs),
        "signs_found": int(len(per_sign)),
        "signs_one_track": one,
        "one_track_fraction": one / len(signs) if signs else 0.0,
        "mostly_tracked": int(summary["mostly_tracked"]),
        "label_accuracy": labels_right / labels_total if labels_total else None,
        "iou": iou,
        "min_height": min_height,
    }


def _boxes(objects: Iterable[dict[str, Any]]) -> np.ndarray:
    return np.asarray([o["box"] for o in objects], dtype=np.float64).reshape(-1, 4)


def _distances(gt: list[dict], hyp: list[dict], iou: float) -> np.ndarray:
    """1 - IoU, NaN (no match allowed) below ``iou``: motmetrics' distance convention."""
    if not gt or not hyp:
        return np.full((len(gt), len(hyp)), np.nan)
    overlap = box_iou(_boxes(gt), _boxes(hyp))
    return np.where(overlap >= iou, 1.0 - overlap, np.nan)


def _outside(hyp: list[dict], ignored: list[dict], iou: float) -> list[dict]:
    if not hyp or not ignored:
        return hyp
    overlap = box_iou(_boxes(hyp), _boxes(ignored))
    return [h for h, row in zip(hyp, overlap, strict=True) if row.max() < iou]


def score_run(
    frames_path: str | os.PathLike[str], clip: str | os.PathLike[str], **options: Any
) -> dict[str, Any]:
    """`tracking_scores` of a per-frame events file against the clip's ``<clip>.json``."""
    from edgevision.data.video import read_truth

    return tracking_scores(read_frames(Path(frames_path)), read_truth(clip), **options)
