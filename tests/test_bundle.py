import json

import numpy as np
import pytest

from edgevision.backends.ort import OrtRunner
from edgevision.bundle import Bundle
from edgevision.errors import BackendError, BundleError
from tests.helpers import tiny_bundle


def test_open_and_run(tmp_path):
    bundle = Bundle.open(tiny_bundle(tmp_path))
    art = bundle.artifact("fp32")
    assert art.precision == "fp32" and len(art.sha256) == 64
    with OrtRunner.from_bundle(bundle, threads=1) as runner:
        assert runner.name == "ort:fp32"
        out = runner.infer(np.zeros(bundle.spec.input_shape(2), np.float32))
        assert out["logits"].shape == (2, 3)
        assert runner.last_inference_time() > 0
        with pytest.raises(BackendError, match="shape"):
            runner.infer(np.zeros((1, 3, 10, 10), np.float32))
        with pytest.raises(BackendError, match="float32"):
            runner.infer(np.zeros(bundle.spec.input_shape(1), np.float64))
    with pytest.raises(BackendError, match="not active"):
        runner.infer(np.zeros(bundle.spec.input_shape(1), np.float32))


def test_tampered_missing_and_unknown(tmp_path):
    root = tiny_bundle(tmp_path)
    with pytest.raises(BundleError, match="no artifact 'int8-cpu'"):
        Bundle.open(root).artifact("int8-cpu")
    model = root / "model.fp32.onnx"
    model.write_bytes(model.read_bytes() + b"x")
    with pytest.raises(BundleError, match=r"model\.fp32\.onnx does not match"):
        Bundle.open(root)
    model.unlink()
    with pytest.raises(BundleError, match=r"missing model\.fp32\.onnx"):
        Bundle.open(root)
    manifest = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps(manifest | {"schema_version": 7}))
    with pytest.raises(BundleError, match="schema_version 7"):
        Bundle.open(root)
    with pytest.raises(BundleError, match="does not exist"):
        Bundle.open(tmp_path / "nothing")
