"""Tracking scores against a clip's ground truth (py-motmetrics): MOTA, IDF1, one track a sign."""

import json

import pytest

from edgevision.errors import DataError
from edgevision.tasks.detect.mot import read_frames, tracking_scores


def _truth(n: int = 10) -> dict:
    """Sign 1 moves right over frames 0..n-1; sign 2 appears at frame 5; a far sign 3 (8 px)."""
    frames = []
    for i in range(n):
        objects = [{"id": 1, "label": "stop", "box": [10 + 5 * i, 20, 40 + 5 * i, 50]}]
        if i >= 5:
            objects.append({"id": 2, "label": "yield", "box": [150, 60, 180, 90]})
        objects.append({"id": 3, "label": "stop", "box": [200, 10, 208, 18]})
        frames.append({"index": i, "objects": objects})
    return {"frames": frames}


def _perfect(truth: dict, tracks: dict[int, int]) -> dict[int, list[dict]]:
    return {
        f["index"]: [
            {"box": o["box"], "label": o["label"], "score": 0.9, "track": tracks[o["id"]]}
            for o in f["objects"]
            if o["id"] in tracks
        ]
        for f in truth["frames"]
    }


def test_a_perfect_tracker_scores_one():
    truth = _truth()
    scores = tracking_scores(_perfect(truth, {1: 7, 2: 8, 3: 9}), truth)
    assert scores["mota"] == pytest.approx(1.0) and scores["idf1"] == pytest.approx(1.0)
    assert scores["signs"] == 2 and scores["signs_one_track"] == 2  # sign 3 is don't-care
    assert scores["objects"] == 15 and scores["false_positives"] == 0
    assert scores["label_accuracy"] == 1.0 and scores["one_track_fraction"] == 1.0


def test_an_id_switch_misses_and_false_positives_count():
    truth = _truth()
    frames = _perfect(truth, {1: 7, 2: 8})
    for i in range(6, 10):  # sign 1 changes track id at frame 6
        frames[i][0]["track"] = 11
    del frames[9][1]  # sign 2 missed on the last frame
    frames[0].append({"box": [100, 100, 120, 120], "label": "stop", "score": 0.8, "track": 5})
    frames[1].append({"box": [300, 0, 310, 9], "label": "stop", "score": 0.8, "track": None})
    scores = tracking_scores(frames, truth)
    assert scores["switches"] == 1 and scores["misses"] == 1 and scores["false_positives"] == 1
    assert scores["mota"] == pytest.approx(1 - 3 / 15)
    assert scores["signs_one_track"] == 1 and scores["one_track_fraction"] == 0.5
    assert scores["idf1"] < 1.0


def test_frames_not_processed_are_skipped_and_files_are_read(tmp_path):
    truth = _truth()
    frames = _perfect(truth, {1: 1, 2: 2})
    path = tmp_path / "frames.jsonl"
    lines = [{"frame": i, "objects": o} for i, o in frames.items() if i % 2 == 0]
    lines.append({"event": "left", "track": 1})
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    got = read_frames(path)
    assert sorted(got) == [0, 2, 4, 6, 8]
    scores = tracking_scores(got, truth)
    assert scores["objects"] == 7 and scores["mota"] == pytest.approx(1.0)
    empty = tmp_path / "tracks.jsonl"
    empty.write_text(json.dumps({"event": "appeared", "track": 1}) + "\n")
    with pytest.raises(DataError, match="events-mode frames"):
        read_frames(empty)
