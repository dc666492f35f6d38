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


def _per_level(sampling_locations: Tensor, attention_weights: Tensor) -> tuple[Tensor, Tensor]:
    """Grids (L, N * M, P, Lq, 2) in grid_sample's [-1, 1] convention and weights (L, N * M, 1, P, Lq), each
    laid out level-major and contiguous once, so that every level's slice is a contiguous tensor.

    grid_sample on CPU is about 3x slower on a strided per-level view of a (.., L, P, 2) grid than on a
    contiguous one. Points before queries (P, Lq rather than Lq, P) put queries innermost in the samples
    (N * M, D, P, Lq): the weighted sum over P then reduces an outer dimension and broadcasts the weights
    along D, both of which vectorise along Lq, instead of reducing runs of P = 4 elements.
    """
    n, lq, m, num_levels, p, _ = sampling_locations.shape
    grids = (2 * sampling_locations - 1).permute(3, 0, 2, 4, 1, 5).reshape(num_levels, n * m, p, lq, 2)
    weights = attention_weights.permute(3, 0, 2, 4, 1).reshape(num_levels, n * m, 1, p, lq)
    return grids.contiguous(), weights.contiguous()


def _sample(level_map: Tensor, grid: Tensor) -> Tensor:
    """level_map (N * M, D, H, W), grid (N * M, P, Lq, 2) -> samples (N * M, D, P, Lq)."""
    return F.grid_sample(level_map, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def attend(maps: Sequence[Tensor], sampling_locations: Tensor, attention_weights: Tensor) -> Tensor:
    """Weighted bilinear samples of every level, summed: (N, Lq, M * D).

    maps are `level_maps(value, ...)`. Levels are accumulated one at a time, so the largest intermediate
    is one level's samples (N * M, D, P, Lq) rather than all levels stacked.
    """
    n, lq, m = sampling_locations.shape[:3]
    d = maps[0].shape[1]
    grids, weights = _per_level(sampling_locations, attention_weights)
    # In place (no second (N * M, D, P, Lq) buffer) unless autograd records: it needs the samples as they are.
    in_place = not (torch.is_grad_enabled() and any(t.requires_grad for t in (*maps, grids, weights)))
    out = None
    for level, level_map in enumerate(maps):
        samples = _sample(level_map, grids[level])
        weighted = samples.mul_(weights[level]) if in_place else samples * weights[level]
        level_out = weighted.sum(2)  # (N * M, D, Lq)
        if out is None:
            out = level_out
        else:
            out = out.add_(level_out) if in_place else out + level_out
    return out.view(n, m, d, lq).permute(0, 3, 1, 2).contiguous().view(n, lq, m * d)


def attend_backward(
    grad_output: Tensor, maps: Sequence[Tensor], sampling_locations: Tensor, attention_weights: Tensor
) -> tuple[list[Tensor], Tensor, Tensor]:
    """Gradients of `attend` for grad_output (N, Lq, M * D): (per-level map grads, locations, weights).

    Written out with aten's grid_sample backward rather than autograd, because it runs inside a custom
    op's implementation, where autograd does not record. The samples are recomputed here rather than kept
    from the forward: that holds one level's samples of a query chunk at a time instead of all of them.
    """
    n, lq, m, num_levels, p, _ = sampling_locations.shape
    d = maps[0].shape[1]
    grids, weights = _per_level(sampling_locations, attention_weights)
    grad_out = grad_output.view(n, lq, m, d).permute(0, 2, 3, 1).reshape(n * m, d, 1, lq)
    grad_maps = []
    grad_grids = grids.new_empty(grids.shape)  # (L, N * M, P, Lq, 2)
    grad_weights = weights.new_empty(num_levels, n * m, p, lq)
    for level, level_map in enumerate(maps):
        grid = grids[level]
        samples = _sample(level_map, grid)  # (N * M, D, P, Lq)
        torch.sum(samples.mul_(grad_out), dim=1, out=grad_weights[level])
        grad_samples = torch.mul(grad_out, weights[level], out=samples)  # the samples' buffer, reused
        grad_map, grad_grids[level] = torch.ops.aten.grid_sampler_2d_backward(
            grad_samples, level_map, grid, _BILINEAR, _ZEROS, False, [True, True]
        )
        grad_maps.append(grad_map)
    # d grid / d location = 2; back to the (N, Lq, M, L, P, ...) layouts.
    grad_locations = grad_grids.mul_(2).view(num_levels, n, m, p, lq, 2).permute(1, 4, 2, 0, 3, 5)
    grad_weights_t = grad_weights.view(num_levels, n, m, p, lq).permute(1, 4, 2, 0, 3)
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
    n, s, m, d = value.shape
    compute = _compute_dtype(value.dtype)
    maps = level_maps(value.to(compute), level_shapes)
    grad_maps: list[Tensor] | None = None
    grad_locations = sampling_locations.new_empty(sampling_locations.shape)
    grad_weights = attention_weights.new_empty(attention_weights.shape)
    for c in query_chunks(sampling_locations.shape[1], query_chunk):
        chunk_maps, grad_locations[:, c], grad_weights[:, c] = attend_backward(
            grad_output[:, c].to(compute), maps, sampling_locations[:, c].to(compute),
            attention_weights[:, c].to(compute),
        )
        if grad_maps is None:
            grad_maps = chunk_maps
        else:
            for acc, g in zip(grad_maps, chunk_maps):
                acc += g
    # Inverse of level_maps: (N * M, D, H_l, W_l) -> (N, H_l * W_l, M, D), each level copied (and cast) once into
    # its slice of a contiguous gradient, the layout the op's fake promises. The token count is spelled out:
    # view(..., -1) cannot infer it when N or M is 0.
    grad_value = value.new_empty(n, s, m, d)
    start = 0
    for g in grad_maps:
        tokens = g.shape[2] * g.shape[3]
        grad_value[:, start:start + tokens].copy_(g.view(n, m, d, tokens).permute(0, 3, 1, 2))
        start += tokens
    return grad_value, grad_locations, grad_weights
