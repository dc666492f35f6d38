"""Triton kernels for multi-scale deformable attention: forward and backward, fp16/bf16/fp32/fp64 values
with locations and weights in the value's dtype or (next to fp16/bf16 values) fp32.

Layout. Every tensor but value is indexed by a *row* r = (n * Lq + q) * M + m, one (batch, query, head)
triple: sampling_locations is (rows, L, P, 2), attention_weights (rows, L, P) and the output (rows, D),
all contiguous. A program takes BLOCK_ROWS consecutive rows, so its loads of locations and weights and
its store of the output are contiguous, the tail of the last block is the only ragged edge, and the
D channels of one head at one value token (contiguous in value (N, S, M, D)) are one vector load.

Forward: for each level and point, a row's 4 bilinear corners are gathered as (BLOCK_ROWS, D) tiles and
accumulated, weighted, in fp32 (fp64 for fp64 inputs); nothing of size (rows, L, P, D) is materialised.

Backward: each corner tile is loaded again; its dot product with grad_output over D gives the gradients
of the attention weight and (through the bilinear weights' derivatives) of the location, and the
weighted grad_output is scattered into grad_value with relaxed fp32 atomics (fp16/bf16 accumulate in an
fp32 buffer cast at the end, so precision is not lost to 16-bit atomics).

Sampling follows grid_sample(bilinear, zeros, align_corners=False): pixel = location * size - 0.5, and
a corner outside the map reads zero and receives no gradient.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from .._common import AOTSpec, triton_interpreted
from .reference import sampling_dtypes  # the op's input contract: which dtype pairs reach the kernels

# Head sizes the kernels are compiled for (D is a compile-time constant: it is the vector width).
HEAD_DIMS: tuple[int, ...] = (16, 32, 64, 128)
DTYPES: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

# Integer arguments are not specialised (Triton would otherwise compile separate kernels for values equal
# to 1 or divisible by 16), so that the configurations in aot_specs() are exactly the ones launched.
_INT_ARGS = ["num_rows", "num_queries", "num_tokens", "num_heads", "num_levels", "num_points"]


@triton.jit
def _bilinear(loc_ptr, sample, height, width, COMPUTE: tl.constexpr):
    """Top-left corner (y0, x0) of each row's sample and its fractional offsets (ly, lx)."""
    x = tl.load(loc_ptr + 2 * sample).to(COMPUTE)
    y = tl.load(loc_ptr + 2 * sample + 1).to(COMPUTE)
    px = x * width.to(COMPUTE) - 0.5
    py = y * height.to(COMPUTE) - 0.5
    x0f = tl.floor(px)
    y0f = tl.floor(py)
    return y0f.to(tl.int64), x0f.to(tl.int64), py - y0f, px - x0f


@triton.jit
def _corner_offsets(token_base, start, y, x, height, width, row_ok, token_stride, channels):
    """Element offsets (BLOCK_ROWS, D) of value at pixel (y, x) of a level, and which rows may read it."""
    ok = row_ok & (y >= 0) & (y < height) & (x >= 0) & (x < width)
    token = start + y * width + x
    return (token_base + token * token_stride)[:, None] + channels[None, :], ok[:, None]


@triton.jit
def _program_rows(num_rows, num_queries, num_tokens, num_heads, D: tl.constexpr, BLOCK_ROWS: tl.constexpr):
    """This program's (batch, query, head) rows, which of them exist, and each row's offset of value at
    (batch, token 0, head, channel 0) with the stride between tokens."""
    rows = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    row_ok = rows < num_rows
    # Rows past the end re-read the last row (their loads stay in bounds without masks); never stored.
    rows = tl.minimum(rows, num_rows - 1).to(tl.int64)
    batch = rows // (num_queries * num_heads)
    head = rows % num_heads
    token_stride = num_heads * D
    return rows, row_ok, batch * num_tokens * token_stride + head * D, token_stride


@triton.jit(do_not_specialize=_INT_ARGS)
def msda_forward_kernel(
    value_ptr,  # (N, S, M, D)
    shapes_ptr,  # (L, 2) int64: (H_l, W_l)
    starts_ptr,  # (L,) int64
    loc_ptr,  # (N, Lq, M, L, P, 2)
    weight_ptr,  # (N, Lq, M, L, P)
    out_ptr,  # (N, Lq, M, D)
    num_rows,  # N * Lq * M
    num_queries,
    num_tokens,
    num_heads,
    num_levels,
    num_points,
    D: tl.constexpr,
    COMPUTE: tl.constexpr,  # tl.float32, or tl.float64 for fp64 inputs
    BLOCK_ROWS: tl.constexpr,
):
    rows, row_ok, token_base, token_stride = _program_rows(num_rows, num_queries, num_tokens, num_heads, D, BLOCK_ROWS)
    channels = tl.arange(0, D)
    samples_per_row = num_levels * num_points

    acc = tl.zeros((BLOCK_ROWS, D), COMPUTE)
    for level in range(num_levels):
        height = tl.load(shapes_ptr + 2 * level)
        width = tl.load(shapes_ptr + 2 * level + 1)
        start = tl.load(starts_ptr + level)
        for point in range(num_points):
            sample = rows * samples_per_row + level * num_points + point
            y0, x0, ly, lx = _bilinear(loc_ptr, sample, height, width, COMPUTE)
            a = tl.load(weight_ptr + sample).to(COMPUTE)
            for dy in tl.static_range(2):
                for dx in tl.static_range(2):
                    offsets, ok = _corner_offsets(
                        token_base, start, y0 + dy, x0 + dx, height, width, row_ok, token_stride, channels
                    )
                    corner = tl.load(value_ptr + offsets, mask=ok, other=0.0).to(COMPUTE)
                    wy = ly if dy == 1 else 1 - ly
                    wx = lx if dx == 1 else 1 - lx
                    acc += (a * wy * wx)[:, None] * corner

    out_offsets = rows[:, None] * D + channels[None, :]
    tl.store(out_ptr + out_offsets, acc.to(out_ptr.dtype.element_ty), mask=row_ok[:, None])


@triton.jit(do_not_specialize=_INT_ARGS)
def msda_backward_kernel(
    grad_out_ptr,  # (N, Lq, M, D)
    value_ptr,  # (N, S, M, D)
    shapes_ptr,  # (L, 2) int64
    starts_ptr,  # (L,) int64
    loc_ptr,  # (N, Lq, M, L, P, 2)
    weight_ptr,  # (N, Lq, M, L, P)
    grad_value_ptr,  # (N, S, M, D) in COMPUTE dtype, zero-filled; accumulated with atomics
    grad_loc_ptr,  # (N, Lq, M, L, P, 2)
    grad_weight_ptr,  # (N, Lq, M, L, P)
    num_rows,
    num_queries,
    num_tokens,
    num_heads,
    num_levels,
    num_points,
    D: tl.constexpr,
    COMPUTE: tl.constexpr,
    BLOCK_ROWS: tl.constexpr,
):
    rows, row_ok, token_base, token_stride = _program_rows(num_rows, num_queries, num_tokens, num_heads, D, BLOCK_ROWS)
    channels = tl.arange(0, D)
    samples_per_row = num_levels * num_points

    grad_out = tl.load(grad_out_ptr + rows[:, None] * D + channels[None, :]).to(COMPUTE)
    for level in range(num_levels):
        height = tl.load(shapes_ptr + 2 * level)
        width = tl.load(shapes_ptr + 2 * level + 1)
        start = tl.load(starts_ptr + level)
        for point in range(num_points):
            sample = rows * samples_per_row + level * num_points + point
            y0, x0, ly, lx = _bilinear(loc_ptr, sample, height, width, COMPUTE)
            a = tl.load(weight_ptr + sample).to(COMPUTE)
            # dot[c] = <grad_out, corner c> over D. Of the output a * sum_c w_c(ly, lx) * corner_c:
            #   d/da = sum_c w_c dot_c,  d/dlx = a * sum_c (d w_c / d lx) dot_c,  and likewise for ly;
            # lx moves by W_l per unit of normalised x (and ly by H_l per unit of y).
            grad_a = tl.zeros_like(a)
            grad_lx = tl.zeros_like(a)
            grad_ly = tl.zeros_like(a)
            for dy in tl.static_range(2):
                for dx in tl.static_range(2):
                    offsets, ok = _corner_offsets(
                        token_base, start, y0 + dy, x0 + dx, height, width, row_ok, token_stride, channels
                    )
                    corner = tl.load(value_ptr + offsets, mask=ok, other=0.0).to(COMPUTE)
                    dot = tl.sum(grad_out * corner, axis=1)
                    wy = ly if dy == 1 else 1 - ly
                    wx = lx if dx == 1 else 1 - lx
                    grad_a += wy * wx * dot
                    grad_lx += (wy if dx == 1 else -wy) * dot
                    grad_ly += (wx if dy == 1 else -wx) * dot
                    tl.atomic_add(
                        grad_value_ptr + offsets, (a * wy * wx)[:, None] * grad_out, mask=ok, sem="relaxed"
                    )
            loc_dtype = grad_loc_ptr.dtype.element_ty
            tl.store(grad_loc_ptr + 2 * sample, (a * grad_lx * width.to(COMPUTE)).to(loc_dtype), mask=row_ok)
            tl.store(grad_loc_ptr + 2 * sample + 1, (a * grad_ly * height.to(COMPUTE)).to(loc_dtype), mask=row_ok)
            tl.store(grad_weight_ptr + sample, grad_a.to(grad_weight_ptr.dtype.element_ty), mask=row_ok)


def _compute_dtype(dtype: torch.dtype) -> tl.dtype:
    return tl.float64 if dtype == torch.float64 else tl.float32


def _block_rows(head_dim: int, dtype: torch.dtype, kernel: str) -> int:
    """Rows per program: a (BLOCK_ROWS, D) tile of 4 KiB, counted in the input dtype forward (the
    gathered corners dominate the registers) and in the accumulation dtype backward (fp32 at least).
    At 4 warps this keeps the fp16/bf16/fp32 configurations under ~120 registers and without spills
    (`python -m tarvis_fast.kernels.report`).
    Under the interpreter, whose cost is per program and per op and hardly per element, tiles are 4x
    larger."""
    itemsize = max(dtype.itemsize, 4) if kernel == "backward" else dtype.itemsize
    tile_bytes = 4096 * (4 if triton_interpreted() else 1)
    return max(1, tile_bytes // (itemsize * head_dim))


NUM_WARPS = 4
NUM_STAGES = 1  # no software pipelining: the loops are gathers, not tl.dot over tiles


def _aligned(t: Tensor) -> Tensor:
    """Contiguous and 16-byte aligned, as the compiled kernels assume (see aot_specs)."""
    t = t.contiguous()
    return t if t.data_ptr() % 16 == 0 else t.clone()


def _sizes(value: Tensor, sampling_locations: Tensor) -> tuple[int, ...]:
    n, s, m, _ = value.shape
    _, lq, _, num_levels, p, _ = sampling_locations.shape
    return n * lq * m, lq, s, m, num_levels, p


def ms_deform_attn_forward(
    value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor, sampling_locations: Tensor,
    attention_weights: Tensor,
) -> Tensor:
    """Forward with the Triton kernel. Shapes as in `op.ms_deform_attn`, inputs already checked."""
    n, _, m, d = value.shape
    num_rows, lq, *_ = sizes = _sizes(value, sampling_locations)
    out = value.new_empty(n, lq, m * d)
    if num_rows == 0:
        return out
    block_rows = _block_rows(d, value.dtype, "forward")
    msda_forward_kernel[(triton.cdiv(num_rows, block_rows),)](
        _aligned(value), _aligned(spatial_shapes), _aligned(level_start_index), _aligned(sampling_locations),
        _aligned(attention_weights), out, *sizes,
        D=d, COMPUTE=_compute_dtype(value.dtype), BLOCK_ROWS=block_rows, num_warps=NUM_WARPS, num_stages=NUM_STAGES,
    )
    return out


def ms_deform_attn_backward(
    grad_output: Tensor, value: Tensor, spatial_shapes: Tensor, level_start_index: Tensor,
    sampling_locations: Tensor, attention_weights: Tensor,
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients (value, sampling_locations, attention_weights) with the Triton kernel.

    grad_output (N, Lq, M * D); the rest as in `op.ms_deform_attn`, already checked.
    """
    d = value.shape[-1]
    num_rows, *_ = sizes = _sizes(value, sampling_locations)
    compute = _compute_dtype(value.dtype)
    grad_value = value.new_zeros(value.shape, dtype=torch.float64 if compute == tl.float64 else torch.float32)
    grad_locations = sampling_locations.new_empty(sampling_locations.shape)
    grad_weights = attention_weights.new_empty(attention_weights.shape)
    if num_rows > 0:
        block_rows = _block_rows(d, value.dtype, "backward")
        msda_backward_kernel[(triton.cdiv(num_rows, block_rows),)](
            _aligned(grad_output), _aligned(value), _aligned(spatial_shapes), _aligned(level_start_index),
            _aligned(sampling_locations), _aligned(attention_weights), grad_value, grad_locations, grad_weights,
            *sizes, D=d, COMPUTE=compute, BLOCK_ROWS=block_rows, num_warps=NUM_WARPS, num_stages=NUM_STAGES,
        )
    return grad_value.to(value.dtype), grad_locations, grad_weights


_TRITON_TYPE = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32", torch.float64: "fp64"}

_SAMPLING_POINTERS = ("loc_ptr", "weight_ptr", "grad_loc_ptr", "grad_weight_ptr")


def aot_specs() -> list[AOTSpec]:
    """Every configuration the dispatcher launches on a GPU: kernel x (value dtype, locations-and-weights
    dtype) x D, one block size each.

    The report compiles pointers as 16-byte aligned, as the dispatcher guarantees (`_aligned`) and Triton's
    launcher then specialises; integer arguments are not specialised (`do_not_specialize`).
    """
    specs = []
    for kernel, name in ((msda_forward_kernel, "forward"), (msda_backward_kernel, "backward")):
        params = kernel.arg_names
        for dtype in DTYPES:
            compute = _compute_dtype(dtype)
            for sampling_dtype in sampling_dtypes(dtype):
                types = {"shapes_ptr": "*i64", "starts_ptr": "*i64",
                         "grad_value_ptr": "*fp64" if compute == tl.float64 else "*fp32"}
                types.update({p: "*" + _TRITON_TYPE[sampling_dtype] for p in _SAMPLING_POINTERS})
                dtypes_name = _TRITON_TYPE[dtype] + ("" if sampling_dtype == dtype else f"_{_TRITON_TYPE[sampling_dtype]}loc")
                for d in HEAD_DIMS:
                    constexprs = {"D": d, "COMPUTE": compute, "BLOCK_ROWS": _block_rows(d, dtype, name)}
                    signature = {
                        p: "constexpr" if p in constexprs else "i32" if p in _INT_ARGS
                        else types.get(p, "*" + _TRITON_TYPE[dtype])
                        for p in params
                    }
                    specs.append(AOTSpec(
                        name=f"msda_{name}_{dtypes_name}_D{d}_rows{constexprs['BLOCK_ROWS']}",
                        kernel=kernel, signature=signature, constexprs=constexprs,
                        options={"num_warps": NUM_WARPS, "num_stages": NUM_STAGES},
                    ))
    return specs
