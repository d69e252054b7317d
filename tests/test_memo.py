"""The byte-bounded LRU cache that keeps long runs' memory flat."""

import numpy as np
import pytest

from edgevision.memo import ByteLRU, byte_lru_cache, nbytes


def test_evicts_least_recently_used_past_the_byte_budget():
    cache = ByteLRU(3000)
    for key in "abc":
        cache.put(key, np.zeros(1000, np.uint8))
    assert cache.get("a")[0]  # now the most recent
    cache.put("d", np.zeros(1000, np.uint8))
    assert [k for k in "abcd" if cache.get(k)[0]] == ["a", "c", "d"]
    assert cache.bytes == 3000 and len(cache) == 3
    cache.put("huge", np.zeros(5000, np.uint8))  # larger than the budget: not kept
    assert not cache.get("huge")[0] and cache.bytes == 3000
    cache.put("a", np.zeros(10, np.uint8))  # replacing a key updates the count
    assert cache.bytes == 2010
    with pytest.raises(ValueError):
        ByteLRU(0)


def test_nbytes_counts_arrays_in_tuples():
    assert nbytes((np.zeros(10, np.float32), np.zeros(3, np.uint8))) == 43


def test_decorated_function_is_memoised_and_bounded():
    calls = []

    @byte_lru_cache(4 * 8 * 100)
    def ones(n: int) -> np.ndarray:
        calls.append(n)
        return np.ones(100)

    assert ones(1) is ones(1) and calls == [1]
    for n in range(50):
        ones(n)
    assert ones.cache.bytes <= 4 * 8 * 100 and len(ones.cache) == 4


def test_sign_templates_stay_within_their_budget():
    from edgevision.data.render import SIGN_CLASSES, sign_template

    for name in SIGN_CLASSES:
        for px in range(8, 129):
            sign_template(name, px)
    assert sign_template.cache.bytes <= sign_template.cache.max_bytes == 4 << 20
