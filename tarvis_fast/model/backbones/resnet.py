"""ResNet-18/34/50/101 with frozen batch norm (or GroupNorm), laid out as detectron2's `build_resnet_backbone` builds
it for TarViS.

That configuration (SPEC §2.2, §9): a 64-channel stem (7×7/2 conv, 3×3/2 max-pool), bottleneck blocks with the
stride on the 3×3 conv (STRIDE_IN_1X1=False, the torchvision "v1.5" layout), every norm a FrozenBatchNorm2d and every
conv trainable (FREEZE_AT=0). The state_dict keys are detectron2's (SPEC §8): `stem.conv1.weight`,
`stem.conv1.norm.running_var`, `res3.0.shortcut.norm.weight`, ... so the released TarViS checkpoints load unchanged.

ResNet-18/34 (not used by the released TarViS models; the bundled demo's small model) are detectron2's
`BasicBlock` trunks in the same conventions: two 3×3 convs per block (`conv1` carrying the stride, `conv2`), a
projection `shortcut` where the shape changes, and res2..res5 of 64, 128, 256 and 512 channels.

`norm="GN"` puts a trainable GroupNorm (32 groups, detectron2's `MODEL.RESNETS.NORM: GN`) after every conv instead:
frozen batch norm holds ImageNet statistics, so a trunk trained from scratch with it has no normalisation (and no
bias) at all, which trains far slower. Its state_dict has `norm.{weight,bias}` and no running statistics.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from .layers import Backbone, FrozenBatchNorm2d, check_images

BLOCKS_PER_STAGE: dict[int, tuple[int, int, int, int]] = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3),
                                                          101: (3, 4, 23, 3)}
BASIC_BLOCK_DEPTHS = (18, 34)  # the depths built of BasicBlocks; deeper ones use Bottlenecks
STEM_CHANNELS = 64
NORMS = ("FrozenBN", "GN")  # the norm after each conv: frozen batch norm (the released models) or GroupNorm
GN_GROUPS = 32


class ConvNorm(nn.Conv2d):
    """A bias-free k×k convolution ("same" padding) followed by its norm held at `.norm`, detectron2's
    `Conv2d(..., norm=...)` layout: state_dict keys `weight` and `norm.{weight,bias,running_mean,running_var}`
    (FrozenBN) or `norm.{weight,bias}` (GN)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 norm: str = "FrozenBN") -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        self.norm = FrozenBatchNorm2d(out_channels) if norm == "FrozenBN" else nn.GroupNorm(GN_GROUPS, out_channels)
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, C_in, H, W) -> (N, C_out, H', W')."""
        if not isinstance(self.norm, FrozenBatchNorm2d):
            return self.norm(F.conv2d(x, self.weight, None, self.stride, self.padding))
        # The frozen affine map is folded into the kernel and bias: scaling the (C_out, C_in, k, k) weight is far
        # cheaper than an extra pass over the activation, and the conv weight still receives its gradient.
        scale, shift = self.norm.scale_and_shift()
        weight = self.weight * scale.to(self.weight.dtype)[:, None, None, None]
        return F.conv2d(x, weight, shift.to(self.weight.dtype), self.stride, self.padding)


class Bottleneck(nn.Module):
    """1×1 → 3×3 (carrying the stride) → 1×1 convs plus a shortcut, ReLU after each conv but the last and after the
    sum. The shortcut is a strided 1×1 projection when the block changes shape, else the identity."""

    def __init__(self, in_channels: int, bottleneck_channels: int, out_channels: int, stride: int,
                 norm: str = "FrozenBN") -> None:
        super().__init__()
        needs_projection = in_channels != out_channels or stride != 1
        self.shortcut = ConvNorm(in_channels, out_channels, 1, stride, norm) if needs_projection else None
        self.conv1 = ConvNorm(in_channels, bottleneck_channels, 1, norm=norm)
        self.conv2 = ConvNorm(bottleneck_channels, bottleneck_channels, 3, stride, norm)
        self.conv3 = ConvNorm(bottleneck_channels, out_channels, 1, norm=norm)

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, C_in, H, W) -> (N, C_out, ⌈H/stride⌉, ⌈W/stride⌉)."""
        out = F.relu(self.conv1(x), inplace=True)
        out = F.relu(self.conv2(out), inplace=True)
        out = self.conv3(out)
        out += x if self.shortcut is None else self.shortcut(x)
        return F.relu(out, inplace=True)


class BasicBlock(nn.Module):
    """3×3 (carrying the stride) → 3×3 convs plus a shortcut, ReLU after the first conv and after the sum. The
    shortcut is a strided 1×1 projection when the block changes shape, else the identity."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: str = "FrozenBN") -> None:
        super().__init__()
        needs_projection = in_channels != out_channels or stride != 1
        self.shortcut = ConvNorm(in_channels, out_channels, 1, stride, norm) if needs_projection else None
        self.conv1 = ConvNorm(in_channels, out_channels, 3, stride, norm)
        self.conv2 = ConvNorm(out_channels, out_channels, 3, norm=norm)

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, C_in, H, W) -> (N, C_out, ⌈H/stride⌉, ⌈W/stride⌉)."""
        out = F.relu(self.conv1(x), inplace=True)
        out = self.conv2(out)
        out += x if self.shortcut is None else self.shortcut(x)
        return F.relu(out, inplace=True)


class Stem(nn.Module):
    """7×7 stride-2 conv + norm + ReLU, then 3×3 stride-2 max-pool: stride 4 in total."""

    def __init__(self, out_channels: int, norm: str = "FrozenBN") -> None:
        super().__init__()
        self.conv1 = ConvNorm(3, out_channels, 7, stride=2, norm=norm)

    def forward(self, images: Tensor) -> Tensor:
        """images: (N, 3, H, W) -> (N, C, ⌈H/4⌉, ⌈W/4⌉)."""
        return F.max_pool2d(F.relu(self.conv1(images), inplace=True), kernel_size=3, stride=2, padding=1)


class ResNet(Backbone):
    """ResNet trunk returning res2..res5 (strides 4..32; channels 256, 512, 1024, 2048 with bottleneck blocks, 64,
    128, 256, 512 with basic blocks).

    Args:
        blocks_per_stage: number of blocks in res2..res5, e.g. (3, 4, 6, 3) for ResNet-50 (and ResNet-34).
        basic_blocks: BasicBlocks (ResNet-18/34) instead of Bottlenecks.
        norm: "FrozenBN" (the released models; ImageNet weights) or "GN" (trainable; for training from scratch).
    """

    def __init__(self, blocks_per_stage: Sequence[int], *, basic_blocks: bool = False, norm: str = "FrozenBN") -> None:
        super().__init__()
        if len(blocks_per_stage) != 4 or min(blocks_per_stage) < 1:
            raise ValueError(f"blocks_per_stage must be 4 positive block counts (res2..res5), got {blocks_per_stage}")
        self.norm = norm
        self.stem = Stem(STEM_CHANNELS, norm)
        self.stage_names = list(self.strides)
        self.out_channels = {}
        in_channels = STEM_CHANNELS
        for index, (name, num_blocks) in enumerate(zip(self.stage_names, blocks_per_stage)):
            width = STEM_CHANNELS * 2**index  # a bottleneck's inner width; a basic block's output
            out_channels = width if basic_blocks else 4 * width
            first_stride = 1 if index == 0 else 2  # the stem already reduced by 4 before res2
            blocks = [
                BasicBlock(in_channels if j == 0 else out_channels, out_channels, first_stride if j == 0 else 1, norm)
                if basic_blocks else
                Bottleneck(in_channels if j == 0 else out_channels, width, out_channels, first_stride if j == 0 else 1,
                           norm)
                for j in range(num_blocks)
            ]
            self.add_module(name, nn.Sequential(*blocks))  # keys res2.0..., not stages.0...
            self.out_channels[name] = out_channels
            in_channels = out_channels

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """images: (N, 3, H, W) normalised -> {"res2": (N, 256, ⌈H/4⌉, ⌈W/4⌉), ..., "res5": (N, 2048, ⌈H/32⌉, ⌈W/32⌉)}."""
        check_images(images)
        x = self.stem(images)
        features = {}
        for name in self.stage_names:
            for block in getattr(self, name):
                x = self.run_layer(block, x)
            features[name] = x
        return features


_TORCHVISION_KEY = re.compile(r"layer(?P<stage>[1-4])\.(?P<block>\d+)\.(?P<layer>conv[123]|bn[123]|downsample\.[01])\.(?P<tensor>\w+)")


def resnet_state_dict_from_torchvision(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename a torchvision ResNet-18/34/50/101 state_dict to this module's (detectron2's) names.

    `conv1`/`bn1` -> `stem.conv1`/`stem.conv1.norm`; `layer{i}.{j}.conv{k}` -> `res{i+1}.{j}.conv{k}`;
    `layer{i}.{j}.bn{k}` -> `res{i+1}.{j}.conv{k}.norm`; `downsample.0`/`.1` -> `shortcut`/`shortcut.norm`.
    The classifier `fc.*` and the `num_batches_tracked` counters are dropped. Both use the ImageNet normalisation
    of SPEC §2.1, so the weights need no other change.
    """
    renamed: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith("fc.") or key.endswith("num_batches_tracked"):
            continue
        if key.startswith(("conv1.", "bn1.")):
            layer, tensor = key.split(".", 1)
            renamed[f"stem.conv1.{'norm.' if layer == 'bn1' else ''}{tensor}"] = value
            continue
        match = _TORCHVISION_KEY.fullmatch(key)
        if match is None:
            raise ValueError(f"state_dict: unexpected key {key!r} for a torchvision ResNet")
        layer = match["layer"]
        if layer.startswith("bn"):
            layer = f"conv{layer[2]}.norm"
        elif layer.startswith("downsample"):
            layer = "shortcut" if layer.endswith("0") else "shortcut.norm"
        renamed[f"res{int(match['stage']) + 1}.{match['block']}.{layer}.{match['tensor']}"] = value
    return renamed
