"""A tiny TarViS for CPU tests: a 4-conv backbone, width 64, few layers. The full-size models are only
built on the meta device (tests/model/test_checkpoint_keys.py) or loaded (tests/model/test_load_model.py)."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from tarvis_fast.model import TarViS, build_tarvis

DATASETS = {"YOUTUBE_VIS": 40, "KITTI_STEP": 19}


class TinyBackbone(nn.Module):
    """res2..res5 at strides 4..32 from one strided conv each."""

    out_channels = {"res2": 16, "res3": 24, "res4": 32, "res5": 40}

    def __init__(self) -> None:
        super().__init__()
        self.res2 = nn.Conv2d(3, 16, 4, stride=4)
        self.res3 = nn.Conv2d(16, 24, 2, stride=2)
        self.res4 = nn.Conv2d(24, 32, 2, stride=2)
        self.res5 = nn.Conv2d(32, 40, 2, stride=2)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        out = {}
        x = images
        for name in ("res2", "res3", "res4", "res5"):
            x = getattr(self, name)(x)
            out[name] = x
        return out


def tiny_model(seed: int = 0, **overrides: Any) -> TarViS:
    torch.manual_seed(seed)
    kwargs: dict[str, Any] = dict(
        semantic_classes=DATASETS, num_instance_queries=10, dim=64, num_heads=4, decoder_layers=3,
        decoder_ffn_dim=96, neck_layers=1, neck_ffn_dim=96, object_encoder_layers=2,
    )
    kwargs.update(overrides)
    return build_tarvis(TinyBackbone(), **kwargs)


def clip(batch: int = 1, frames: int = 2, height: int = 64, width: int = 128, seed: int = 0) -> Tensor:
    """(B, T, 3, H, W) random RGB in 0..255."""
    return torch.rand(batch, frames, 3, height, width, generator=torch.Generator().manual_seed(seed)) * 255


def box_masks(batch: int, boxes: list[tuple[int, int, int, int]], frames: int, height: int, width: int) -> Tensor:
    """(B, N, T_ref, H, W) bool masks, object n the box (y0, x0, y1, x1) in every frame and batch element."""
    masks = torch.zeros(batch, len(boxes), frames, height, width, dtype=torch.bool)
    for n, (y0, x0, y1, x1) in enumerate(boxes):
        masks[:, n, :, y0:y1, x0:x1] = True
    return masks
