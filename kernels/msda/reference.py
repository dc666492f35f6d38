"""The PyTorch path of multi-scale deformable attention: one `grid_sample` per level.

It is the reference the Triton kernels are tested against, the CPU implementation, and the baseline of the
GPU benchmark. Shapes, with N batch, S = sum of H_l * W_l value tokens, M heads, D channels per head,
Lq queries, L levels and P points per level:

    value               (N, S, M, D)
    level_shapes        L pairs (H_l, W_l), the levels laid out one after another along S
    sampling_locations  (N, Lq, M, L, P, 2)  normalised (x, y); 0 and 1 are the outer edges of the map
    attention_weights   (N, Lq, M, L, P)
    output              (N, Lq, M * D)

Sampling is `grid_sample(mode="bilinear", padding_mode="zeros", align_corners=False)`: a location x maps
to the pixel coordinate x * W_l - 0.5, and corners outside the map contribute zero.

fp16/bf16 inputs are computed in fp32 and the results rounded back once: grid_sample run in bf16 places
its samples a fraction of a pixel off (the grid coordinates themselves are rounded to 8 bits), which
makes the location gradients wrong where a sample lands in the neighbouring pixel.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

LevelShapes = Sequence[tuple[int, int]]

# aten.grid_sampler_2d_backward's integer codes for mode="bilinear" and padding_mode="zeros".
_BILINEAR, _ZEROS = 0, 0


def sampling_dtypes(value_dtype: torch.dtype) -> tuple[torch.dtype, ...]:
    """The op's input contract, shared by both paths: the dtypes sampling_locations and attention_weights may have
    next to a value of value_dtype (low-precision values may come with fp32 locations and weights)."""
    if value_dtype in (torch.float16, torch.bfloat16):
        return (value_dtype, torch.float32)
    return (value_dtype,)


def level_maps(value: Tensor, level_shapes: LevelShapes) -> list[Tensor]:
    """Split value (N, S, M, D) into per-level images (N * M, D, H_l, W_l), the layout grid_sample reads."""
    n, _, m, d = value.shape
    sizes = [h * w for h, w in level_shapes]
    return [
        v.permute(0, 2, 3, 1).reshape(n * m, d, h, w)
        for v, (h, w) in zip(value.split(sizes, dim=1), level_shapes)
    ]


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def _per_head(sampling_locations: Tensor, attention_weights: Tensor) -> tuple[Tensor, Tensor]:
    """Grids (N * M, Lq, L, P, 2) in grid_sample's [-1, 1] convention, and weights (N * M, 1, Lq, L, P)."""
    n, lq, m, num_levels, p, _ = sampling_locations.shape
    grids = (2 * sampling_locations - 1).transpose(1, 2).reshape(n * m, lq, num_levels, p, 2)
    weights = attention_weights.transpose(1, 2).reshape(n * m, 1, lq, num_levels, p)
    return grids, weights


def _sample(level_map: Tensor, grid: Tensor) -> Tensor:
    """level_map (N * M, D, H, W), grid (N * M, Lq, P, 2) -> samples (N * M, D, Lq, P)."""
    return F.grid_sample(level_map, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def attend(maps: Sequence[Tensor], sampling_locations: Tensor, attention_weights: Tensor) -> Tensor:
    """Weighted bilinear samples of every level, summed: (N, Lq, M * D).

    maps are `level_maps(value, ...)`. Levels are accumulated one at a time, so the largest intermediate
    is one level's samples (N * M, D, Lq, P) rather than all levels stacked.
    """
    n, lq, m = sampling_locations.shape[:3]
    d = maps[0].shape[1]
    grids, weights = _per_head(sampling_locations, attention_weights)
    out = None
    for level, level_map in enumerate(maps):
        level_out = (_sample(level_map, grids[:, :, level]) * weights[..., level, :]).sum(-1)  # (N * M, D, Lq)
        out = level_out if out is None else out + level_out
    return out.view(n, m, d, lq).permute(0, 3, 1, 2).contiguous().view(n, lq, m * d)


def attend_backward(
    grad_output: Tensor, maps: Sequence[Tensor], sampling_locations: Tensor, attention_weights: Tensor
) -> tuple[list[Tensor], Tensor, Tensor]:
    """Gradients of `attend` for grad_output (N, Lq, M * D): (per-level map grads, locations, weights).

    Written out with aten's grid_sample backward rather than autograd, because it runs inside a custom
    op's implementation, where autograd does not record.
    """
    n, lq, m, num_levels, p, _ = sampling_locations.shape
    d = maps[0].shape[1]
    grids, weights = _per_head(sampling_locations, attention_weights)
    grad_out = grad_output.view(n, lq, m, d).permute(0, 2, 3, 1).reshape(n * m, d, lq, 1)
    grad_maps, grad_grids, grad_weights = [], [], []
    for level, level_map in enumerate(maps):
        grid = grids[:, :, level]
        grad_weights.append((grad_out * _sample(level_map, grid)).sum(1))  # (N * M, Lq, P)
        grad_samples = grad_out * weights[..., level, :]  # (N * M, D, Lq, P)
        grad_map, grad_grid = torch.ops.aten.grid_sampler_2d_backward(
            grad_samples, level_map, grid, _BILINEAR, _ZEROS, False, [True, True]
        )
        grad_maps.append(grad_map)
        grad_grids.append(grad_grid)  # (N * M, Lq, P, 2)
    # d grid / d location = 2; back to the (N, Lq, M, L, P, ...) layouts.
    grad_locations = 2 * torch.stack(grad_grids, dim=2).view(n, m, lq, num_levels, p, 2).transpose(1, 2)
    grad_weights_t = torch.stack(grad_weights, dim=2).view(n, m, lq, num_levels, p).transpose(1, 2)
    return grad_maps, grad_locations, grad_weights_t


def query_chunks(num_queries: int, chunk: int | None) -> list[slice]:
    """Slices of at most `chunk` queries covering range(num_queries); one slice when chunk is None."""
    if chunk is None or chunk >= num_queries:
        return [slice(0, num_queries)]
    if chunk < 1:
        raise ValueError(f"query_chunk must be at least 1, got {chunk}")
    return [slice(start, min(start + chunk, num_queries)) for start in range(0, num_queries, chunk)]


def ms_deform_attn_torch(
    value: Tensor,
    level_shapes: LevelShapes,
    sampling_locations: Tensor,
    attention_weights: Tensor,
    *,
    query_chunk: int | None = None,
) -> Tensor:
    """Multi-scale deformable attention with PyTorch ops (differentiable by autograd, any floating dtype).

    Shapes as in the module docstring. `query_chunk` processes at most that many queries at a time, which
    bounds the peak memory of a forward without autograd (under autograd every chunk's samples are kept
    for the backward; `ms_deform_attn_torch_backward` recomputes them chunk by chunk instead).
    The caller checks the inputs (see `op.ms_deform_attn`).
    """
    compute = _compute_dtype(value.dtype)
    maps = level_maps(value.to(compute), level_shapes)
    sampling_locations, attention_weights = sampling_locations.to(compute), attention_weights.to(compute)
    chunks = query_chunks(sampling_locations.shape[1], query_chunk)
    outs = [attend(maps, sampling_locations[:, c], attention_weights[:, c]).to(value.dtype) for c in chunks]
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)


def ms_deform_attn_torch_backward(
    grad_output: Tensor,
    value: Tensor,
    level_shapes: LevelShapes,
    sampling_locations: Tensor,
    attention_weights: Tensor,
    *,
    query_chunk: int | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients (value, sampling_locations, attention_weights) of `ms_deform_attn_torch`.

    grad_output (N, Lq, M * D). The samples are recomputed one query chunk at a time, so the memory held
    at once is one chunk's, whatever Lq is.
    """
    n, _, m, d = value.shape
    compute = _compute_dtype(value.dtype)
    maps = level_maps(value.to(compute), level_shapes)
    grad_maps = [torch.zeros_like(level_map) for level_map in maps]
    grad_locations = sampling_locations.new_empty(sampling_locations.shape)
    grad_weights = attention_weights.new_empty(attention_weights.shape)
    for c in query_chunks(sampling_locations.shape[1], query_chunk):
        chunk_maps, grad_locations[:, c], grad_weights[:, c] = attend_backward(
            grad_output[:, c].to(compute), maps, sampling_locations[:, c].to(compute),
            attention_weights[:, c].to(compute),
        )
        for acc, g in zip(grad_maps, chunk_maps):
            acc += g
    # Inverse of level_maps: (N * M, D, H_l, W_l) -> (N, H_l * W_l, M, D), levels concatenated along S.
    # cat keeps the permuted inputs' strides; the op's fake promises a contiguous gradient, so make it one.
    # The token count is spelled out: view(..., -1) cannot infer it when N or M is 0.
    grad_value = torch.cat([g.view(n, m, d, g.shape[2] * g.shape[3]).permute(0, 3, 1, 2) for g in grad_maps], dim=1)
    grad_value = grad_value.to(value.dtype).contiguous()
    return grad_value, grad_locations, grad_weights
