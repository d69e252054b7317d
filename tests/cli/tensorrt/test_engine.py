"""`edgevision engine BUNDLE` (and the deprecated `edgevision build BUNDLE --target tensorrt`)
through the real entry point, on the fake TensorRT of the backend's tests (see conftest.py)."""

from __future__ import annotations

import pytest

from edgevision.bundle import Bundle
from edgevision.cli.app import main

ENGINE_OPTIONS = (
    "--precision",
    "--workspace-mb",
    "--max-batch",
    "--dla-core",
    "--fp16-fallback",
    "--opt-level",
    "--timing-cache",
    "--engine-cache",
    "--rebuild-if-stale",
)


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch):
    # rich wraps at 80 columns when not on a terminal; messages are matched on one line.
    monkeypatch.setenv("COLUMNS", "400")


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = 0 if exc.code is None else exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _engines(bundle) -> dict:
    return Bundle.open(bundle).manifest.get("engines", {})


def test_engine_builds_and_records_with_the_options(make_trt, cudart, trt_bundle, capsys):
    make_trt("10.3.0")
    argv = ["engine", str(trt_bundle), "--precision", "fp32", "--max-batch", "2"]
    code, out, err = _run([*argv, "--workspace-mb", "512", "--opt-level", "2"], capsys)
    assert code == 0, err
    (record,) = _engines(trt_bundle).values()
    assert (record["precision"], record["onnx_file"]) == ("fp32", "model.fp32.onnx")
    assert (record["min_batch"], record["opt_batch"], record["max_batch"]) == (1, 1, 2)
    assert (record["workspace_mb"], record["opt_level"]) == (512, 2)
    assert out.startswith("engine ") and "TensorRT 10.3.0" in out and err == ""


def test_an_engine_built_differently_is_replaced_only_when_asked(trt, trt_bundle, capsys):
    int8 = ["engine", str(trt_bundle), "--precision", "int8"]
    assert _run(int8, capsys)[0] == 0
    code, _, err = _run([*int8, "--max-batch", "4"], capsys)
    assert code == 2 and "already exists but max batch: built with 8, asked for 4" in err
    assert "Traceback" not in err
    again = [*int8, "--max-batch", "4", "--rebuild-if-stale"]
    code, _, err = _run(again, capsys)
    assert code == 0, err
    assert [r["max_batch"] for r in _engines(trt_bundle).values()] == [4]


def test_not_a_bundle_says_to_build_one(tmp_path, capsys):
    code, _, err = _run(["engine", str(tmp_path)], capsys)
    assert code == 2 and f"{tmp_path} is not one" in err
    assert "edgevision build RUN --out BUNDLE" in err


def test_bad_option_is_one_error_before_tensorrt_is_needed(trt_bundle, capsys):
    code, _, err = _run(["engine", str(trt_bundle), "--opt-level", "9"], capsys)
    assert code == 2 and "optimisation level 9 is out of range" in err


def test_the_old_form_still_builds_with_one_line_pointing_to_the_new(
    make_trt, cudart, trt_bundle, capsys
):
    make_trt("10.3.0")
    argv = ["build", str(trt_bundle), "--target", "tensorrt", "--max-batch", "2"]
    code, out, err = _run(argv, capsys)
    assert code == 0, err
    (warning,) = err.splitlines()
    assert "deprecated" in warning and f"edgevision engine {trt_bundle}" in warning
    (record,) = _engines(trt_bundle).values()
    assert record["max_batch"] == 2 and out.startswith("engine ")


def test_build_on_a_bundle_points_to_engine(trt_bundle, capsys):
    code, _, err = _run(["build", str(trt_bundle)], capsys)
    assert code == 2 and "already a bundle" in err and f"edgevision engine {trt_bundle}" in err


def test_help_engine_has_its_options_and_build_has_none_of_them(capsys):
    _, engine_help, _ = _run(["engine", "--help"], capsys)
    _, build_help, _ = _run(["build", "--help"], capsys)
    for option in ENGINE_OPTIONS:
        assert option in engine_help
        assert option not in build_help
    assert "--target " not in build_help and "edgevision engine BUNDLE" in build_help
