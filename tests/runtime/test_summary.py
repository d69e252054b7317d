"""RunSummary's per-frame series stay bounded in a long run and keep the same frames."""

import numpy as np

from edgevision.runtime.summary import Reservoir, RunSummary


def test_a_reservoir_keeps_everything_until_full():
    r = Reservoir(cap=8)
    for i in range(5):
        r.append(i)
    assert r == [0, 1, 2, 3, 4] and r.seen == 5


def test_past_its_cap_it_is_a_uniform_sample_of_every_value():
    r = Reservoir(cap=2000)
    for i in range(200_000):
        r.append(float(i))
    assert len(r) == 2000 and r.seen == 200_000
    values = np.array(r)
    # A uniform sample of 0..199999: its quartiles are near 50k / 100k / 150k, not all recent.
    q = np.percentile(values, [25, 50, 75])
    assert np.all(np.abs(q - [50_000, 100_000, 150_000]) < 8_000), q
    assert values.min() < 10_000 and values.max() > 190_000


def test_series_appended_in_step_keep_the_same_frames():
    s = RunSummary("src", "ort")
    for i in range(50_000):
        s.frame_index.append(i)
        s.latency_ms.append(i * 2.0)
        s.stage_ms["infer"].append(i * 3.0)
    assert len(s.latency_ms) == s.latency_ms.cap < 50_000
    pairs = zip(s.frame_index, s.latency_ms, s.stage_ms["infer"], strict=True)
    assert all(lat == 2.0 * i and inf == 3.0 * i for i, lat, inf in pairs)
    assert s.to_dict()["latency"]["n"] == s.latency_ms.cap
