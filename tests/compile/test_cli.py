"""`edgevision build` and `edgevision inspect` through the real entry point."""

import json

import pytest

from edgevision.bundle import Bundle
from edgevision.cli.app import main
from edgevision.compile.sensitivity import union
from tests.compile.conftest import write_images


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch):
    # rich wraps at 80 columns when not on a terminal; messages are matched on one line.
    monkeypatch.setenv("COLUMNS", "400")


def _run(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def _ok(args, capsys):
    try:
        main(args)
    except SystemExit as exc:  # typer exits 0 explicitly on success in some versions
        assert exc.code in (0, None), capsys.readouterr()
    return capsys.readouterr().out


def test_build_then_inspect(run_dir, data_dir, tmp_path, capsys):
    calib = tmp_path / "calib"
    write_images(calib, 16, seed=4)
    (calib / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    args = ["build", str(run_dir), "--out", str(tmp_path / "b"), "--calib", str(calib)]
    # an explicit --method overrides the classifier's default (percentile)
    args += ["--calib-size", "16", "--method", "minmax", "--targets", "cpu"]
    args += ["--exporter", "legacy", "--threads", "1", "--cache-dir", str(tmp_path / "cache")]
    out = _ok(args, capsys)
    assert "export check on 16 images: max abs diff" in out
    assert "skipped 1 unreadable calibration image" in out
    assert "int8-cpu" in out and "model.int8.cpu.onnx" in out
    bundle = Bundle.open(tmp_path / "b")
    assert set(bundle.artifacts) == {"fp32", "int8-cpu"}
    assert bundle.manifest["calibration"]["method"] == "minmax"
    shown = _ok(["inspect", str(tmp_path / "b")], capsys)
    assert "verified: all 6 files match" in shown and "minmax" in shown
    as_json = _ok(["inspect", str(tmp_path / "b"), "--json"], capsys)
    assert json.loads(as_json[: as_json.rindex("}") + 1])["schema_version"] == 1


def test_inspect_refuses_tampered_missing_and_unknown(bundle_copy, capsys):
    (bundle_copy / "model.int8.cpu.onnx").write_bytes(b"tampered")
    code, _, err = _run(["inspect", str(bundle_copy)], capsys)
    assert code == 2 and "model.int8.cpu.onnx does not match its SHA-256" in err
    (bundle_copy / "calibration.json").unlink()
    (bundle_copy / "model.int8.cpu.onnx").unlink()
    code, _, err = _run(["inspect", str(bundle_copy)], capsys)
    assert code == 2 and "is missing" in err
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest | {"schema_version": 99}))
    code, _, err = _run(["inspect", str(bundle_copy)], capsys)
    assert code == 2 and "schema_version 99" in err


def test_build_errors_exit_2_without_traceback(run_dir, built, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = _run(
        ["build", str(run_dir), "--out", str(tmp_path / "x"), "--calib", str(tmp_path / "empty")],
        capsys,
    )
    assert code == 2 and "has no images" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()
    code, _, err = _run(["build", str(run_dir)], capsys)
    assert code == 2 and "no --out" in err
    code, _, err = _run(["build", str(built.out)], capsys)
    assert code == 2 and "already a bundle" in err and "edgevision engine" in err
    code, _, err = _run(["build", str(run_dir), "--target", "tensorrt"], capsys)
    assert code == 2 and "is not one" in err


def test_out_that_is_a_file_or_a_foreign_folder_is_refused(run_dir, tmp_path, capsys):
    (tmp_path / "f.onnx").write_bytes(b"mine")
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "ch1.tex").write_text("mine")
    for out, message in (("f.onnx", "is not a folder"), ("thesis", "not an edgevision bundle")):
        code, _, err = _run(["build", str(run_dir), "--out", str(tmp_path / out)], capsys)
        assert code == 2 and message in " ".join(err.split()) and "Traceback" not in err
    assert (tmp_path / "f.onnx").read_bytes() == b"mine"
    assert (tmp_path / "thesis" / "ch1.tex").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.onnx", "thesis"]


@pytest.mark.slow
def test_sigterm_during_build_leaves_no_temp_folder(spec, data_dir, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from tests.helpers import tiny_classifier_onnx

    model = tiny_classifier_onnx(tmp_path / "m.onnx", size=spec.input_size)
    spec_file = spec.save(tmp_path / "spec.json")
    temp = tmp_path / "tmp"
    temp.mkdir()
    argv = ["build", str(model), "--spec", str(spec_file), "--out", str(tmp_path / "b")]
    argv += ["--calib", str(data_dir), "--calib-size", "16", "--targets", "cpu", "--no-advise"]
    # Calibration is made to hang, so the signal always lands mid-build.
    code = (
        "import sys, time\n"
        "import edgevision.compile.pipeline as p\n"
        "def hang(*a, **k):\n"
        "    print('calibrating', flush=True)\n"
        "    time.sleep(120)\n"
        "p.calibrate = hang\n"
        "from edgevision.cli.app import main\n"
        "main(sys.argv[1:])\n"
    )
    env = os.environ | {"TMPDIR": str(temp)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout.readline() == b"calibrating\n"  # mid-build, every import done
    assert list(temp.glob("ev-build-*/model.fp32.onnx")), "the build's temp folder is not there"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode in (1, 130) and b"Traceback" not in err  # click: Aborted!, or ours
    left = [p.name for p in temp.iterdir() if p.name != ".ses"]  # ORT's import writes .ses
    assert left == [] and not (tmp_path / "b").exists()


def test_exclude_options_reach_the_artifacts(fp32_onnx, spec, data_dir, tmp_path, capsys):
    import onnx

    spec_file = spec.save(tmp_path / "spec.json")
    base = ["build", str(fp32_onnx), "--spec", str(spec_file), "--calib", str(data_dir)]
    base += ["--calib-size", "16", "--targets", "cpu", "--threads", "1", "--no-advise"]
    out = _ok([*base, "--out", str(tmp_path / "b"), "--exclude-op-types", "Gemm"], capsys)
    assert "deploy cpu:" in out
    bundle = Bundle.open(tmp_path / "b")
    gemm = [n for n in onnx.load(str(fp32_onnx)).graph.node if n.op_type == "Gemm"]
    # the excluded Gemm, then any layer the deploy step measured faster in float (timing: noisy)
    speed = bundle.manifest["deploy"]["cpu"]["float_nodes_for_speed"]
    expected = list(union([gemm[0].name], speed))
    assert bundle.manifest["artifacts"]["int8-cpu"]["float_nodes"] == expected
    code, _, err = _run([*base, "--out", str(tmp_path / "c"), "--exclude-op-types", "LSTM"], capsys)
    assert code == 2 and "has no node of that type" in err and "Conv" in err
    code, _, err = _run([*base, "--out", str(tmp_path / "d"), "--exclude-nodes", "nope"], capsys)
    assert code == 2 and "['nope'] are not nodes of" in " ".join(err.split())


def test_a_target_that_fails_its_check_names_itself_and_the_fix(
    fp32_onnx, spec, data_dir, monkeypatch, tmp_path
):
    import edgevision.compile.pipeline as pipeline
    from edgevision.compile import build_bundle
    from edgevision.compile.pipeline import BuildConfig
    from edgevision.errors import BuildError

    def broken(prep, ranges, name, out, nodes):
        if name == "tensorrt":
            raise BuildError("the tensorrt INT8 model fails its checks (1):\n  - bias is quantized")
        return real(prep, ranges, name, out, nodes)

    real = pipeline.quantize_for_target
    monkeypatch.setattr(pipeline, "quantize_for_target", broken)
    spec_file = spec.save(tmp_path / "spec.json")
    config = BuildConfig(
        input=fp32_onnx, out=tmp_path / "x", spec=spec_file, calib=str(data_dir), calib_size=16
    )
    with pytest.raises(BuildError, match="^target tensorrt: the tensorrt INT8") as info:
        build_bundle(config)
    assert "--targets cpu" in info.value.fix and "--exclude-nodes" in info.value.fix
