"""`ms_deform_attn`: input checks, backend choice and the custom op `tarvis_fast::ms_deform_attn`.

Both backends run inside one `torch.library.custom_op` (with a fake and an autograd registration and a
second custom op for the backward), so that `torch.compile(fullgraph=True)` traces a module that calls
`ms_deform_attn` without breaking the graph, and so that the PyTorch path's backward recomputes its samples
chunk by chunk instead of keeping (N, Lq, M, L, P, D) of them alive between forward and backward.
"""
from __future__ import annotations

from types import ModuleType

import torch
from torch import Tensor

from .._common import Backend, check_floating, choose_backend
from .reference import ms_deform_attn_torch, ms_deform_attn_torch_backward, sampling_dtypes

OP = "ms_deform_attn"

# The PyTorch path holds one level's samples of a query chunk at a time, (N * M, D, chunk, P) elements:
# 2**24 of them is 64 MiB in fp32, small against any machine that holds the inputs, and big enough that
# the per-chunk overhead (one grid_sample call per level) stays negligible.
TORCH_CHUNK_ELEMENTS = 2**24


def ms_deform_attn(
    value: Tensor,
    spatial_shapes: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
    *,
    backend: Backend = "auto",
) -> Tensor:
    """Multi-scale deformable attention (Deformable-DETR / Mask2Former / TarViS).

    Args:
        value: (N, S, M, D): N batch, S = sum_l H_l * W_l tokens of all levels, M heads, D channels per head.
        spatial_shapes: int64 (L, 2), (H_l, W_l) of each level.
        level_start_index: int64 (L,), where each level starts along S: [0, cumsum(H_l * W_l)[:-1]].
        sampling_locations: (N, Lq, M, L, P, 2), normalised (x, y); 0 and 1 are the outer edges of a map.
        attention_weights: (N, Lq, M, L, P).
        backend: "triton", "torch", or "auto" (Triton on CUDA, the PyTorch path elsewhere). "triton" on
            CPU tensors needs TRITON_INTERPRET=1 (set before tarvis_fast.kernels is imported). "auto" also
            falls back to the PyTorch path for head sizes D the kernels are not built for.

    Returns:
        (N, Lq, M * D), in the dtype of value. Each sample is exactly `grid_sample(mode="bilinear",
        padding_mode="zeros", align_corners=False)`; the Triton path accumulates in fp32 for fp16/bf16.

    value is fp16, bf16, fp32 or fp64; sampling_locations and attention_weights share value's dtype, or
    are fp32 when value is fp16/bf16 (what autocast produces, and worth keeping: a bf16 location is off
    by up to a third of a pixel on a 104-pixel-wide map). All five tensors are on one device; any
    strides are accepted. The forward reads
    spatial_shapes and level_start_index on the host to check them against S (one small device-to-host
    copy on CUDA, skipped while a CUDA graph is being captured).
    """
    _check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    impl = choose_backend(backend, value, OP, _triton_kernels)
    return torch.ops.tarvis_fast.ms_deform_attn(
        value, spatial_shapes, level_start_index, sampling_locations, attention_weights, impl
    )


def _check_inputs(
    value: Tensor,
    spatial_shapes: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
) -> None:
    """Ranks, sizes, dtypes and devices: everything that can be checked without reading tensor data."""
    if value.dim() != 4:
        raise ValueError(f"{OP}: value must be (N, S, M, D), got shape {tuple(value.shape)}")
    if spatial_shapes.dim() != 2 or spatial_shapes.shape[1] != 2:
        raise ValueError(f"{OP}: spatial_shapes must be (L, 2), got shape {tuple(spatial_shapes.shape)}")
    num_levels = spatial_shapes.shape[0]
    if num_levels == 0:
        raise ValueError(f"{OP}: spatial_shapes must describe at least one level, got shape (0, 2)")
    if level_start_index.shape != (num_levels,):
        raise ValueError(
            f"{OP}: level_start_index must be ({num_levels},) like spatial_shapes' levels, "
            f"got shape {tuple(level_start_index.shape)}"
        )
    for name, t in (("spatial_shapes", spatial_shapes), ("level_start_index", level_start_index)):
        if t.dtype != torch.int64:
            raise TypeError(f"{OP}: {name} must be int64, got {t.dtype}")
    check_floating(OP, value=value)
    check_floating(OP, sampling_locations=sampling_locations, attention_weights=attention_weights)
    if sampling_locations.dtype not in sampling_dtypes(value.dtype):
        raise TypeError(
            f"{OP}: sampling_locations and attention_weights must be {' or '.join(map(str, sampling_dtypes(value.dtype)))} "
            f"with value {value.dtype}, got {sampling_locations.dtype}"
        )
    if sampling_locations.device != value.device:
        raise ValueError(
            f"{OP}: sampling_locations must be on value's device {value.device}, got {sampling_locations.device}"
        )
    for name, t in (("spatial_shapes", spatial_shapes), ("level_start_index", level_start_index)):
        if t.device != value.device:
            raise ValueError(f"{OP}: {name} must be on value's device {value.device}, got {t.device}")

    n, _, m, _ = value.shape
    if sampling_locations.dim() != 6 or sampling_locations.shape[-1] != 2:
        raise ValueError(
            f"{OP}: sampling_locations must be (N, Lq, M, L, P, 2), got shape {tuple(sampling_locations.shape)}"
        )
    loc_n, _, loc_m, loc_levels, _, _ = sampling_locations.shape
    if (loc_n, loc_m, loc_levels) != (n, m, num_levels):
        raise ValueError(
            f"{OP}: sampling_locations {tuple(sampling_locations.shape)} must be (N, Lq, M, L, P, 2) with "
            f"N={n}, M={m} from value {tuple(value.shape)} and L={num_levels} from spatial_shapes"
        )
    if attention_weights.shape != sampling_locations.shape[:-1]:
        raise ValueError(
            f"{OP}: attention_weights must be (N, Lq, M, L, P) = {tuple(sampling_locations.shape[:-1])} like "
            f"sampling_locations, got {tuple(attention_weights.shape)}"
        )


def _level_shapes(spatial_shapes: Tensor, level_start_index: Tensor, num_tokens: int) -> list[tuple[int, int]]:
    """(H_l, W_l) per level as Python ints, after checking them against S and level_start_index.

    This reads the two small tensors on the host (one device sync on CUDA).
    """
    num_levels = spatial_shapes.shape[0]
    host = torch.cat([spatial_shapes.flatten(), level_start_index]).tolist()
    shapes = [(host[2 * i], host[2 * i + 1]) for i in range(num_levels)]
    starts = host[2 * num_levels:]
    if any(h < 1 or w < 1 for h, w in shapes):
        raise ValueError(f"{OP}: spatial_shapes must be positive (H_l, W_l), got {shapes}")
    expected_starts = [sum(h * w for h, w in shapes[:i]) for i in range(num_levels)]
    if starts != expected_starts:
        raise ValueError(
            f"{OP}: level_start_index must be {expected_starts} (exclusive cumsum of H_l * W_l for "
            f"spatial_shapes {shapes}), got {starts}"
        )
    total = sum(h * w for h, w in shapes)
    if total != num_tokens:
        raise ValueError(
            f"{OP}: value has S={num_tokens} tokens but spatial_shapes {shapes} describe sum(H_l * W_l)={total}"
        )
    return shapes


def _query_chunk(sampling_locations: Tensor, head_dim: int) -> int:
    n, _, m, _, p, _ = sampling_locations.shape
    return max(1, TORCH_CHUNK_ELEMENTS // max(1, n * m * head_dim * p))


def _validate(spatial_shapes: Tensor, level_start_index: Tensor, num_tokens: int) -> None:
    """Data checks for the Triton path, skipped while a CUDA graph is captured (no host reads allowed)."""
    if spatial_shapes.device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        return
    _level_shapes(spatial_shapes, level_start_index, num_tokens)


@torch.library.custom_op("tarvis_fast::ms_deform_attn", mutates_args=())
def _forward_op(
    value: Tensor,
    spatial_shapes: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
    backend: str,
) -> Tensor:
    n, s, m, d = value.shape
    if backend == "triton":
        _validate(spatial_shapes, level_start_index, s)
        from .triton import ms_deform_attn_forward

        return ms_deform_attn_forward(
            value.contiguous(), spatial_shapes.contiguous(), level_start_index.contiguous(),
            sampling_locations.contiguous(), attention_weights.contiguous(),
        )
    shapes = _level_shapes(spatial_shapes, level_start_index, s)
    if sampling_locations.shape[1] == 0:
        return value.new_zeros(n, 0, m * d)
    return ms_deform_attn_torch(
        value, shapes, sampling_locations, attention_weights, query_chunk=_query_chunk(sampling_locations, d)
    )


@_forward_op.register_fake
def _forward_fake(
    value: Tensor,
    spatial_shapes: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
    backend: str,
) -> Tensor:
    n, _, m, d = value.shape
    return value.new_empty(n, sampling_locations.shape[1], m * d)


@torch.library.custom_op("tarvis_fast::ms_deform_attn_backward", mutates_args=())
def _backward_op(
    grad_output: Tensor,
    value: Tensor,
    spatial_shapes: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
    backend: str,
) -> tuple[Tensor, Tensor, Tensor]:
    if backend == "triton":
        from .triton import ms_deform_attn_backward

        return ms_deform_attn_backward(
            grad_output.contiguous(), value.contiguous(), spatial_shapes.contiguous(),
            level_start_index.contiguous(), sampling_locations.contiguous(), attention_weights.contiguous(),
        )
    if sampling_locations.shape[1] == 0:
        return tuple(t.new_zeros(t.shape) for t in (value, sampling_locations, attention_weights))
    shapes = _level_shapes(spatial_shapes, level_start_index, value.shape[1])
    return ms_deform_attn_torch_backward(
        grad_output, value, shapes, sampling_locations, attention_weights,
        query_chunk=_query_chunk(sampling_locations, value.shape[-1]),
    )


@_backward_op.register_fake
def _backward_fake(
    grad_output: Tensor,
    value: Tensor,
    spatial_shapes: Tensor,
    level_start_index: Tensor,
    sampling_locations: Tensor,
    attention_weights: Tensor,
    backend: str,
) -> tuple[Tensor, Tensor, Tensor]:
    return tuple(t.new_empty(t.shape) for t in (value, sampling_locations, attention_weights))


def _setup_context(ctx, inputs: tuple, output: Tensor) -> None:
    value, spatial_shapes, level_start_index, sampling_locations, attention_weights, backend = inputs
    ctx.save_for_backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    ctx.backend = backend


def _backward(ctx, grad_output: Tensor) -> tuple[Tensor | None, ...]:
    value, spatial_shapes, level_start_index, sampling_locations, attention_weights = ctx.saved_tensors
    grad_value, grad_locations, grad_weights = torch.ops.tarvis_fast.ms_deform_attn_backward(
        grad_output, value, spatial_shapes, level_start_index, sampling_locations, attention_weights, ctx.backend
    )
    return grad_value, None, None, grad_locations, grad_weights, None


_forward_op.register_autograd(_backward, setup_context=_setup_context)


def _triton_kernels() -> ModuleType:
    from . import triton as kernels  # imported on first use: the package works without Triton

    return kernels
