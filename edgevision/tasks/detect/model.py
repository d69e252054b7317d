"""The detector: a timm ``features_only`` backbone, a light FPN + PAN neck, an anchor-free head.

The head is FCOS-style and decoupled: per point of the stride 8/16/32 maps, a classification
branch (per-class logits) and a regression branch (distances to the box's four sides, and an
IoU-quality logit that ranks well-localised boxes first). `Detector.forward` returns the raw
per-point outputs the loss needs; `DetectorExport` decodes them in the graph into the two
outputs of the detection contract (`edgevision.tasks.detect.spec`): ``boxes`` [N, K, 4] in
input pixels and ``scores`` [N, K, classes] in [0, 1], for the top ``K`` points by score. No
data-dependent shapes, no NMS in the graph.

Every layer is Conv + BatchNorm + ReLU (fused at export), which quantizes cleanly to INT8.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgevision.errors import EdgeVisionError
from edgevision.train.backbones import FeatureBackbone, adopt_weights, timm_features

STRIDES = (8, 16, 32)
NECK_CHANNELS = 64
HEAD_DEPTH = 2
PRIOR_PROB = 0.01  # initial foreground probability of the class logits (focal-loss practice)


def _conv(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Neck(nn.Module):
    """FPN top-down then PAN bottom-up over three feature maps, ``channels`` wide each."""

    def __init__(self, in_channels: list[int], channels: int = NECK_CHANNELS) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(_conv(c, channels, 1) for c in in_channels)
        self.smooth = nn.ModuleList(_conv(channels, channels) for _ in in_channels[:-1])
        self.down = nn.ModuleList(_conv(channels, channels, 3, 2) for _ in in_channels[:-1])
        self.merge = nn.ModuleList(_conv(channels, channels) for _ in in_channels[:-1])

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        lat = [m(f) for m, f in zip(self.lateral, feats, strict=True)]
        td = [lat[-1]]
        for i in range(len(lat) - 2, -1, -1):
            up = F.interpolate(td[0], size=lat[i].shape[-2:], mode="nearest")
            td.insert(0, self.smooth[i](lat[i] + up))
        out = [td[0]]
        for i in range(1, len(td)):
            out.append(self.merge[i - 1](td[i] + self.down[i - 1](out[-1])))
        return out


class _SharedTower(nn.Module):
    """Conv weights shared across levels, one BatchNorm per level (RTMDet's shared head).

    A BatchNorm shared across levels normalises each level by its own batch statistics while
    training but by one running average of all levels at inference, a mismatch a per-level
    norm does not have; the convs stay shared, so every level still trains the same filters.
    """

    def __init__(self, channels: int, depth: int, levels: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False) for _ in range(depth)
        )
        self.norms = nn.ModuleList(
            nn.ModuleList(nn.BatchNorm2d(channels) for _ in range(depth)) for _ in range(levels)
        )

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        # Checkpoints written before the per-level norms (one ``Sequential`` of Conv+BN+ReLU,
        # keys ``{d}.0.weight`` / ``{d}.1.*``) load exactly: each level gets the shared norm.
        for key in [k for k in state_dict if k.startswith(prefix)]:
            rest = key[len(prefix) :].split(".")
            if len(rest) == 3 and rest[0].isdigit() and rest[1] in ("0", "1"):
                value = state_dict.pop(key)
                if rest[1] == "0":
                    state_dict[f"{prefix}convs.{rest[0]}.{rest[2]}"] = value
                else:
                    for level in range(len(self.norms)):
                        state_dict[f"{prefix}norms.{level}.{rest[0]}.{rest[2]}"] = value
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, x: torch.Tensor, level: int) -> torch.Tensor:
        for conv, norm in zip(self.convs, self.norms[level], strict=True):
            x = F.relu(norm(conv(x)), inplace=True)
        return x


class Head(nn.Module):
    """Shared across levels: a classification tower and a box tower (+ IoU quality)."""

    def __init__(self, num_classes: int, channels: int = NECK_CHANNELS, levels: int = 3) -> None:
        super().__init__()
        self.cls_tower = _SharedTower(channels, HEAD_DEPTH, levels)
        self.box_tower = _SharedTower(channels, HEAD_DEPTH, levels)
        self.cls = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.box = nn.Conv2d(channels, 4, 3, padding=1)
        self.quality = nn.Conv2d(channels, 1, 3, padding=1)
        self.scales = nn.Parameter(torch.ones(levels))  # FCOS's per-level regression scale
        nn.init.normal_(self.cls.weight, std=0.01)
        nn.init.constant_(self.cls.bias, -math.log((1 - PRIOR_PROB) / PRIOR_PROB))
        for conv in (self.box, self.quality):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        cls, box, quality = [], [], []
        for i, f in enumerate(feats):
            c = self.cls_tower(f, i)
            b = self.box_tower(f, i)
            cls.append(self.cls(c).flatten(2))
            box.append((self.box(b) * self.scales[i]).flatten(2))
            quality.append(self.quality(b).flatten(2))
        return (
            torch.cat(cls, 2).transpose(1, 2),  # [N, P, C]
            torch.cat(box, 2).transpose(1, 2),  # [N, P, 4] raw side distances (in strides)
            torch.cat(quality, 2).transpose(1, 2).squeeze(-1),  # [N, P]
        )


def make_points(input_size: tuple[int, int], strides: tuple[int, ...] = STRIDES):
    """Centres (x, y) in input pixels and strides of every head point, level by level."""
    h, w = input_size
    points, point_strides = [], []
    for s in strides:
        fh, fw = math.ceil(h / s), math.ceil(w / s)
        ys, xs = torch.meshgrid(
            (torch.arange(fh, dtype=torch.float32) + 0.5) * s,
            (torch.arange(fw, dtype=torch.float32) + 0.5) * s,
            indexing="ij",
        )
        points.append(torch.stack([xs.flatten(), ys.flatten()], 1))
        point_strides.append(torch.full((fh * fw,), float(s)))
    return torch.cat(points), torch.cat(point_strides)


class Detector(FeatureBackbone, nn.Module):
    """Backbone → neck → head; ``forward`` returns ``(cls_logits, box_raw, quality_logits)``."""

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        input_size: tuple[int, int],
        channels: int = NECK_CHANNELS,
        stages: list[list[str]] | None = None,
    ) -> None:
        super().__init__()
        self._take_backbone(backbone, num_classes, input_size, stages)
        self.neck = Neck(list(backbone.feature_info.channels()), channels)
        self.head = Head(num_classes, channels, len(STRIDES))
        points, strides = make_points(self.input_size)
        self.register_buffer("points", points, persistent=False)
        self.register_buffer("strides", strides, persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.head(self.neck(self.backbone(x)))

    def decode(self, box_raw: torch.Tensor) -> torch.Tensor:
        """Raw side distances → ``xyxy`` boxes in input pixels, clipped to the input."""
        dist = F.softplus(box_raw) * self.strides[None, :, None]
        p = self.points[None]
        boxes = torch.cat([p - dist[..., :2], p + dist[..., 2:]], -1)
        h, w = self.input_size
        limit = boxes.new_tensor([w, h, w, h])
        return torch.minimum(boxes.clamp(min=0), limit)

    def scores(self, cls_logits: torch.Tensor, quality_logits: torch.Tensor) -> torch.Tensor:
        """Per-class confidence: sqrt(P(class) · P(box is well placed))."""
        return torch.sqrt(cls_logits.sigmoid() * quality_logits.sigmoid()[..., None])

    # freeze strategies (edgevision.train.freeze): the head is neck + head
    def get_classifier(self) -> nn.Module:
        return nn.ModuleList([self.neck, self.head])


class DetectorExport(nn.Module):
    """The deployed graph: ``input`` → ``boxes`` [N, K, 4], ``scores`` [N, K, C] (top-K points)."""

    def __init__(self, detector: Detector, candidates: int) -> None:
        super().__init__()
        self.detector = detector
        self.candidates = min(int(candidates), int(detector.points.shape[0]))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.select(self.detector(x))

    def select(self, outputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw outputs of `Detector.forward` → the top-K ``boxes`` and ``scores``."""
        d = self.detector
        cls, box, quality = outputs
        scores = d.scores(cls, quality)
        boxes = d.decode(box)
        _, index = scores.amax(-1).topk(self.candidates, dim=1)
        boxes = boxes.gather(1, index[..., None].expand(-1, -1, 4))
        scores = scores.gather(1, index[..., None].expand(-1, -1, scores.shape[-1]))
        return boxes, scores


def create_detector(
    backbone: str,
    num_classes: int,
    input_size: tuple[int, int],
    weights: Any = "default",
    channels: int = NECK_CHANNELS,
) -> Detector:
    """A `Detector` on a timm backbone, its weights loaded as `create_model` loads them."""
    full, features = timm_features(backbone, weights, "detector", out_indices=(-3, -2, -1))
    reductions = tuple(features.feature_info.reduction())
    if reductions != STRIDES:
        raise EdgeVisionError(
            f"backbone {backbone!r} gives feature maps at strides {list(reductions)}",
            f"use a backbone whose last three stages have strides {list(STRIDES)}",
        )
    stages = adopt_weights(features, full, backbone)
    return Detector(features, num_classes, input_size, channels, stages)
