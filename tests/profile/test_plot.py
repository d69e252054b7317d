import sys

import pytest

from edgevision.errors import EdgeVisionError
from edgevision.profile import plot_report
from tests.profile.conftest import fake_report


def test_plot_writes_a_png(tmp_path):
    report = fake_report({"fp32": [1.0, 2.0, 3.0, 2.5], "int8-cpu": [0.5, 0.7, 0.6, 0.9]})
    path = plot_report(report, tmp_path / "out" / "latency.png")
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 5000


def test_missing_matplotlib_is_a_clear_error(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` → ImportError
    with pytest.raises(EdgeVisionError, match="matplotlib is not installed") as info:
        plot_report(fake_report({"fp32": [1.0, 2.0]}), tmp_path / "x.png")
    assert "edgevision[train]" in info.value.fix
    assert not (tmp_path / "x.png").exists()


def test_nothing_measured_is_a_clear_error(tmp_path):
    report = fake_report({})
    with pytest.raises(EdgeVisionError, match="nothing was measured"):
        plot_report(report, tmp_path / "x.png")
