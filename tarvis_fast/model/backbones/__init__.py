"""Per-frame backbones: ResNet-18/34/50/101 with frozen batch norm and Swin-T/S/B/L, each returning res2..res5.

`build_backbone(name)` takes the original's config names. In the TarViS model the backbone sits at
`backbone.backbone`, and its state_dict keys equal the original's (SPEC §8), so released checkpoints load strictly.
`load_imagenet_weights` starts training from torchvision ResNet or official Swin ImageNet weights instead.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from .layers import Backbone
from .resnet import BASIC_BLOCK_DEPTHS, BLOCKS_PER_STAGE, ResNet, resnet_state_dict_from_torchvision
from .swin import SwinTransformer, swin_state_dict_from_official

__all__ = ["BACKBONE_NAMES", "Backbone", "ResNet", "SwinTransformer", "build_backbone", "load_imagenet_weights",
           "resnet_state_dict_from_torchvision", "swin_state_dict_from_official"]

# ResNet18/34 are not the original's (it builds only); they make the bundled demo's small model.
_RESNET_DEPTHS = {"ResNet18": 18, "ResNet34": 34, "ResNet50": 50, "ResNet101": 101}
# The original's hyper-parameters (its backbone/build_swin.py); all use 4×4 patches, MLP ratio 4 and qkv biases.
_SWIN_VARIANTS: dict[str, dict[str, Any]] = {
    "SwinTiny": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window=7),
    "SwinSmall": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), window=7),
    "SwinBase": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), window=12),
    "SwinLarge": dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48), window=12),
}
BACKBONE_NAMES: tuple[str, ...] = (*_RESNET_DEPTHS, *_SWIN_VARIANTS)

# Tensors that ImageNet checkpoints lack: Swin's per-stage output norms (left at their initialisation, as in the
# original) and the derived relative position indices (rebuilt by the module itself).
_NOT_IN_IMAGENET_CHECKPOINTS = re.compile(r"norm[0-3]\.(weight|bias)|.*\.relative_position_index")


def build_backbone(name: str, *, drop_path_rate: float = 0.3, resnet_norm: str = "FrozenBN") -> Backbone:
    """Build one of `BACKBONE_NAMES` with random weights.

    Args:
        name: "ResNet18", "ResNet34", "ResNet50", "ResNet101", "SwinTiny", "SwinSmall", "SwinBase" or "SwinLarge".
        drop_path_rate: stochastic depth of the deepest Swin block (the original uses 0.3); ResNets have none and
            ignore it.
        resnet_norm: a ResNet's norm, "FrozenBN" (the original) or "GN" (`resnet.NORMS`); Swin has LayerNorms and
            takes only the default.
    """
    if name in _RESNET_DEPTHS:
        depth = _RESNET_DEPTHS[name]
        return ResNet(BLOCKS_PER_STAGE[depth], basic_blocks=depth in BASIC_BLOCK_DEPTHS, norm=resnet_norm)
    if name in _SWIN_VARIANTS:
        if resnet_norm != "FrozenBN":
            raise ValueError(f"{name} has its own LayerNorms: resnet_norm={resnet_norm!r} is for ResNets")
        return SwinTransformer(**_SWIN_VARIANTS[name], drop_path_rate=drop_path_rate)
    raise ValueError(f"unknown backbone name {name!r}; choose one of: {', '.join(BACKBONE_NAMES)}")


def load_imagenet_weights(backbone: Backbone, checkpoint: Mapping[str, Any]) -> None:
    """Copy ImageNet weights into `backbone`, in place.

    Args:
        backbone: a `ResNet` or a `SwinTransformer`.
        checkpoint: for a ResNet, a torchvision ResNet state_dict (see `resnet_state_dict_from_torchvision`); for Swin,
            an official Swin checkpoint or state_dict (see `swin_state_dict_from_official`).

    Raises ValueError, before changing anything, if the checkpoint lacks a tensor the backbone needs (other than
    Swin's per-stage norms) or holds one it does not have; a tensor of the wrong shape raises from `load_state_dict`.
    """
    state_dict: dict[str, Tensor]
    if isinstance(backbone, ResNet) and backbone.norm != "FrozenBN":
        raise ValueError(f"ImageNet weights hold batch-norm statistics for a FrozenBN ResNet; this one has "
                         f"norm={backbone.norm!r} and trains from scratch")
    if isinstance(backbone, ResNet):
        state_dict = resnet_state_dict_from_torchvision(checkpoint)
    elif isinstance(backbone, SwinTransformer):
        state_dict = swin_state_dict_from_official(checkpoint)
    else:
        raise TypeError(f"backbone must be a ResNet or a SwinTransformer, got {type(backbone).__name__}")
    expected = set(backbone.state_dict())
    missing = sorted(key for key in expected - set(state_dict) if not _NOT_IN_IMAGENET_CHECKPOINTS.fullmatch(key))
    unexpected = sorted(set(state_dict) - expected)
    if missing or unexpected:
        raise ValueError(f"checkpoint does not fit {type(backbone).__name__}: {len(missing)} missing tensors "
                         f"{missing[:5]}, {len(unexpected)} unexpected tensors {unexpected[:5]}")
    backbone.load_state_dict(state_dict, strict=False)
