"""Pieces shared by the backbones: the `Backbone` interface, frozen batch norm and stochastic depth."""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import torch
from torch import Tensor, nn

from ..grad_checkpointing import GradCheckpointing

FEATURE_STRIDES: Mapping[str, int] = MappingProxyType({"res2": 4, "res3": 8, "res4": 16, "res5": 32})


class Backbone(GradCheckpointing, nn.Module):
    """A per-frame feature extractor returning four feature maps.

    `forward(images)` takes normalised images `(N, 3, H, W)` (any H, W) and returns
    `{"res2": (N, C2, ⌈H/4⌉, ⌈W/4⌉), ..., "res5": (N, C5, ⌈H/32⌉, ⌈W/32⌉)}`, contiguous when the input is,
    channels given by `out_channels`. `set_grad_checkpointing()` checkpoints each block.
    """

    strides: Mapping[str, int] = FEATURE_STRIDES
    out_channels: dict[str, int]


def check_images(images: Tensor) -> None:
    """Raise a ValueError naming `images` unless it is a float `(N, 3, H, W)` batch."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape (N, 3, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be a floating-point tensor, got dtype {images.dtype}")


class FrozenBatchNorm2d(nn.Module):
    """Batch norm with fixed statistics and affine parameters: `y = (x - mean) / sqrt(var + eps) * weight + bias`.

    All four tensors are buffers (as in detectron2), so they take no gradient, are never updated, and appear in the
    state_dict as `weight`, `bias`, `running_mean`, `running_var`. Initialised to the identity map: d2 stores
    `running_var = 1 - eps` so that `var + eps = 1`.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def scale_and_shift(self) -> tuple[Tensor, Tensor]:
        """The affine map this layer applies, per channel: `y = x * scale + shift`, both `(C,)`."""
        scale = self.weight * torch.rsqrt(self.running_var + self.eps)
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, C, H, W) -> (N, C, H, W), computed in x's dtype (so that it stays bf16 under autocast)."""
        scale, shift = self.scale_and_shift()
        return x * scale.to(x.dtype)[:, None, None] + shift.to(x.dtype)[:, None, None]

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a residual branch for a random subset of samples, scaling the rest by
    `1 / (1 - drop_prob)` so that the expectation is unchanged. The identity in eval mode or when `drop_prob == 0`."""

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, ...) -> (N, ...); one keep/drop draw per sample (along dim 0)."""
        if not self.training or self.drop_prob == 0.0:
            return x
        keep_prob = 1.0 - self.drop_prob
        keep = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device).bernoulli_(keep_prob)
        return x * keep.div_(keep_prob)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"
