"""PointRend point sampling, as the mask losses and the matcher use it (SPEC §5.3).

Points are (x, y) in [0, 1]^2 over the whole map, so the same point reads a prediction at 1/4 resolution and a
target at full resolution without resizing either (`grid_sample`, `align_corners=False`).

Randomness comes from a `PointSource`, asked once per use for *all* decoder layers at once (the leading
dimension of every request is the layer), so that a test can replay the exact points another implementation
drew: `RandomPoints` draws them (from a `torch.Generator` if given), `ReplayPoints` hands back given ones.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

OVERSAMPLE_RATIO = 3            # candidates drawn per point kept
IMPORTANCE_SAMPLE_RATIO = 0.75  # share of the kept points chosen by uncertainty; the rest are uniform


class PointSource(Protocol):
    """Uniform random points in [0, 1): `source(name, shape, dtype, device)` -> a tensor of `shape`.

    `name` says which use the points are for ("match", "instance.candidates", ...), so that a replaying
    source can look them up; shape is (L, ..., 2) with L the number of decoder layers.
    """

    def __call__(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor: ...


class RandomPoints:
    """Fresh uniform points, from `generator` (on the points' device) or torch's global RNG."""

    def __init__(self, generator: torch.Generator | None = None) -> None:
        self.generator = generator

    def __call__(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
        return torch.rand(shape, generator=self.generator, dtype=dtype, device=device)


class ReplayPoints:
    """Given points, by name (each of the shape the losses ask for); for tests against another implementation."""

    def __init__(self, points: Mapping[str, Tensor]) -> None:
        self.points = dict(points)

    def __call__(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> Tensor:
        if name not in self.points:
            raise KeyError(f"no replayed points named {name!r} (have {sorted(self.points)})")
        points = self.points[name]
        if tuple(points.shape) != tuple(shape):
            raise ValueError(f"replayed points {name!r} have shape {tuple(points.shape)}, the loss asks for {shape}")
        return points.to(dtype=dtype, device=device)


def point_sample(values: Tensor, points: Tensor, mode: str = "bilinear") -> Tensor:
    """Read `values` at normalised points.

    values: (N, C, H, W); points: (N, P, 2) or (N, A, P, 2) as (x, y) in [0, 1]
    returns (N, C, P) or (N, C, A, P); outside the map reads zero (grid_sample's zero padding).
    """
    flat = points.dim() == 3
    grid = 2.0 * points - 1.0
    out = F.grid_sample(values, grid[:, :, None] if flat else grid, mode=mode, align_corners=False)
    return out[..., 0] if flat else out


def num_uncertain_points(num_points: int) -> int:
    """How many of `num_points` are chosen by uncertainty (PointRend's int() rounding)."""
    return int(IMPORTANCE_SAMPLE_RATIO * num_points)


def candidate_shape(num_points: int) -> tuple[int, int]:
    """(candidates drawn, uniform points added) per mask for `num_points` points."""
    return int(num_points * OVERSAMPLE_RATIO), num_points - num_uncertain_points(num_points)


def most_uncertain_points(candidates: Tensor, uncertainty: Tensor, uniform: Tensor, num_points: int) -> Tensor:
    """PointRend's importance sampling: the most uncertain candidates, then the uniform points.

    candidates: (N, 3P, 2) uniform points; uncertainty: (N, 3P) at those points (higher = less certain);
    uniform: (N, P - int(0.75 P), 2). Returns (N, P, 2).
    """
    top = uncertainty.topk(num_uncertain_points(num_points), dim=1).indices
    chosen = candidates.gather(1, top[..., None].expand(-1, -1, 2))
    return torch.cat([chosen, uniform], dim=1)


def draw_uncertain_points(
    source: PointSource, name: str, leading: tuple[int, ...], num_points: int, dtype: torch.dtype,
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """Candidates (*leading, 3P, 2) and uniform extras (*leading, P - int(0.75 P), 2) from `source`, named
    `name + ".candidates"` and `name + ".uniform"`."""
    num_candidates, num_uniform = candidate_shape(num_points)
    candidates = source(f"{name}.candidates", (*leading, num_candidates, 2), dtype, device)
    uniform = source(f"{name}.uniform", (*leading, num_uniform, 2), dtype, device)
    return candidates, uniform


def binary_uncertainty(logits: Tensor) -> Tensor:
    """-|logit|: highest where a binary mask logit is closest to 0."""
    return -logits.abs()


def multiclass_uncertainty(logits: Tensor) -> Tensor:
    """Second-largest minus largest logit over dim 1 (C >= 2): highest where the top two classes are close.

    logits: (N, C, ...) -> (N, ...)
    """
    # The same two values topk(2) gives (a tied maximum included), from two max reductions: topk along a
    # non-innermost dimension is several times slower on CPU.
    first, where = logits.max(1, keepdim=True)
    second = logits.scatter(1, where, float("-inf")).max(1).values
    return second - first[:, 0]
