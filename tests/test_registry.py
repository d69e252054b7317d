import pytest

from edgevision.errors import RegistryError
from edgevision.registry import Registry


def test_lookup_lazy_and_unknown():
    reg: Registry = Registry("thing")
    reg.register("join", "os.path:join")

    @reg.register("one")
    def one():
        return 1

    import os.path

    assert reg.get("join") is os.path.join
    assert reg.get("one")() == 1
    with pytest.raises(RegistryError, match="join, one"):
        reg.get("nope")
