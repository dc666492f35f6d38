"""Sine position embeddings (DETR style) for 2D maps and (time, height, width) volumes.

Each axis coordinate c (1, 2, ..., n; or, normalised, c / n · 2π) becomes F features
`[sin(c / d_0), cos(c / d_1), sin(c / d_2), ...]` with `d_i = temperature ** (2 · floor(i / 2) / F)`.
The 2D embedding is `cat(y features, x features)` (2F channels); the 3D one adds 2F time features to it.
Everything is computed in float32, whatever the autocast state, as the original does.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

_EPS = 1e-6  # the original's guard in the normalisation c / (n + eps)


def _axis_coordinates(n: int, normalize: bool, device: torch.device | None) -> Tensor:
    """(n,) float32 coordinates 1..n, or with `normalize` 1/n·2π .. 2π (up to the eps)."""
    coords = torch.arange(1, n + 1, dtype=torch.float32, device=device)
    if normalize:
        coords = coords / (coords[-1:] + _EPS) * (2 * math.pi)
    return coords


def _sine_features(coords: Tensor, num_feats: int, temperature: float) -> Tensor:
    """(n,) coordinates -> (n, num_feats) interleaved sin/cos features."""
    index = torch.arange(num_feats, dtype=torch.float32, device=coords.device)
    wavelengths = temperature ** (2 * torch.div(index, 2, rounding_mode="floor") / num_feats)
    angles = coords[:, None] / wavelengths
    return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=-1).flatten(1)


def sine_embedding_2d(
    height: int,
    width: int,
    *,
    num_feats: int = 128,
    normalize: bool,
    temperature: float = 10000.0,
    device: torch.device | str | None = None,
) -> Tensor:
    """Position embedding of an H×W grid: (2·num_feats, H, W), channels [y features, x features].

    The neck and the decoder use `normalize=True`; the object encoder uses raw pixel counts (`normalize=False`).
    """
    device = torch.device(device) if device is not None else None
    pos_y = _sine_features(_axis_coordinates(height, normalize, device), num_feats, temperature)  # (H, F)
    pos_x = _sine_features(_axis_coordinates(width, normalize, device), num_feats, temperature)  # (W, F)
    pos = torch.cat(
        (pos_y[:, None, :].expand(height, width, num_feats), pos_x[None, :, :].expand(height, width, num_feats)), dim=-1
    )
    return pos.permute(2, 0, 1).contiguous()


def sine_embedding_3d(
    frames: int,
    height: int,
    width: int,
    *,
    num_feats: int = 128,
    normalize: bool = True,
    temperature: float = 10000.0,
    device: torch.device | str | None = None,
) -> Tensor:
    """Position embedding of a T×H×W volume: (2·num_feats, T, H, W).

    The 2D embedding of each frame plus 2·num_feats time features of the frame number 1..T (normalised by T,
    so a single frame gets z = 2π).
    """
    device = torch.device(device) if device is not None else None
    pos_yx = sine_embedding_2d(height, width, num_feats=num_feats, normalize=normalize, temperature=temperature,
                               device=device)
    pos_t = _sine_features(_axis_coordinates(frames, normalize, device), 2 * num_feats, temperature)  # (T, 2F)
    return pos_yx[:, None] + pos_t.t()[:, :, None, None]
