"""Multi-object tracking for the runtime: ByteTrack-style association on capture timestamps.

The runtime's detector gives one `Detections` per frame and the capture time of that frame (a
monotonic float in seconds). `Tracker.update` turns them into tracks with stable ids and into
events: a track *appears* once it has been matched ``min_hits`` times and *leaves* once it has
gone unmatched for more than ``max_age_s`` of capture time (or at `Tracker.flush`, the end of
the stream). `track_event` writes an event as a JSON-ready dict.

Time, not frames. The live source keeps only the newest frame, so frames are dropped whenever
inference is slower than the camera. Everything here is in capture seconds: velocities are per
second, a prediction is made over ``dt = t - last_seen`` (a dropped frame is only a larger
``dt``), and ages are compared with ``max_age_s``. Nothing counts frames except ``hits``.

Motion: one constant-velocity model per track on the box centre and size ``(cx, cy, w, h)``,
estimated with an alpha-beta (g-h) filter. On a match with measurement ``z`` at ``dt`` after
the last one::

    pred = state + velocity * dt;  r = z - pred
    state = pred + g * r;          velocity += h * r / dt

The gains start at the least-squares ("expanding memory") values for the n-th measurement,
``g = 2(2n - 1) / (n(n + 1))`` and ``h = 6 / (n(n + 1))`` -- so the 2nd measurement sets the
velocity to the exact two-point difference -- and decay to the steady-state floors
``position_gain`` and ``velocity_gain`` (defaults 0.6 and 0.25, near the Benedict-Bordner
relation ``h = g^2 / (2 - g)``). A fresh track has zero velocity. Predicted (and filtered)
widths and heights are clamped to at least 1 px. Chosen over a Kalman filter for being a few
lines of numpy with no covariance to tune; for a constant velocity it has no steady-state lag.

Association (per frame, deterministic):

1. Tracks that have gone unmatched for more than ``max_age_s`` are removed first (confirmed ones
   *leave*), so an expired track is never revived.
2. Round 1: detections with ``score >= high_threshold`` against every live track (confirmed and
   tentative), on the IoU between the track's box predicted to ``t`` and the detection, kept at
   ``IoU >= match_iou``.
3. Round 2 (ByteTrack): detections with ``low_threshold <= score < high_threshold`` against the
   *confirmed* tracks still unmatched, kept at ``IoU >= low_match_iou``. Low-score detections
   only extend tracks: they never start one, and never confirm a tentative one (a flicker
   followed by noise is not an object).
4. Unmatched high detections with ``score >= new_track_threshold`` start tentative tracks.
5. A tentative track that is not matched on an update is dropped silently (ByteTrack); a
   confirmed one coasts on its prediction until ``max_age_s`` passes.

Each round is a greedy assignment by descending IoU, ties broken by the older track and then by
the lower detection index. No Hungarian algorithm: SciPy is not part of the Jetson runtime, and
with IoU gating and at most ~100 detections a frame the greedy pairs almost always equal the
optimal ones (conflicts need two tracks that overlap the same two detections). With
``class_aware`` a track only matches detections of its voted label.

Ids: 1, 2, 3, ... in order of confirmation. Tentative tracks have ``id`` None, so ids have no
gaps. A track's label is a vote: the label with the highest summed score over its matched
detections (ties: the lower index).

numpy and the standard library only (no torch, no SciPy): the runtime imports this.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgevision.errors import ConfigError, DataError
from edgevision.tasks.detect.metrics import (
    Detections,
    _check_boxes,
    _check_labels,
    _check_scores,
    box_iou,
)

EVENT_KINDS = ("appeared", "left")
MIN_SIZE = 1.0  # px: predicted and filtered widths/heights never go below this
_MIN_DT = 1e-6  # s: below this two measurements are simultaneous and no velocity is estimated


# -- configuration --------------------------------------------------------------------------
@dataclass(frozen=True)
class TrackerConfig:
    """Thresholds of the two association rounds, track life cycle and the motion filter's gains.

    ``high_threshold``: detections at or above it go to round 1 (any live track).
    ``low_threshold``: detections in ``[low, high)`` go to round 2 (confirmed tracks only).
    0.2, not ByteTrack's 0.1: edgevision's detector scores are the geometric mean of the class
    and quality probabilities, and at 0.1 the demo detector passes ~90 background boxes a frame
    to NMS (1.2 ms per frame) where 0.2 passes ~7 (0.09 ms).
    ``new_track_threshold``: an unmatched high detection starts a track only at or above it.
    ``match_iou`` / ``low_match_iou``: minimum IoU between a predicted track box and a detection
    in round 1 / round 2. ``min_hits``: matches before a track is confirmed (``appeared``).
    ``max_age_s``: capture seconds a track may go unmatched before it is removed (``left``).
    ``class_aware``: only match detections of the track's label. ``position_gain`` /
    ``velocity_gain``: the alpha-beta filter's steady-state gains (g, h).
    """

    high_threshold: float = 0.5
    low_threshold: float = 0.2
    new_track_threshold: float = 0.6
    match_iou: float = 0.3
    low_match_iou: float = 0.5
    min_hits: int = 2
    max_age_s: float = 1.0
    class_aware: bool = False
    position_gain: float = 0.6
    velocity_gain: float = 0.25

    def __post_init__(self) -> None:
        # Written as `not (ok)` so that NaN fails every check.
        _require(
            _is_real(self.high_threshold) and 0.0 < self.high_threshold <= 1.0,
            "high_threshold",
            self.high_threshold,
            "use a score in (0, 1], e.g. high_threshold=0.5",
        )
        _require(
            _is_real(self.low_threshold) and 0.0 <= self.low_threshold <= self.high_threshold,
            "low_threshold",
            self.low_threshold,
            f"use a score in [0, high_threshold={self.high_threshold}], e.g. low_threshold=0.2 "
            "(equal to high_threshold turns the low-score round off)",
        )
        _require(
            _is_real(self.new_track_threshold)
            and self.high_threshold <= self.new_track_threshold <= 1.0,
            "new_track_threshold",
            self.new_track_threshold,
            f"use a score in [high_threshold={self.high_threshold}, 1], "
            "e.g. new_track_threshold=0.6",
        )
        for name, default in (("match_iou", 0.3), ("low_match_iou", 0.5)):
            value = getattr(self, name)
            _require(
                _is_real(value) and 0.0 < value <= 1.0,
                name,
                value,
                f"use an IoU in (0, 1], e.g. {name}={default}",
            )
        _require(
            isinstance(self.min_hits, (int, np.integer))
            and not isinstance(self.min_hits, bool)
            and self.min_hits >= 1,
            "min_hits",
            self.min_hits,
            "use a whole number of detections >= 1, e.g. min_hits=2",
        )
        _require(
            _is_real(self.max_age_s) and 0.0 <= self.max_age_s < math.inf,
            "max_age_s",
            self.max_age_s,
            "use a finite number of seconds >= 0, e.g. max_age_s=1.0",
        )
        _require(
            isinstance(self.class_aware, (bool, np.bool_)),
            "class_aware",
            self.class_aware,
            "use True or False, e.g. class_aware=False",
        )
        _require(
            _is_real(self.position_gain) and 0.0 < self.position_gain <= 1.0,
            "position_gain",
            self.position_gain,
            "use a gain in (0, 1], e.g. position_gain=0.6",
        )
        _require(
            _is_real(self.velocity_gain) and 0.0 < self.velocity_gain <= 1.0,
            "velocity_gain",
            self.velocity_gain,
            "use a gain in (0, 1], e.g. velocity_gain=0.25",
        )


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _require(ok: bool, name: str, value: object, fix: str) -> None:
    if not ok:
        raise ConfigError(f"tracker {name}={value!r} is out of range", fix)


# -- tracks ---------------------------------------------------------------------------------
@dataclass(eq=False)
class Track:
    """One tracked object. Times are capture seconds; boxes are ``[x0, y0, x1, y1]`` pixels.

    ``box`` is the filtered box at the last update (predicted, when the track coasted);
    ``velocity`` is ``(vcx, vcy, vw, vh)`` in px/s; ``score`` is the last matched detection's;
    ``best_box`` is the detection box at ``best_score``, seen at ``best_time``; ``hits`` counts
    matched detections; ``matched`` says whether the last update matched it; ``label_scores``
    holds the summed score per label. ``id`` is None until the track is confirmed.
    """

    id: int | None
    box: np.ndarray
    first_seen: float
    last_seen: float
    hits: int
    score: float
    best_score: float
    best_box: np.ndarray
    best_time: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    matched: bool = True
    label_scores: dict[int, float] = field(default_factory=dict)
    state: np.ndarray = field(default_factory=lambda: np.zeros(4), repr=False)
    """The filtered ``(cx, cy, w, h)`` at ``last_seen``, which predictions start from."""

    @property
    def confirmed(self) -> bool:
        return self.id is not None

    @property
    def label(self) -> int:
        """The label with the highest summed score over the matched detections (ties: lower)."""
        return min(self.label_scores, key=lambda k: (-self.label_scores[k], k))

    @property
    def duration_s(self) -> float:
        return self.last_seen - self.first_seen

    def predict(self, t: float) -> np.ndarray:
        """The box ``[x0, y0, x1, y1]`` predicted at capture time ``t`` (constant velocity)."""
        return _xyxy(self._predict_state(t))

    def _predict_state(self, t: float) -> np.ndarray:
        state = self.state + self.velocity * max(t - self.last_seen, 0.0)
        state[2:] = np.maximum(state[2:], MIN_SIZE)
        return state

    def _snapshot(self) -> Track:
        # The tracker replaces a track's arrays, never writes into them: sharing is safe.
        copy = object.__new__(Track)
        copy.__dict__.update(self.__dict__)
        copy.label_scores = dict(self.label_scores)
        return copy


def _predict_all(tracks: Sequence[Track], t: float) -> np.ndarray:
    """Every track's ``(cx, cy, w, h)`` predicted to ``t``, as one ``(N, 4)`` array."""
    if not tracks:
        return np.zeros((0, 4))
    state = np.array([tr.state for tr in tracks])
    velocity = np.array([tr.velocity for tr in tracks])
    dt = np.maximum(t - np.array([tr.last_seen for tr in tracks]), 0.0)
    out = state + velocity * dt[:, None]
    out[:, 2:] = np.maximum(out[:, 2:], MIN_SIZE)
    return out


def _cxcywh(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    size = boxes[..., 2:] - boxes[..., :2]
    return np.concatenate([boxes[..., :2] + size / 2, size], axis=-1)


def _xyxy(state: np.ndarray) -> np.ndarray:
    half = state[..., 2:] / 2
    return np.concatenate([state[..., :2] - half, state[..., :2] + half], axis=-1)


@dataclass
class TrackUpdate:
    """What one frame did: ``tracks`` (the confirmed tracks matched or coasting, by id),
    ``appeared`` (confirmed at this frame), ``left`` (removed at this frame) and
    ``assignment`` (per input detection, the confirmed track id it extends, or None).

    The tracks are snapshots: later updates do not change them.
    """

    t: float
    tracks: list[Track]
    appeared: list[Track]
    left: list[Track]
    assignment: list[int | None]


# -- the tracker ----------------------------------------------------------------------------
class Tracker:
    """Tracks detections over a stream of frames; see the module docstring for the design."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config if config is not None else TrackerConfig()
        self._live: list[Track] = []  # confirmed and tentative, in creation order
        self._next_id = 1
        self._time: float | None = None

    @property
    def time(self) -> float | None:
        """The capture time of the last update (None before the first)."""
        return self._time

    @property
    def tracks(self) -> list[Track]:
        """Snapshots of the confirmed live tracks, by id."""
        return [tr._snapshot() for tr in self._live if tr.confirmed]

    def reset(self) -> None:
        """Forget every track and the clock without events (a new stream); ids keep counting."""
        self._live = []
        self._time = None

    def _advance(self, t: float) -> float:
        if not _is_real(t) or not math.isfinite(t):
            raise ConfigError(
                f"capture time t={t!r} is not a finite number of seconds",
                "pass the frame's capture timestamp, e.g. time.monotonic() at capture",
            )
        t = float(t)
        if self._time is not None and t < self._time:
            raise ConfigError(
                f"capture time went backwards: t={t!r} after t={self._time!r}",
                "pass monotonic capture timestamps (time.monotonic()), in capture order; "
                "call reset() to start a new stream",
            )
        self._time = t
        return t

    def update(self, detections: Detections, t: float) -> TrackUpdate:
        """Add one frame's detections, captured at ``t`` seconds (never earlier than the last)."""
        t = self._advance(t)
        cfg = self.config
        boxes, scores, labels = _parse(detections)

        # 1. Expire tracks unmatched for longer than max_age_s (before association).
        left = [tr for tr in self._live if t - tr.last_seen > cfg.max_age_s and tr.confirmed]
        self._live = [tr for tr in self._live if t - tr.last_seen <= cfg.max_age_s]

        predicted = _predict_all(self._live, t)
        track_boxes = _xyxy(predicted)
        track_labels = (
            np.array([tr.label for tr in self._live], dtype=np.int64) if cfg.class_aware else None
        )

        # 2. Round 1: high detections vs every live track.
        high = np.flatnonzero(scores >= cfg.high_threshold)
        all_tracks = np.arange(len(self._live))
        pairs = self._greedy(
            track_boxes, track_labels, all_tracks, boxes, labels, high, cfg.match_iou
        )
        # 3. Round 2: low detections vs confirmed tracks still unmatched.
        taken = {ti for ti, _ in pairs}
        free = np.array(
            [i for i, tr in enumerate(self._live) if tr.confirmed and i not in taken],
            dtype=np.int64,
        )
        low = np.flatnonzero((scores >= cfg.low_threshold) & (scores < cfg.high_threshold))
        pairs += self._greedy(
            track_boxes, track_labels, free, boxes, labels, low, cfg.low_match_iou
        )

        appeared: list[Track] = []
        matched_det = {di: ti for ti, di in pairs}
        matched_track = {ti: di for ti, di in pairs}
        self._correct([(self._live[ti], di) for ti, di in pairs], boxes, scores, labels, t)
        survivors: list[Track] = []
        for ti, tr in enumerate(self._live):
            if ti in matched_track:
                if not tr.confirmed and tr.hits >= cfg.min_hits:
                    self._confirm(tr, appeared)
                survivors.append(tr)
            elif tr.confirmed:  # coast on the prediction
                tr.matched = False
                tr.box = _xyxy(predicted[ti])
                survivors.append(tr)
            # else: a tentative track that missed an update is dropped silently.

        # 4. Unmatched high detections that are strong enough start tentative tracks.
        new: dict[int, Track] = {}
        for di in high:
            if int(di) not in matched_det and scores[di] >= cfg.new_track_threshold:
                tr = _new_track(boxes[di], float(scores[di]), int(labels[di]), t)
                if cfg.min_hits <= 1:
                    self._confirm(tr, appeared)
                new[int(di)] = tr
                survivors.append(tr)
        live, self._live = self._live, survivors

        assignment: list[int | None] = []
        for di in range(len(scores)):
            if di in matched_det:
                assignment.append(live[matched_det[di]].id)
            elif di in new:
                assignment.append(new[di].id)
            else:
                assignment.append(None)
        tracks = sorted((tr for tr in self._live if tr.confirmed), key=lambda tr: tr.id or 0)
        return TrackUpdate(
            t=t,
            tracks=[tr._snapshot() for tr in tracks],
            appeared=[tr._snapshot() for tr in appeared],
            left=[tr._snapshot() for tr in left],
            assignment=assignment,
        )

    def flush(self, t: float | None = None) -> list[Track]:
        """End of stream: every confirmed live track leaves; returns them by id.

        ``t`` (default: the last update's time) must not be earlier than the last update.
        Tentative tracks are dropped silently. The tracker can go on afterwards; ids keep
        counting.
        """
        if t is not None:
            self._advance(t)
        left = sorted((tr for tr in self._live if tr.confirmed), key=lambda tr: tr.id or 0)
        self._live = []
        return [tr._snapshot() for tr in left]

    # -- internals --------------------------------------------------------------------------
    def _greedy(
        self,
        track_boxes: np.ndarray,
        track_labels: np.ndarray | None,
        tracks: np.ndarray,
        boxes: np.ndarray,
        labels: np.ndarray,
        dets: np.ndarray,
        min_iou: float,
    ) -> list[tuple[int, int]]:
        """Greedy pairs (track index, detection index) by descending IoU >= ``min_iou``."""
        if not len(tracks) or not len(dets):
            return []
        iou = box_iou(track_boxes[tracks], boxes[dets])
        if track_labels is not None:  # class-aware
            iou = np.where(track_labels[tracks][:, None] == labels[dets][None, :], iou, -1.0)
        rows, cols = np.nonzero(iou >= min_iou)
        if len(np.unique(rows)) == len(rows) and len(np.unique(cols)) == len(cols):
            # No track and no detection in two candidate pairs (separate objects, the usual
            # frame): every pair is in the greedy answer; keep its order.
            order = np.lexsort((dets[cols], tracks[rows], -iou[rows, cols]))
            return [(int(tracks[rows[k]]), int(dets[cols[k]])) for k in order]
        # Descending IoU; ties: older track (lower index), then lower detection index.
        order = np.lexsort((dets[cols], tracks[rows], -iou[rows, cols]))
        pairs: list[tuple[int, int]] = []
        used_t: set[int] = set()
        used_d: set[int] = set()
        for k in order:
            ti, di = int(tracks[rows[k]]), int(dets[cols[k]])
            if ti not in used_t and di not in used_d:
                used_t.add(ti)
                used_d.add(di)
                pairs.append((ti, di))
        return pairs

    def _correct(
        self,
        matches: list[tuple[Track, int]],
        boxes: np.ndarray,
        scores: np.ndarray,
        labels: np.ndarray,
        t: float,
    ) -> None:
        """The alpha-beta update at ``t`` of every matched (track, detection index) pair.

        All tracks at once in numpy (per track, numpy's per-call cost on 4-vectors was most of
        an update's time); only the bookkeeping loops. The arrays a track holds are replaced,
        never written into, so snapshots may share them."""
        if not matches:
            return
        cfg = self.config
        tracks = [tr for tr, _ in matches]
        di = np.array([d for _, d in matches], dtype=np.int64)
        state = np.array([tr.state for tr in tracks])
        velocity = np.array([tr.velocity for tr in tracks])
        dt = t - np.array([tr.last_seen for tr in tracks])
        n = np.array([tr.hits for tr in tracks], dtype=np.float64) + 1.0  # this measurement's
        g = np.maximum(cfg.position_gain, 2.0 * (2.0 * n - 1.0) / (n * (n + 1.0)))[:, None]
        h = np.maximum(cfg.velocity_gain, 6.0 / (n * (n + 1.0)))[:, None]
        moving = (dt > _MIN_DT)[:, None]  # same capture time: no motion to estimate
        pred = np.where(moving, state + velocity * dt[:, None], state)
        residual = _cxcywh(boxes[di]) - pred
        state = pred + g * residual
        step = np.where(moving, dt[:, None], 1.0)
        velocity = np.where(moving, velocity + h * residual / step, velocity)
        state[:, 2:] = np.maximum(state[:, 2:], MIN_SIZE)
        box = _xyxy(state)
        rows = zip(
            tracks,
            di.tolist(),
            scores[di].tolist(),
            labels[di].tolist(),
            state,
            velocity,
            box,
            strict=True,
        )
        for tr, d, score, label, new_state, new_velocity, new_box in rows:
            tr.state, tr.velocity, tr.box = new_state, new_velocity, new_box
            tr.last_seen = t
            tr.hits += 1
            tr.score = score
            tr.matched = True
            tr.label_scores[label] = tr.label_scores.get(label, 0.0) + score
            if score > tr.best_score:
                tr.best_score, tr.best_box, tr.best_time = score, boxes[d].copy(), t

    def _confirm(self, tr: Track, appeared: list[Track]) -> None:
        tr.id = self._next_id
        self._next_id += 1
        appeared.append(tr)


def _new_track(box: np.ndarray, score: float, label: int, t: float) -> Track:
    state = _cxcywh(box)
    state[2:] = np.maximum(state[2:], MIN_SIZE)
    return Track(
        id=None,
        box=_xyxy(state),
        first_seen=t,
        last_seen=t,
        hits=1,
        score=score,
        best_score=score,
        best_box=box.copy(),
        best_time=t,
        label_scores={label: score},
        state=state,
    )


def _parse(detections: Detections) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    boxes = np.asarray(detections.boxes)
    boxes = boxes.reshape(0, 4) if boxes.size == 0 else boxes
    scores = np.asarray(detections.scores).reshape(-1) if boxes.size else np.zeros(0)
    labels = np.asarray(detections.labels).reshape(-1) if boxes.size else np.zeros(0, np.int64)
    _check_boxes(boxes, "detections")
    _check_scores(scores, len(boxes), "detections")
    _check_labels(labels, len(boxes), None, "detections")
    return boxes.astype(np.float64), scores.astype(np.float64), labels.astype(np.int64)


# -- events ---------------------------------------------------------------------------------
def track_event(kind: str, track: Track, labels: Sequence[str]) -> dict[str, Any]:
    """A JSON-ready event for a track that ``appeared`` or ``left``.

    ``time`` is ``first_seen`` for ``appeared`` and ``last_seen`` for ``left``; ``box`` is the
    detection box at the best score, rounded to 0.1 px. Times are rounded to 1 µs and scores to
    1e-4.
    """
    if kind not in EVENT_KINDS:
        raise ConfigError(f"track event kind {kind!r} is unknown", f"use one of {EVENT_KINDS}")
    if track.id is None:
        raise ConfigError(
            "a tentative track (no id yet) has no events",
            "report the tracks of TrackUpdate.appeared/left or Tracker.flush()",
        )
    label_id = int(track.label)
    if not 0 <= label_id < len(labels):
        raise DataError(
            f"track {track.id} has label {label_id}, outside the {len(labels)} labels given",
            "pass the label list the model was trained on",
        )
    return {
        "event": kind,
        "track": int(track.id),
        "label": str(labels[label_id]),
        "label_id": label_id,
        "time": _time(track.first_seen if kind == "appeared" else track.last_seen),
        "first_seen": _time(track.first_seen),
        "last_seen": _time(track.last_seen),
        "duration_s": _time(track.duration_s),
        "frames": int(track.hits),
        "best_score": round(float(track.best_score), 4),
        "best_time": _time(track.best_time),
        "box": [round(float(v), 1) for v in track.best_box],
    }


def _time(seconds: float) -> float:
    return round(float(seconds), 6)
