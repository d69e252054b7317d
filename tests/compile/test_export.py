import numpy as np
import onnx
import pytest
import torch

from edgevision.backends.ort import OrtRunner
from edgevision.compile.export import check_export, export_onnx
from edgevision.errors import BuildError, RegistryError
from edgevision.train.backbones import create_model
from tests.compile.conftest import BACKBONE


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model(BACKBONE, num_classes=3, weights=None).eval()


@pytest.fixture(scope="module")
def images(spec):
    return np.random.default_rng(0).normal(size=(6, *spec.input_shape(1)[1:])).astype(np.float32)


def test_legacy_export_names_dynamic_batch_and_check(model, spec, images, tmp_path):
    path = export_onnx(model, spec, tmp_path / "m.onnx", exporter="legacy")
    graph = onnx.load(path).graph
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == [
        "logits"
    ]
    assert next(o.version for o in onnx.load(path).opset_import if o.domain == "") >= 17
    with OrtRunner(path, threads=1) as runner:
        assert runner.infer(images[:5])["logits"].shape == (5, 3)
    check = check_export(model, path, images, threads=1, batch_size=4)
    assert check.ok and check.images == 6 and check.max_abs_diff < 1e-4
    assert check.top1_agreement == 1.0


def test_dynamo_export_is_the_default(built):
    build = built.manifest["build"]
    assert build["exporter"] == "dynamo" and build["opset"] >= 18
    assert built.export_check.ok and built.export_check.images == 16


def test_check_fails_with_both_numbers(model, spec, images, tmp_path):
    torch.manual_seed(1)
    other = create_model(BACKBONE, num_classes=3, weights=None).eval()
    path = export_onnx(other, spec, tmp_path / "other.onnx", exporter="legacy")
    with pytest.raises(BuildError, match=r"max abs diff \S+ \(tolerance 0.001\), top-1 agreement"):
        check_export(model, path, images, threads=1)
    with pytest.raises(BuildError, match="no images"):
        check_export(model, path, images[:0])


class Broken(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow torch.export cannot trace
            return x.mean(dim=(2, 3))
        return x.amax(dim=(2, 3))


def test_exporter_failure_and_unknown_exporter(spec, tmp_path):
    with pytest.raises(BuildError, match="export with the dynamo exporter failed"):
        export_onnx(Broken(), spec, tmp_path / "b.onnx", exporter="dynamo")
    with pytest.raises(RegistryError, match="dynamo, legacy"):
        export_onnx(Broken(), spec, tmp_path / "b.onnx", exporter="tf")
