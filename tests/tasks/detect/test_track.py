"""The runtime's tracker: ids, events, prediction over capture time, ByteTrack's low round."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edgevision.errors import ConfigError
from edgevision.tasks.detect.metrics import Detections, box_iou
from edgevision.tasks.detect.track import (
    Track,
    Tracker,
    TrackerConfig,
    TrackUpdate,
    track_event,
)

FPS = 15.0
T0 = 1000.0  # monotonic clocks do not start at 0
LABELS = ["car", "stop sign", "person"]
EVENT_KEYS = {
    "event",
    "track",
    "label",
    "label_id",
    "time",
    "first_seen",
    "last_seen",
    "duration_s",
    "frames",
    "best_score",
    "best_time",
    "box",
}


def frame_time(k: int) -> float:
    return T0 + k / FPS


def box(x: float, y: float, size: float = 80.0) -> list[float]:
    return [x, y, x + size, y + size]


def dets(boxes, scores, labels=None) -> Detections:
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    labels = np.zeros(len(boxes), dtype=int) if labels is None else labels
    return Detections(boxes, np.asarray(scores, dtype=float), np.asarray(labels, dtype=int))


def empty() -> Detections:
    return dets(np.zeros((0, 4)), [])


def iou(a, b) -> float:
    return float(box_iou(np.asarray([a], float), np.asarray([b], float))[0, 0])


def run(tracker: Tracker, frames: list[tuple[float, Detections]]) -> list[TrackUpdate]:
    return [tracker.update(d, t) for t, d in frames]


def events(updates: list[TrackUpdate], kind: str) -> list[tuple[int, Track]]:
    """(update index, track) for every ``appeared`` or ``left`` track."""
    return [(i, tr) for i, u in enumerate(updates) for tr in getattr(u, kind)]


# -- one object -----------------------------------------------------------------------------
def test_constant_velocity_object_keeps_one_id_appears_once_and_leaves_after_max_age():
    seen = 20
    frames = [(frame_time(k), dets([box(20 + 10 * k, 50)], [0.9])) for k in range(seen)]
    frames += [(frame_time(k), empty()) for k in range(seen, seen + 25)]
    updates = run(Tracker(), frames)

    assert updates[0].assignment == [None]  # tentative after one detection
    assert [u.assignment for u in updates[1:seen]] == [[1]] * (seen - 1)
    appeared = events(updates, "appeared")
    assert [(i, tr.id) for i, tr in appeared] == [(1, 1)]  # min_hits 2: the 2nd frame
    assert appeared[0][1].first_seen == frame_time(0)

    last = frame_time(seen - 1)
    expected_exit = next(k for k in range(seen, seen + 25) if frame_time(k) - last > 1.0)
    left = events(updates, "left")
    assert [(i, tr.id) for i, tr in left] == [(expected_exit, 1)]
    gone = left[0][1]
    assert gone.last_seen == last and gone.first_seen == frame_time(0) and gone.hits == seen
    event = track_event("left", gone, LABELS)
    assert event["time"] == pytest.approx(last) and event["last_seen"] == pytest.approx(last)
    assert event["frames"] == seen and event["track"] == 1 and event["label"] == "car"

    # While it coasts it is still reported, unmatched, on its predicted box (10 px/frame).
    coasting = updates[seen].tracks
    assert [(tr.id, tr.matched) for tr in coasting] == [(1, False)]
    assert coasting[0].box == pytest.approx(box(20 + 10 * seen, 50), abs=1e-6)
    assert coasting[0].velocity[:2] == pytest.approx([10 * FPS, 0.0])
    assert updates[expected_exit].tracks == [] and updates[expected_exit - 1].tracks != []


def test_dropped_frames_are_bridged_by_prediction_over_capture_time():
    speed = 30.0  # px per camera frame, with 80 px boxes
    delivered = [0, 1, 2, 6, 10, 13, 18, 22, 26, 31]  # the live source dropped the rest
    boxes = [box(10 + speed * k, 40) for k in delivered]
    cfg = TrackerConfig()
    # The premise: after the drops, the last box alone never overlaps the next one enough ...
    later = list(zip(boxes[2:], boxes[3:], strict=False))
    assert max(iou(a, b) for a, b in later) < cfg.match_iou
    # ... and a velocity per update (not per second) would miss too: after 1-frame steps it
    # would predict a 30 px step where the object moved 120 px.
    step = speed * (delivered[2] - delivered[1])
    shifted = [boxes[2][0] + step, boxes[2][1], boxes[2][2] + step, boxes[2][3]]
    assert iou(shifted, boxes[3]) < cfg.match_iou

    updates = run(
        Tracker(cfg),
        [(frame_time(k), dets([b], [0.9])) for k, b in zip(delivered, boxes, strict=True)],
    )
    assert [u.assignment for u in updates[1:]] == [[1]] * (len(delivered) - 1)
    assert events(updates, "left") == []
    assert [tr.id for tr in updates[-1].tracks] == [1]
    assert updates[-1].tracks[0].velocity[0] == pytest.approx(speed * FPS)


def test_crossing_objects_keep_their_ids_because_prediction_decides():
    # A moves right fast, B left slower, 10 px lower. While they overlap the detector (its NMS)
    # sees only B, in front; A must be re-found on the far side of B from where it was last seen.
    def a(k):
        return box(24.0 * k, 100, 60)

    def b(k):
        return box(600.0 - 16.0 * k, 110, 60)

    n = 30
    hidden = [k for k in range(n) if iou(a(k), b(k)) > 0]
    assert hidden == [14, 15, 16]
    before, after = hidden[0] - 1, hidden[-1] + 1
    # The premise: A's last box misses A's next one but overlaps B's, so matching on last boxes
    # would lose or swap A; only the motion model (0.27 s of coasting) can find it again.
    cfg = TrackerConfig()
    assert iou(a(before), a(after)) < cfg.match_iou <= iou(a(before), b(after))
    assert iou(a(before - 5), b(before - 5)) == 0 and iou(a(after + 5), b(after + 5)) == 0

    tracker = Tracker(cfg)
    ids_a, ids_b, updates = [], [], []
    for k in range(n):
        if k in hidden:
            update = tracker.update(dets([b(k)], [0.8]), frame_time(k))
            (id_b,) = update.assignment
        elif k % 2:  # the detector's order carries no identity
            update = tracker.update(dets([b(k), a(k)], [0.8, 0.9]), frame_time(k))
            id_b, id_a = update.assignment
            ids_a.append(id_a)
        else:
            update = tracker.update(dets([a(k), b(k)], [0.9, 0.8]), frame_time(k))
            id_a, id_b = update.assignment
            ids_a.append(id_a)
        ids_b.append(id_b)
        updates.append(update)
    assert ids_a[1:] == [ids_a[1]] * (len(ids_a) - 1) and ids_b[1:] == [ids_b[1]] * (n - 1)
    assert {ids_a[1], ids_b[1]} == {1, 2}
    assert events(updates, "left") == [] and len(events(updates, "appeared")) == 2
    coasting = [tr for tr in updates[hidden[1]].tracks if not tr.matched]
    assert [tr.id for tr in coasting] == [ids_a[1]]


# -- ByteTrack's low-score round --------------------------------------------------------------
def occluded_stream() -> list[tuple[float, Detections]]:
    # 0.9 for 5 frames, 0.2 for 20 frames (1.33 s: longer than max_age_s), 0.9 again.
    scores = [0.9] * 5 + [0.2] * 20 + [0.9] * 6
    return [(frame_time(k), dets([box(10 + 5 * k, 30)], [s])) for k, s in enumerate(scores)]


def test_low_score_detections_keep_an_occluded_track_alive():
    updates = run(Tracker(), occluded_stream())
    assert [u.assignment for u in updates[1:]] == [[1]] * (len(updates) - 1)
    assert all(u.tracks[0].matched for u in updates[5:25])  # matched by the low round
    assert len(events(updates, "appeared")) == 1 and events(updates, "left") == []
    assert updates[-1].tracks[0].hits == len(updates)

    # Control: with the low round off (low == high) the same stream loses the track.
    control = run(Tracker(TrackerConfig(low_threshold=0.5)), occluded_stream())
    assert len(events(control, "left")) == 1
    assert control[-1].assignment == [2]


def test_low_score_detections_never_start_or_confirm_a_track():
    tracker = Tracker()
    updates = run(tracker, [(frame_time(k), dets([box(100, 100)], [0.2])) for k in range(30)])
    assert all(u.assignment == [None] and u.tracks == [] and u.appeared == [] for u in updates)
    # A single high detection followed by low ones stays tentative and is dropped.
    scores = [0.9, 0.2, 0.2, 0.2]
    updates = run(
        tracker, [(frame_time(30 + i), dets([box(300, 100)], [s])) for i, s in enumerate(scores)]
    )
    assert events(updates, "appeared") == [] and tracker.flush() == []


# -- labels, flicker, flush, events -----------------------------------------------------------
def track_of(labels: list[int], scores: list[float]) -> Track:
    tracker = Tracker()
    for k, (label, score) in enumerate(zip(labels, scores, strict=True)):
        tracker.update(dets([box(50 + 2 * k, 50)], [score], [label]), frame_time(k))
    (track,) = tracker.flush()
    return track


def test_label_is_the_vote_of_summed_scores():
    assert track_of([0, 1, 1, 1, 0], [0.9, 0.7, 0.7, 0.7, 0.9]).label == 1  # 2.1 vs 1.8
    # More detections of 1 but more score on 0: the summed score wins, not the count.
    assert track_of([0, 1, 1, 1, 0], [0.95, 0.55, 0.55, 0.55, 0.95]).label == 0  # 1.9 vs 1.65
    assert track_of([2, 1], [0.8, 0.8]).label == 1  # a tie goes to the lower index
    event = track_event("left", track_of([0, 1, 1, 1, 0], [0.9, 0.7, 0.7, 0.7, 0.9]), LABELS)
    assert (event["label"], event["label_id"]) == ("stop sign", 1)


def test_class_aware_tracks_only_match_their_label():
    frames = [(frame_time(k), dets([box(50, 50)], [0.9], [k % 2])) for k in range(6)]
    assert [u.assignment for u in run(Tracker(), frames)][1:] == [[1]] * 5
    aware = run(Tracker(TrackerConfig(class_aware=True)), frames)
    assert all(u.assignment == [None] for u in aware) and events(aware, "appeared") == []


def test_a_flicker_yields_no_events_and_uses_no_id():
    tracker = Tracker()
    frames = [(frame_time(k), empty()) for k in range(40)]
    frames[5] = (frame_time(5), dets([box(200, 200)], [0.95]))
    frames[20] = (frame_time(20), dets([box(400, 100)], [0.99], [1]))
    updates = run(tracker, frames)
    assert events(updates, "appeared") == [] and events(updates, "left") == []
    assert all(u.tracks == [] for u in updates) and tracker.flush() == []
    # The first real object still gets id 1: tentative tracks take no ids.
    later = run(tracker, [(frame_time(k), dets([box(10, 10)], [0.9])) for k in range(40, 43)])
    assert [tr.id for tr in later[1].appeared] == [1]


def test_flush_makes_live_confirmed_tracks_leave_and_events_are_json():
    tracker = Tracker()
    for k in range(4):
        tracker.update(
            dets([box(10 + 3 * k, 10), box(300, 200 + k)], [0.9, 0.8 - 0.1 * k], [1, 2]),
            frame_time(k),
        )
    # A third object shows up in the last frame only: tentative, it does not leave.
    update = tracker.update(
        dets([box(22, 10), box(300, 204), box(600, 50)], [0.91, 0.5, 0.97], [1, 2, 0]),
        frame_time(4),
    )
    assert update.assignment == [1, 2, None]
    left = tracker.flush(frame_time(5))
    assert [tr.id for tr in left] == [1, 2] and tracker.tracks == []

    first = track_event("appeared", left[0], LABELS)
    gone = track_event("left", left[1], LABELS)
    for event in (first, gone):
        assert set(event) == EVENT_KEYS
        assert json.loads(json.dumps(event)) == event
    assert first["event"] == "appeared" and first["time"] == pytest.approx(frame_time(0))
    assert first["best_score"] == pytest.approx(0.91) and first["box"] == [22.0, 10.0, 102.0, 90.0]
    assert first["best_time"] == pytest.approx(frame_time(4))
    assert gone["event"] == "left" and gone["time"] == pytest.approx(frame_time(4))
    assert gone["label"] == "person" and gone["best_score"] == pytest.approx(0.8)
    assert gone["box"] == [300.0, 200.0, 380.0, 280.0]
    assert gone["duration_s"] == pytest.approx(4 / FPS, abs=1e-6) and gone["frames"] == 5
    assert all(isinstance(v, float) for v in gone["box"])

    # Ids keep counting after a flush, and a second flush has nothing left.
    after = run(tracker, [(frame_time(k), dets([box(5, 5)], [0.9])) for k in range(6, 8)])
    assert [tr.id for tr in after[1].appeared] == [3]
    with pytest.raises(ConfigError, match="kind"):
        track_event("moved", left[0], LABELS)


def test_track_event_rounds_the_box_to_a_tenth_of_a_pixel():
    tracker = Tracker()
    for k in range(2):
        tracker.update(dets([[10.04, 20.06, 90.149, 99.95]], [0.9]), frame_time(k))
    (track,) = tracker.flush()
    assert track_event("left", track, LABELS)["box"] == [10.0, 20.1, 90.1, 100.0]


# -- validation -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"low_threshold": 0.6, "high_threshold": 0.5}, "low_threshold"),
        ({"max_age_s": -1.0}, "max_age_s"),
        ({"max_age_s": math.inf}, "max_age_s"),
        ({"high_threshold": math.nan}, "high_threshold"),
        ({"new_track_threshold": 0.4}, "new_track_threshold"),
        ({"match_iou": 0.0}, "match_iou"),
        ({"low_match_iou": 1.5}, "low_match_iou"),
        ({"min_hits": 0}, "min_hits"),
        ({"min_hits": 2.5}, "min_hits"),
        ({"position_gain": 0.0}, "position_gain"),
    ],
)
def test_config_errors_name_the_field_and_a_good_value(kwargs, field):
    with pytest.raises(ConfigError, match=field) as caught:
        TrackerConfig(**kwargs)
    assert f"{field}=" in (caught.value.fix or "")


def test_defaults_are_valid_and_frozen():
    cfg = TrackerConfig()
    assert (cfg.high_threshold, cfg.low_threshold, cfg.new_track_threshold) == (0.5, 0.2, 0.6)
    assert (cfg.match_iou, cfg.low_match_iou, cfg.min_hits, cfg.max_age_s) == (0.3, 0.5, 2, 1.0)
    with pytest.raises(AttributeError):
        cfg.min_hits = 3  # type: ignore[misc]


def test_time_must_not_go_backwards_but_may_repeat():
    tracker = Tracker()
    tracker.update(dets([box(0, 0)], [0.9]), 10.0)
    assert tracker.update(dets([box(0, 0)], [0.9]), 10.0).assignment == [1]  # equal t is fine
    with pytest.raises(ConfigError, match="backwards"):
        tracker.update(empty(), 9.5)
    with pytest.raises(ConfigError, match="backwards"):
        tracker.flush(9.9)
    with pytest.raises(ConfigError, match="finite"):
        tracker.update(empty(), math.nan)
    assert tracker.time == 10.0 and [tr.id for tr in tracker.tracks] == [1]


def test_min_hits_one_confirms_at_once():
    tracker = Tracker(TrackerConfig(min_hits=1))
    update = tracker.update(dets([box(0, 0)], [0.9]), 1.0)
    assert update.assignment == [1] and [tr.id for tr in update.appeared] == [1]
