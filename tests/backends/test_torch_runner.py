"""The PyTorch reference runner: same Runner contract, lazy torch, found from a bundle."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from edgevision.backends import BACKENDS
from edgevision.backends.ort import OrtRunner
from edgevision.backends.torch import TorchRunner
from edgevision.bundle import Bundle, write_bundle
from edgevision.compile.export import export_onnx
from edgevision.errors import BackendError
from edgevision.fileio import sha256_file
from edgevision.spec import ModelSpec
from edgevision.train.backbones import create_model
from edgevision.train.checkpoint import BEST, save_checkpoint
from tests.helpers import tiny_classifier_onnx

SPEC = ModelSpec(labels=("a", "b", "c"), input_size=(32, 32))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("test_efficientnet", num_classes=3, weights=None).eval()


@pytest.fixture(scope="module")
def run(model, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    save_checkpoint(run / BEST, model, SPEC, "test_efficientnet", {})
    return run


def _x(n=2):
    return np.random.default_rng(0).normal(size=SPEC.input_shape(n)).astype(np.float32)


def test_runs_a_module_like_pytorch(model):
    before = torch.get_num_threads()
    with TorchRunner(model, SPEC, threads=1) as runner:
        assert torch.get_num_threads() == 1
        meta = runner.input_metadata()[0]
        assert meta.name == "input" and meta.shape == (None, 3, 32, 32)
        out = runner.infer(_x(3))["logits"]
        with torch.no_grad():
            want = model(torch.from_numpy(_x(3))).numpy()
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)
        with pytest.raises(BackendError, match="shape"):
            runner.infer(np.zeros((1, 3, 16, 16), np.float32))
        assert runner.last_inference_time() > 0
    assert torch.get_num_threads() == before
    with pytest.raises(BackendError, match="needs the model's ModelSpec"):
        TorchRunner(model)


def test_checkpoint_matches_onnx_runtime_fp32(run, tmp_path):
    with TorchRunner.from_checkpoint(run, threads=1) as runner:
        assert runner.spec == SPEC
        ref = runner.infer(_x())["logits"]
    onnx_path = export_onnx(_load(run), SPEC, tmp_path / "m.onnx", exporter="legacy")
    with OrtRunner(onnx_path, threads=1) as ort_runner:
        got = ort_runner.infer(_x())["logits"]
    assert np.abs(ref - got).max() < 1e-4


def _load(run):
    from edgevision.train.checkpoint import load_checkpoint

    return load_checkpoint(run).model


def _bundle(root, source):
    root.mkdir(parents=True, exist_ok=True)
    onnx_path = tiny_classifier_onnx(root / "m.onnx", size=(32, 32))
    return Bundle.open(
        write_bundle(
            root / "bundle",
            {"model.fp32.onnx": onnx_path},
            SPEC,
            {"fp32": {"file": "model.fp32.onnx", "precision": "fp32", "target": "any"}},
            build={"source": source},
        )
    )


def test_from_bundle_finds_the_source_checkpoint(run, tmp_path):
    ckpt = run / BEST
    source = {"kind": "checkpoint", "path": str(ckpt), "sha256": sha256_file(ckpt)}
    bundle = _bundle(tmp_path, source)
    runner = BACKENDS.get("torch").from_bundle(bundle, threads=1)
    assert isinstance(runner, TorchRunner) and TorchRunner.is_available()
    with runner:
        assert runner.infer(_x())["logits"].shape == (2, 3)
    with pytest.raises(BackendError, match="not artifact 'int8-cpu'"):
        TorchRunner.from_bundle(bundle, artifact="int8-cpu")
    stale = _bundle(tmp_path / "stale", source | {"sha256": "0" * 64})
    with pytest.raises(BackendError, match="changed since bundle"):
        TorchRunner.from_bundle(stale)
    gone = _bundle(tmp_path / "gone", {"kind": "onnx", "path": str(tmp_path / "m.onnx")})
    with pytest.raises(BackendError, match="not built from a checkpoint"):
        TorchRunner.from_bundle(gone)


def test_importing_the_backend_does_not_import_torch():
    code = "import sys, edgevision.backends.torch; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
