"""The segmenter: logits and class-map shapes, the exported graphs in ONNX Runtime, freezing."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from edgevision.errors import EdgeVisionError
from edgevision.spec import ModelSpec
from edgevision.tasks.segment.model import (
    Segmenter,
    SegmenterExport,
    create_segmenter,
    export_module,
    upsample,
)
from edgevision.train.freeze import apply_freeze

SIZE = (48, 64)
LABELS = ("background", "road", "lane_marking")


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    torch.manual_seed(0)
    model = create_segmenter("test_efficientnet", len(LABELS), SIZE, weights=None).eval()
    with torch.no_grad():  # random BatchNorm statistics, so the logits are not all alike
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model


def _spec(output: str = "logits", size: tuple[int, int] = SIZE) -> ModelSpec:
    return ModelSpec(
        labels=LABELS, task="segmentation", input_size=size, segmentation={"output": output}
    )


def test_logits_are_at_stride_8_and_the_class_map_at_the_input(segmenter):
    x = torch.randn(2, 3, *SIZE)
    logits = segmenter(x)
    assert logits.shape == (2, len(LABELS), 6, 8) and logits.dtype == torch.float32
    assert export_module(segmenter, _spec("logits"))(x).shape == logits.shape
    classes = export_module(segmenter, _spec("classmap"))(x)
    assert classes.shape == (2, *SIZE) and classes.dtype == torch.uint8
    expected = upsample(logits, SIZE).argmax(1).to(torch.uint8)
    assert torch.equal(classes, expected)
    assert int(classes.max()) < len(LABELS)


def test_sizes_that_do_not_divide_by_16_still_give_one_logit_per_8_pixels():
    model = create_segmenter("test_efficientnet", 2, (44, 60), weights=None).eval()
    assert model(torch.zeros(1, 3, 44, 60)).shape == (1, 2, 6, 8)  # ceil(44/8), ceil(60/8)
    classes = export_module(model, _spec("classmap", (44, 60)))(torch.zeros(1, 3, 44, 60))
    assert classes.shape == (1, 44, 60)


def test_export_module_rewraps_for_another_output_and_refuses_other_models(segmenter):
    logits = export_module(segmenter, _spec("logits"))
    assert isinstance(logits, SegmenterExport) and export_module(logits, _spec("logits")) is logits
    classmap = export_module(logits, _spec("classmap"))
    assert classmap.output == "classmap" and classmap.segmenter is segmenter
    with pytest.raises(EdgeVisionError, match="cannot export"):
        export_module(torch.nn.Conv2d(3, 3, 1), _spec())


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy (TorchScript) exporter
@pytest.mark.parametrize("output", ["logits", "classmap"])
def test_onnx_export_runs_in_onnxruntime_like_pytorch(segmenter, output, tmp_path):
    spec = _spec(output)
    graph = export_module(segmenter, spec).eval()
    name = spec.segmentation.output_name
    path = tmp_path / f"{output}.onnx"
    torch.onnx.export(
        graph,
        (torch.zeros(2, 3, *SIZE),),
        str(path),
        dynamo=False,
        input_names=["input"],
        output_names=[name],
        dynamic_axes={"input": {0: "batch"}, name: {0: "batch"}},
        opset_version=17,
        do_constant_folding=True,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == [name]
    x = torch.randn(3, 3, *SIZE, generator=torch.Generator().manual_seed(1))
    got = session.run(None, {"input": x.numpy()})[0]
    ref = graph(x).numpy()
    assert got.shape == ref.shape and got.dtype == ref.dtype
    if output == "logits":
        assert got.shape == (3, len(LABELS), 6, 8)
        np.testing.assert_allclose(got, ref, atol=1e-4)
    else:
        assert got.shape == (3, *SIZE) and got.dtype == np.uint8
        assert np.mean(got == ref) >= 0.999  # only a near-tie pixel may flip


def test_freeze_head_trains_only_the_lraspp_head():
    model = create_segmenter("test_efficientnet", 2, SIZE, weights=None)
    trainable, total = apply_freeze(model, "head")
    head = sum(p.numel() for p in model.head.parameters())
    assert trainable == head < total
    stages = model.freeze_stages()
    assert len(stages) >= 2 and all(n.startswith("backbone.") for g in stages for n in g)
    params = dict(model.named_parameters())
    trainable, _ = apply_freeze(model, "last:1")
    assert trainable == head + sum(params[n].numel() for n in stages[-1])


def test_default_backbone_takes_the_shipped_imagenet_weights_and_stops_at_stride_16():
    from edgevision.train.backbones import create_model

    model = create_segmenter("efficientnet_lite0", 4, (240, 320))  # weights="default"
    full = create_model("efficientnet_lite0", 1, "default").state_dict()
    own = model.backbone.state_dict()
    assert all(torch.equal(own[k], full[k]) for k in own)
    assert model.backbone.feature_info.reduction() == [8, 16]
    assert model.head.cbr[0].out_channels == 128  # LR-ASPP's inter channels
    assert len(model.backbone.blocks) == 5  # the stride-32 blocks are not run
    assert sum(p.numel() for p in model.parameters()) < 1_000_000


def test_a_backbone_without_stride_8_features_is_refused():
    with pytest.raises(EdgeVisionError, match="strides"):
        create_segmenter("test_vit", 2, (32, 32), weights=None)
