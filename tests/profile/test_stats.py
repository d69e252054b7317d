import numpy as np
import pytest

from edgevision.errors import EdgeVisionError, RegistryError
from edgevision.profile.stats import PERCENTILES, check_percentile, summarize


def test_summarize_matches_numpy():
    x = np.random.default_rng(1).gamma(2.0, 1.5, size=1000)
    s = summarize(x, items_per_sample=8)
    assert s.n == 1000
    assert s.min == pytest.approx(x.min())
    assert s.p50 == pytest.approx(np.percentile(x, 50))
    assert s.p90 == pytest.approx(np.percentile(x, 90))
    assert s.p99 == pytest.approx(np.percentile(x, 99))
    assert s.max == pytest.approx(x.max())
    assert s.mean == pytest.approx(x.mean())
    assert s.throughput == pytest.approx(8 * 1000.0 / x.mean())
    assert s.min <= s.p50 <= s.p90 <= s.p99 <= s.max


def test_get_names_and_unknown_percentile():
    s = summarize([1.0, 2.0, 3.0])
    assert [s.get(p) for p in ("min", "p50", "max", "mean")] == [1.0, 2.0, 3.0, 2.0]
    with pytest.raises(RegistryError, match="p95") as info:
        s.get("p95")
    assert "p99" in info.value.fix
    assert check_percentile("p90") == "p90"
    assert PERCENTILES.names() == ["max", "mean", "p50", "p90", "p99"]


def test_no_samples_is_an_error():
    with pytest.raises(EdgeVisionError, match="no latency samples"):
        summarize([])
