"""`edgevision profile` end to end on a tiny bundle: exit codes are the CI contract."""

import json
import sys

import pytest

from edgevision.cli.app import main
from edgevision.profile import EXIT_BUDGET
from tests.profile.conftest import fake_report

FAST = ["-n", "5", "--warmup", "1", "--threads", "1"]


def run(argv) -> int:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    return info.value.code or 0


def test_profile_writes_table_json_and_png(bundle, tmp_path, capsys):
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    code = run(["profile", bundle, *FAST, "--batch", "1,2", "--json", out, "--plot", png])
    assert code == 0
    text = capsys.readouterr().out
    assert "fp32 ★" in text and "preprocess" in text and "p99" in text
    data = json.loads(out.read_text())
    assert data["schema"] == "edgevision.profile/1" and data["deployed"] == "fp32"
    assert {(m["key"], m["batch"]) for m in data["measurements"] if m["kind"] == "model"} == {
        ("fp32", 1),
        ("fp32", 2),
    }
    assert data["machine"]["cpu_model"] and len(data["bundle"]["manifest_sha256"]) == 64
    assert png.read_bytes().startswith(b"\x89PNG")


def test_missed_budget_exits_3_and_says_by_how_much(bundle, capsys):
    code = run(["profile", bundle, *FAST, "--budget-ms", "0.000001", "--percentile", "p50"])
    assert code == EXIT_BUDGET
    err = capsys.readouterr().err
    assert "budget missed" in err and "fp32 (the deployed artifact" in err and "p50" in err
    assert "over the 1e-06 ms budget" in err


def test_met_budget_exits_0(bundle, capsys):
    code = run(["profile", bundle, *FAST, "--budget-ms", "10000", "--budget-artifact", "fp32"])
    assert code == 0
    assert "within budget: fp32 p99" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["-n", "0"], "iterations must be at least 1"),
        (["--percentile", "p95"], "unknown percentile 'p95'"),
        (["--budget-ms", "-1"], "budget must be a positive number"),
        (["--budget-artifact", "fp32"], "--budget-artifact needs --budget-ms"),
        (["--batch", "1,x"], "batch size 'x'"),
        (["--budget-ms", "5", "--budget-artifact", "int4"], "no measurement named 'int4'"),
    ],
)
def test_user_errors_exit_2_without_traceback(bundle, capsys, extra, message):
    assert run(["profile", bundle, *FAST, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_bundle_exits_2(tmp_path, capsys):
    assert run(["profile", tmp_path / "nope"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_plot_without_matplotlib_warns_and_keeps_the_profile(bundle, tmp_path, monkeypatch, capsys):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "r.json"
    assert run(["profile", bundle, *FAST, "--json", out, "--plot", tmp_path / "r.png"]) == 0
    assert "matplotlib is not installed" in capsys.readouterr().err
    assert out.exists() and not (tmp_path / "r.png").exists()


def test_compare_exits_3_on_regression(tmp_path, capsys):
    base = [float(i) for i in range(1, 101)]
    fake_report({"fp32": base}).save(tmp_path / "a.json")
    fake_report({"fp32": [x * 1.5 for x in base]}).save(tmp_path / "b.json")
    assert run(["profile", "--compare", tmp_path / "a.json", tmp_path / "b.json"]) == EXIT_BUDGET
    captured = capsys.readouterr()
    assert "▲" in captured.out and "(+50%)" in captured.out
    assert "regression: fp32 batch 1 p50 50.500 → 75.750 ms (+50.0%, over 10%)" in captured.err
    args = ["profile", "--compare", tmp_path / "a.json", tmp_path / "b.json"]
    assert run([*args, "--threshold", "60%"]) == 0
    assert run(["profile", "--compare", tmp_path / "b.json", tmp_path / "a.json"]) == 0


def test_no_bundle_exits_2(capsys):
    assert run(["profile"]) == 2
    assert "no BUNDLE given" in capsys.readouterr().err


def test_seconds_mode(bundle, tmp_path):
    out = tmp_path / "r.json"
    assert run(["profile", bundle, "--seconds", "0.2", "--warmup", "0", "--json", out]) == 0
    data = json.loads(out.read_text())
    assert data["settings"]["seconds"] == 0.2 and data["settings"]["rounds"] >= 1


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_bad_output_paths_fail_before_measuring(bundle, tmp_path, capsys, monkeypatch, option):
    import edgevision.profile as profile

    def never(*_a, **_k):
        raise AssertionError("measured although the output path was bad")

    monkeypatch.setattr(profile, "profile_models", never)
    for path, message in ((tmp_path, "is a folder"), ("/proc/x/y.out", "cannot be written")):
        assert run(["profile", bundle, *FAST, option, path]) == 2
        err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
        assert message in err and option in err and "Traceback" not in err
