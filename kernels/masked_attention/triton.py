"""Triton kernels for masked cross-attention: a bit-packed mask, a split-K forward and a two-kernel backward.

Shapes: q (B, H, Q, D); k, v (B, H, K, D); mask logits (B, Q, K) shared by the H heads. Q is small (a few
hundred queries) and K large (up to ~70k space-time tokens), so work is split along K.

1. `_pack_mask_kernel` reads the logits once and writes
   - words (B, NW, Q) int32, NW = ceil(K / 32): bit j of words[b, w, q] is set where key 32 w + j is open for
     query q. Q·K/8 bytes, read by every head; word-major, so the words of consecutive queries are adjacent.
   - row_open (B, Q) int32: 1 where query q has an open key (an atomic max over the K tiles). The attention
     kernels open every key of the rows that have none.
2. `_fwd_split_kernel`, grid (QT, S, B·H): each program runs the online softmax of BLOCK_Q queries over one
   of S contiguous ranges of K tiles (flash-decoding) and writes its partial row max m, sum l and unnormalised
   output; the QT programs of one range run side by side and share its K and V through L2.
   `_fwd_combine_kernel` merges the S partials into the output and the log-sum-exp.
3. `_bwd_dkdv_kernel`, grid (KT, B·H): a program owns a K tile and loops over all Q tiles, accumulating dk and
   dv. `_bwd_dq_kernel`, grid (QT, S, B·H) like the forward: partial dq per K range, summed afterwards.

Scores are kept in log2 units (scaled by log2(e)/sqrt(D)) so the softmax uses exp2. Accumulation is fp32
(fp64 for fp64 inputs, which only the interpreter runs, for the tests). fp32 inputs use 3xTF32 tensor-core
dots (near-fp32 accuracy); fp16 and bf16 inputs go to the tensor cores as they are, with P cast to the input
dtype before P·V as in FlashAttention.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import triton
import triton.language as tl
from torch import Tensor

from .._common import AOTSpec, triton_interpreted

HEAD_DIMS: tuple[int, ...] = (32, 64)
DTYPES: tuple[torch.dtype, ...] = (torch.float16, torch.bfloat16, torch.float32)
LOG2E: tl.constexpr = tl.constexpr(1.4426950408889634)  # scores in log2 units: exp(x) = exp2(x * LOG2E)
# Enough programs to fill the GPU a few times over, so that uneven ranges and tails even out.
PROGRAMS_PER_SM = 4


@dataclass(frozen=True)
class Launch:
    """Tile and launch options of one kernel. For the forward and dq kernels a program owns block_q queries and
    walks block_k keys at a time; for the dk/dv kernel it owns block_k keys and walks block_q queries."""

    block_q: int
    block_k: int
    num_warps: int
    num_stages: int


@dataclass(frozen=True)
class KernelConfig:
    forward: Launch
    dq: Launch
    dkdv: Launch


# Per head size, for fp16/bf16 and for fp32 inputs (3xTF32 dots hold three times the operands, so smaller
# tiles). Chosen so that every kernel compiles without register spills for sm_80 and sm_90 (see
# `python -m tarvis_fast.kernels.report`); fp64 (interpreter only) uses the fp32 tiles.
KERNEL_CONFIGS: dict[tuple[int, bool], KernelConfig] = {
    # (head_dim, fp32 inputs): forward, dq, dkdv
    (32, False): KernelConfig(Launch(64, 128, 4, 3), Launch(64, 64, 4, 3), Launch(32, 128, 8, 2)),
    (64, False): KernelConfig(Launch(64, 64, 4, 3), Launch(64, 32, 4, 3), Launch(32, 64, 4, 2)),
    (32, True): KernelConfig(Launch(64, 32, 4, 2), Launch(16, 32, 4, 2), Launch(16, 64, 4, 2)),
    (64, True): KernelConfig(Launch(32, 32, 4, 2), Launch(16, 32, 4, 2), Launch(16, 32, 4, 2)),
}


# The mask packer reads (block_q, block_k) logits per program; the combine kernel merges block_q queries' partials.
PACK = Launch(block_q=32, block_k=256, num_warps=4, num_stages=2)
COMBINE_BLOCK_Q, COMBINE_WARPS = 32, 4


def kernel_config(head_dim: int, dtype: torch.dtype) -> KernelConfig:
    return KERNEL_CONFIGS[(head_dim, dtype in (torch.float32, torch.float64))]


class PackedMask(NamedTuple):
    """The mask as the attention kernels read it: words (B, ceil(K / 32), Q) int32, row_open (B, Q) int32."""

    words: Tensor
    row_open: Tensor


# ---------------------------------------------------------------------------------------------------------
# Kernels


@triton.jit
def _pack_mask_kernel(logits_ptr, words_ptr, row_open_ptr,
                      stride_lb, stride_lq, stride_lk, Q, K, NW,
                      BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr):
    kt = tl.program_id(0)
    qt = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    offs_q = qt * BLOCK_Q + tl.arange(0, BLOCK_Q)
    offs_k = kt * BLOCK_K + tl.arange(0, BLOCK_K)
    in_bounds = (offs_q[:, None] < Q) & (offs_k[None, :] < K)
    logits = tl.load(logits_ptr + b * stride_lb + offs_q[:, None] * stride_lq + offs_k[None, :] * stride_lk,
                     mask=in_bounds, other=-1.0)
    # `not (x < 0)` rather than `x >= 0`: a NaN logit is open, as in the PyTorch path.
    is_open = ((logits < 0) == 0).to(tl.int32)
    # The 32 bits of a word are distinct, so their sum is their bitwise or.
    bits = tl.reshape(is_open, (BLOCK_Q, BLOCK_K // 32, 32)) << tl.arange(0, 32)[None, None, :]
    words = tl.sum(bits, axis=2)
    offs_w = kt * (BLOCK_K // 32) + tl.arange(0, BLOCK_K // 32)
    tl.store(words_ptr + b * NW * Q + offs_w[None, :] * Q + offs_q[:, None], words,
             mask=(offs_q[:, None] < Q) & (offs_w[None, :] < NW))
    tl.atomic_max(row_open_ptr + b * Q + offs_q, tl.max(is_open, axis=1), mask=offs_q < Q)


@triton.jit
def _open_keys(words_ptr, offs_q, k_start, Q, K, NW, row_opened,
               BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr, KEYS_FIRST: tl.constexpr):
    """Bool tile of the open (query, key) pairs of queries offs_q (BLOCK_Q,) and keys k_start + [0, BLOCK_K),
    (BLOCK_Q, BLOCK_K), or (BLOCK_K, BLOCK_Q) with KEYS_FIRST; k_start is a multiple of 32. row_opened
    (BLOCK_Q,) marks the queries with no open key, which attend to every key < K.

    Loads the tile's BLOCK_Q x BLOCK_K / 32 words and spreads their bits in registers (Triton lays the
    reshape out to match the dot's accumulator, so no shared-memory round trip)."""
    offs_w = k_start // 32 + tl.arange(0, BLOCK_K // 32)
    offs_k = k_start + tl.arange(0, BLOCK_K)
    bit = tl.arange(0, 32)
    # Queries past Q and words past NW read as 0 (blocked), and bits of keys past K are 0 in the packed words.
    if KEYS_FIRST:
        words = tl.load(words_ptr + offs_w[:, None] * Q + offs_q[None, :],
                        mask=(offs_w[:, None] < NW) & (offs_q[None, :] < Q), other=0)
        bits = tl.reshape((words[:, None, :] >> bit[None, :, None]) & 1, (BLOCK_K, BLOCK_Q))
        return ((bits != 0) | row_opened[None, :]) & (offs_k[:, None] < K)
    else:
        words = tl.load(words_ptr + offs_w[None, :] * Q + offs_q[:, None],
                        mask=(offs_w[None, :] < NW) & (offs_q[:, None] < Q), other=0)
        bits = tl.reshape((words[:, :, None] >> bit[None, None, :]) & 1, (BLOCK_Q, BLOCK_K))
        return ((bits != 0) | row_opened[:, None]) & (offs_k[None, :] < K)


@triton.jit
def _load_rows(ptr, base, offs, row_stride, offs_d, valid, DTYPE: tl.constexpr):
    """A (rows, HEAD_DIM) tile of one (batch, head): rows `offs` of a tensor whose head dim is contiguous,
    zero where not `valid`, cast to DTYPE."""
    return tl.load(ptr + base + offs[:, None] * row_stride + offs_d[None, :], mask=valid[:, None], other=0.0).to(DTYPE)


@triton.jit
def _fwd_split_kernel(q_ptr, k_ptr, v_ptr, words_ptr, row_open_ptr, m_ptr, l_ptr, acc_ptr,
                      stride_qb, stride_qh, stride_qq, stride_kb, stride_kh, stride_kk,
                      stride_vb, stride_vh, stride_vk,
                      H, Q, K, NW, KT, TILES_PER_SPLIT,
                      SM_SCALE: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr,
                      DOT_DTYPE: tl.constexpr, ACC_DTYPE: tl.constexpr, DOT_PRECISION: tl.constexpr):
    qt = tl.program_id(0)
    split = tl.program_id(1)
    bh = tl.program_id(2)
    num_splits = tl.num_programs(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    offs_q = qt * BLOCK_Q + tl.arange(0, BLOCK_Q)
    offs_d = tl.arange(0, HEAD_DIM)
    q_valid = offs_q < Q

    q = _load_rows(q_ptr, b * stride_qb + h * stride_qh, offs_q, stride_qq, offs_d, q_valid, DOT_DTYPE)
    row_opened = tl.load(row_open_ptr + b * Q + offs_q, mask=q_valid, other=1) == 0  # padding queries: not opened
    k_base = k_ptr + b * stride_kb + h * stride_kh
    v_base = v_ptr + b * stride_vb + h * stride_vh
    words_base = words_ptr + b * NW * Q
    qk_scale = tl.full([], SM_SCALE * LOG2E, ACC_DTYPE)

    m = tl.full([BLOCK_Q], float("-inf"), ACC_DTYPE)
    l = tl.zeros([BLOCK_Q], ACC_DTYPE)
    acc = tl.zeros([BLOCK_Q, HEAD_DIM], ACC_DTYPE)
    kt_start = split * TILES_PER_SPLIT
    for kt in range(kt_start, tl.minimum(kt_start + TILES_PER_SPLIT, KT)):
        offs_k = kt * BLOCK_K + tl.arange(0, BLOCK_K)
        k_valid = offs_k < K
        k_t = tl.load(k_base + offs_k[None, :] * stride_kk + offs_d[:, None], mask=k_valid[None, :], other=0.0)
        v = tl.load(v_base + offs_k[:, None] * stride_vk + offs_d[None, :], mask=k_valid[:, None], other=0.0)
        is_open = _open_keys(words_base, offs_q, kt * BLOCK_K, Q, K, NW, row_opened, BLOCK_Q, BLOCK_K, False)
        s = tl.dot(q, k_t.to(DOT_DTYPE), input_precision=DOT_PRECISION) * qk_scale
        s = tl.where(is_open, s, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, axis=1))
        # A row with nothing open so far has m_new = -inf: subtract 0 instead, so exp2 gives 0, not NaN.
        m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp2(s - m_ref[:, None])
        alpha = tl.exp2(m - m_ref)
        l = l * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None]
        acc += tl.dot(p.to(DOT_DTYPE), v.to(DOT_DTYPE), input_precision=DOT_PRECISION)
        m = m_new

    # 64-bit offsets only in scalars: per-element int64 offsets double the registers of every pointer tile.
    first_row = (bh * num_splits + split).to(tl.int64) * Q
    tl.store(m_ptr + first_row + offs_q, m, mask=q_valid)
    tl.store(l_ptr + first_row + offs_q, l, mask=q_valid)
    tl.store(acc_ptr + first_row * HEAD_DIM + offs_q[:, None] * HEAD_DIM + offs_d[None, :], acc, mask=q_valid[:, None])


@triton.jit
def _fwd_combine_kernel(m_ptr, l_ptr, acc_ptr, out_ptr, lse_ptr, Q, NUM_SPLITS,
                        HEAD_DIM: tl.constexpr, BLOCK_Q: tl.constexpr, ACC_DTYPE: tl.constexpr):
    qt = tl.program_id(0)
    bh = tl.program_id(1)
    offs_q = qt * BLOCK_Q + tl.arange(0, BLOCK_Q)
    offs_d = tl.arange(0, HEAD_DIM)
    q_valid = offs_q < Q
    m = tl.full([BLOCK_Q], float("-inf"), ACC_DTYPE)
    l = tl.zeros([BLOCK_Q], ACC_DTYPE)
    acc = tl.zeros([BLOCK_Q, HEAD_DIM], ACC_DTYPE)
    for split in range(NUM_SPLITS):
        first_row = (bh * NUM_SPLITS + split).to(tl.int64) * Q
        m_split = tl.load(m_ptr + first_row + offs_q, mask=q_valid, other=float("-inf"))
        m_new = tl.maximum(m, m_split)
        m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m - m_ref)
        beta = tl.exp2(m_split - m_ref)
        l = l * alpha + tl.load(l_ptr + first_row + offs_q, mask=q_valid, other=0.0) * beta
        acc = acc * alpha[:, None] + beta[:, None] * tl.load(
            acc_ptr + first_row * HEAD_DIM + offs_q[:, None] * HEAD_DIM + offs_d[None, :],
            mask=q_valid[:, None], other=0.0)
        m = m_new
    # Every row has an open key (fully blocked rows are opened), so l > 0 on valid rows.
    l = tl.where(q_valid, l, 1.0)
    first_row = bh.to(tl.int64) * Q
    tl.store(out_ptr + first_row * HEAD_DIM + offs_q[:, None] * HEAD_DIM + offs_d[None, :],
             (acc / l[:, None]).to(out_ptr.dtype.element_ty), mask=q_valid[:, None])
    tl.store(lse_ptr + first_row + offs_q, m + tl.log2(l), mask=q_valid)


@triton.jit
def _bwd_dkdv_kernel(q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, words_ptr, row_open_ptr, dk_ptr, dv_ptr,
                     stride_qb, stride_qh, stride_qq, stride_kb, stride_kh, stride_kk,
                     stride_vb, stride_vh, stride_vk, stride_dob, stride_doh, stride_doq,
                     H, Q, K, NW,
                     SM_SCALE: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr,
                     DOT_DTYPE: tl.constexpr, ACC_DTYPE: tl.constexpr, DOT_PRECISION: tl.constexpr):
    kt = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    offs_k = kt * BLOCK_K + tl.arange(0, BLOCK_K)
    offs_d = tl.arange(0, HEAD_DIM)
    k_valid = offs_k < K
    k = _load_rows(k_ptr, b * stride_kb + h * stride_kh, offs_k, stride_kk, offs_d, k_valid, DOT_DTYPE)
    v = _load_rows(v_ptr, b * stride_vb + h * stride_vh, offs_k, stride_vk, offs_d, k_valid, DOT_DTYPE)
    q_base = q_ptr + b * stride_qb + h * stride_qh
    do_base = do_ptr + b * stride_dob + h * stride_doh
    words_base = words_ptr + b * NW * Q
    qk_scale = tl.full([], SM_SCALE * LOG2E, ACC_DTYPE)

    dk = tl.zeros([BLOCK_K, HEAD_DIM], ACC_DTYPE)
    dv = tl.zeros([BLOCK_K, HEAD_DIM], ACC_DTYPE)
    for q_start in range(0, Q, BLOCK_Q):
        # Transposed tiles (keys down, queries across), so that dk and dv come out of the dots directly.
        offs_q = q_start + tl.arange(0, BLOCK_Q)
        q_valid = offs_q < Q
        q_t = tl.load(q_base + offs_q[None, :] * stride_qq + offs_d[:, None], mask=q_valid[None, :], other=0.0)
        do = tl.load(do_base + offs_q[:, None] * stride_doq + offs_d[None, :], mask=q_valid[:, None], other=0.0)
        lse = tl.load(lse_ptr + bh * Q + offs_q, mask=q_valid, other=0.0)
        delta = tl.load(delta_ptr + bh * Q + offs_q, mask=q_valid, other=0.0)
        row_opened = tl.load(row_open_ptr + b * Q + offs_q, mask=q_valid, other=1) == 0
        is_open = _open_keys(words_base, offs_q, kt * BLOCK_K, Q, K, NW, row_opened, BLOCK_Q, BLOCK_K, True)
        s_t = tl.dot(k, q_t.to(DOT_DTYPE), input_precision=DOT_PRECISION) * qk_scale
        p_t = tl.where(is_open, tl.exp2(s_t - lse[None, :]), 0.0)
        do = do.to(DOT_DTYPE)
        dv += tl.dot(p_t.to(DOT_DTYPE), do, input_precision=DOT_PRECISION)
        dp_t = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION)
        ds_t = p_t * (dp_t - delta[None, :])
        dk += tl.dot(ds_t.to(DOT_DTYPE), tl.trans(q_t.to(DOT_DTYPE)), input_precision=DOT_PRECISION)

    tile = bh.to(tl.int64) * K * HEAD_DIM + offs_k[:, None] * HEAD_DIM + offs_d[None, :]
    tl.store(dk_ptr + tile, (dk * SM_SCALE).to(dk_ptr.dtype.element_ty), mask=k_valid[:, None])
    tl.store(dv_ptr + tile, dv.to(dv_ptr.dtype.element_ty), mask=k_valid[:, None])


@triton.jit
def _bwd_dq_kernel(q_ptr, k_ptr, v_ptr, do_ptr, lse_ptr, delta_ptr, words_ptr, row_open_ptr, dq_ptr,
                   stride_qb, stride_qh, stride_qq, stride_kb, stride_kh, stride_kk,
                   stride_vb, stride_vh, stride_vk, stride_dob, stride_doh, stride_doq,
                   H, Q, K, NW, KT, TILES_PER_SPLIT,
                   SM_SCALE: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_Q: tl.constexpr, BLOCK_K: tl.constexpr,
                   DOT_DTYPE: tl.constexpr, ACC_DTYPE: tl.constexpr, DOT_PRECISION: tl.constexpr):
    qt = tl.program_id(0)
    split = tl.program_id(1)
    bh = tl.program_id(2)
    num_splits = tl.num_programs(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    offs_q = qt * BLOCK_Q + tl.arange(0, BLOCK_Q)
    offs_d = tl.arange(0, HEAD_DIM)
    q_valid = offs_q < Q
    q = _load_rows(q_ptr, b * stride_qb + h * stride_qh, offs_q, stride_qq, offs_d, q_valid, DOT_DTYPE)
    do = _load_rows(do_ptr, b * stride_dob + h * stride_doh, offs_q, stride_doq, offs_d, q_valid, DOT_DTYPE)
    lse = tl.load(lse_ptr + bh * Q + offs_q, mask=q_valid, other=0.0)
    delta = tl.load(delta_ptr + bh * Q + offs_q, mask=q_valid, other=0.0)
    row_opened = tl.load(row_open_ptr + b * Q + offs_q, mask=q_valid, other=1) == 0
    k_base = k_ptr + b * stride_kb + h * stride_kh
    v_base = v_ptr + b * stride_vb + h * stride_vh
    words_base = words_ptr + b * NW * Q
    qk_scale = tl.full([], SM_SCALE * LOG2E, ACC_DTYPE)

    dq = tl.zeros([BLOCK_Q, HEAD_DIM], ACC_DTYPE)
    kt_start = split * TILES_PER_SPLIT
    for kt in range(kt_start, tl.minimum(kt_start + TILES_PER_SPLIT, KT)):
        offs_k = kt * BLOCK_K + tl.arange(0, BLOCK_K)
        k_valid = offs_k < K
        k_t = tl.load(k_base + offs_k[None, :] * stride_kk + offs_d[:, None], mask=k_valid[None, :], other=0.0)
        v_t = tl.load(v_base + offs_k[None, :] * stride_vk + offs_d[:, None], mask=k_valid[None, :], other=0.0)
        k_t = k_t.to(DOT_DTYPE)
        is_open = _open_keys(words_base, offs_q, kt * BLOCK_K, Q, K, NW, row_opened, BLOCK_Q, BLOCK_K, False)
        s = tl.dot(q, k_t, input_precision=DOT_PRECISION) * qk_scale
        p = tl.where(is_open, tl.exp2(s - lse[:, None]), 0.0)
        dp = tl.dot(do, v_t.to(DOT_DTYPE), input_precision=DOT_PRECISION)
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(DOT_DTYPE), tl.trans(k_t), input_precision=DOT_PRECISION)

    first_row = (bh * num_splits + split).to(tl.int64) * Q
    tl.store(dq_ptr + first_row * HEAD_DIM + offs_q[:, None] * HEAD_DIM + offs_d[None, :], dq * SM_SCALE,
             mask=q_valid[:, None])


# ---------------------------------------------------------------------------------------------------------
# Launchers


def _tl_dtype(dtype: torch.dtype) -> tl.dtype:
    return {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16,
            torch.float32: tl.float32, torch.float64: tl.float64}[dtype]


def _dot_constexprs(dtype: torch.dtype, interpreted: bool) -> dict[str, object]:
    """DOT_DTYPE, ACC_DTYPE and DOT_PRECISION for inputs of `dtype`.

    The interpreter multiplies bf16 dot operands as raw bits (triton-lang/triton#11584), so there bf16
    operands are upcast to fp32 first.
    """
    dot_dtype = torch.float32 if dtype == torch.bfloat16 and interpreted else dtype
    return {
        "DOT_DTYPE": _tl_dtype(dot_dtype),
        "ACC_DTYPE": tl.float64 if dtype == torch.float64 else tl.float32,
        # Only fp32 operands read it: 3xTF32 keeps fp32 inputs near fp32 accuracy on the tensor cores.
        "DOT_PRECISION": "ieee" if dtype == torch.float64 else "tf32x3",
    }


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype: fp64 for fp64 inputs, fp32 otherwise."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def num_splits(device: torch.device, programs: int, k_tiles: int) -> int:
    """How many K ranges to split into so that `programs` (Q tiles x B·H) times it fills the device.

    Under the interpreter every program costs the same host time, so one range.
    """
    if device.type != "cuda":
        return 1
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return max(1, min(k_tiles, triton.cdiv(PROGRAMS_PER_SM * sms, programs)))


def pack_mask(mask_logits: Tensor) -> PackedMask:
    """(B, Q, K) logits -> PackedMask: open bits (logit >= 0 or NaN) and whether each row has any."""
    batch, num_queries, num_keys = mask_logits.shape
    num_words = triton.cdiv(num_keys, 32)
    words = torch.empty(batch, num_words, num_queries, dtype=torch.int32, device=mask_logits.device)
    row_open = torch.zeros(batch, num_queries, dtype=torch.int32, device=mask_logits.device)
    grid = (triton.cdiv(num_keys, PACK.block_k), triton.cdiv(num_queries, PACK.block_q), batch)
    _pack_mask_kernel[grid](mask_logits, words, row_open, *mask_logits.stride(), num_queries, num_keys, num_words,
                            BLOCK_Q=PACK.block_q, BLOCK_K=PACK.block_k, num_warps=PACK.num_warps,
                            num_stages=PACK.num_stages)
    return PackedMask(words, row_open)


def _head_strides(t: Tensor) -> tuple[int, int, int]:
    """(batch, head, sequence) strides of a (B, H, L, D) tensor whose last dimension is contiguous."""
    if t.stride(-1) != 1:
        raise ValueError(
            f"masked attention kernels need a contiguous last (channel) dimension, got strides {t.stride()}"
        )
    return t.stride(0), t.stride(1), t.stride(2)


def _split_k(device: torch.device, launch: Launch, num_queries: int, num_keys: int, batch_heads: int,
             splits: int | None) -> tuple[int, int, int, int]:
    """(Q tiles, K tiles, K ranges, K tiles per range) of a split-K launch; splits=None fills the device."""
    q_tiles, k_tiles = triton.cdiv(num_queries, launch.block_q), triton.cdiv(num_keys, launch.block_k)
    splits = splits or num_splits(device, q_tiles * batch_heads, k_tiles)
    tiles_per_split = triton.cdiv(k_tiles, splits)
    return q_tiles, k_tiles, triton.cdiv(k_tiles, tiles_per_split), tiles_per_split  # no empty range


def attention_forward(q: Tensor, k: Tensor, v: Tensor, mask: PackedMask, *, config: KernelConfig | None = None,
                      splits: int | None = None) -> tuple[Tensor, Tensor]:
    """out (B, H, Q, D) in q's dtype, and lse (B, H, Q) in log2 units in the accumulation dtype.

    config defaults to `kernel_config(D, dtype)`; splits (the number of K ranges) to what fills the device.
    """
    batch, heads, num_queries, head_dim = q.shape
    num_keys = k.shape[2]
    launch = (config or kernel_config(head_dim, q.dtype)).forward
    q_tiles, k_tiles, splits, tiles_per_split = _split_k(q.device, launch, num_queries, num_keys, batch * heads, splits)
    work = acc_dtype(q.dtype)
    m = torch.empty(batch * heads, splits, num_queries, dtype=work, device=q.device)
    l = torch.empty_like(m)
    acc = torch.empty(batch * heads, splits, num_queries, head_dim, dtype=work, device=q.device)
    dots = _dot_constexprs(q.dtype, triton_interpreted())
    _fwd_split_kernel[(q_tiles, splits, batch * heads)](
        q, k, v, mask.words, mask.row_open, m, l, acc,
        *_head_strides(q), *_head_strides(k), *_head_strides(v),
        heads, num_queries, num_keys, mask.words.shape[1], k_tiles, tiles_per_split,
        SM_SCALE=1.0 / math.sqrt(head_dim), HEAD_DIM=head_dim, BLOCK_Q=launch.block_q, BLOCK_K=launch.block_k,
        num_warps=launch.num_warps, num_stages=launch.num_stages, **dots,
    )
    out = torch.empty(batch, heads, num_queries, head_dim, dtype=q.dtype, device=q.device)
    lse = torch.empty(batch, heads, num_queries, dtype=work, device=q.device)
    _fwd_combine_kernel[(triton.cdiv(num_queries, COMBINE_BLOCK_Q), batch * heads)](
        m, l, acc, out, lse, num_queries, splits,
        HEAD_DIM=head_dim, BLOCK_Q=COMBINE_BLOCK_Q, ACC_DTYPE=dots["ACC_DTYPE"], num_warps=COMBINE_WARPS,
    )
    return out, lse


def attention_backward(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
                       mask: PackedMask, *, config: KernelConfig | None = None,
                       splits: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """dq, dk, dv (shapes and dtypes of q, k, v, contiguous) from the forward's out and lse."""
    batch, heads, num_queries, head_dim = q.shape
    if batch * heads * num_queries == 0:
        # No query, so no gradient reaches anything. Returned before the stride checks: autograd hands an empty
        # output's backward an expanded gradient with strides (0, 0, 0, 0), which is "contiguous" for torch but
        # would fail the channel-stride check.
        return tuple(torch.zeros(t.shape, dtype=t.dtype, device=t.device) for t in (q, k, v))
    num_keys = k.shape[2]
    config = config or kernel_config(head_dim, q.dtype)
    work = acc_dtype(q.dtype)
    # delta_i = sum_d dO_id O_id = sum_j P_ij dP_ij: the softmax backward's row term, B·H·Q·D work.
    delta = (grad_out.to(work) * out.to(work)).sum(dim=-1).contiguous()
    common = dict(SM_SCALE=1.0 / math.sqrt(head_dim), HEAD_DIM=head_dim,
                  **_dot_constexprs(q.dtype, triton_interpreted()))
    strides = (*_head_strides(q), *_head_strides(k), *_head_strides(v), *_head_strides(grad_out))
    num_words = mask.words.shape[1]

    dk = torch.empty(batch, heads, num_keys, head_dim, dtype=k.dtype, device=k.device)
    dv = torch.empty(batch, heads, num_keys, head_dim, dtype=v.dtype, device=v.device)
    launch = config.dkdv
    _bwd_dkdv_kernel[(triton.cdiv(num_keys, launch.block_k), batch * heads)](
        q, k, v, grad_out, lse, delta, mask.words, mask.row_open, dk, dv, *strides,
        heads, num_queries, num_keys, num_words, BLOCK_Q=launch.block_q, BLOCK_K=launch.block_k,
        num_warps=launch.num_warps, num_stages=launch.num_stages, **common,
    )

    launch = config.dq
    q_tiles, k_tiles, splits, tiles_per_split = _split_k(q.device, launch, num_queries, num_keys, batch * heads, splits)
    dq_partial = torch.empty(batch * heads, splits, num_queries, head_dim, dtype=work, device=q.device)
    _bwd_dq_kernel[(q_tiles, splits, batch * heads)](
        q, k, v, grad_out, lse, delta, mask.words, mask.row_open, dq_partial, *strides,
        heads, num_queries, num_keys, num_words, k_tiles, tiles_per_split,
        BLOCK_Q=launch.block_q, BLOCK_K=launch.block_k,
        num_warps=launch.num_warps, num_stages=launch.num_stages, **common,
    )
    dq = dq_partial.sum(dim=1).view(batch, heads, num_queries, head_dim).to(q.dtype)
    return dq, dk, dv


# ---------------------------------------------------------------------------------------------------------
# Ahead-of-time compile report


def aot_specs() -> list[AOTSpec]:
    """Every configuration the dispatcher launches on a GPU: the mask packer per logits dtype, and the four
    attention kernels per head size in HEAD_DIMS and input dtype in DTYPES (int arguments as the launcher
    specialises them for values below 2**31)."""
    ptr = {torch.float16: "*fp16", torch.bfloat16: "*bf16", torch.float32: "*fp32", torch.float64: "*fp64"}

    def ints(*names: str) -> dict[str, str]:
        return {name: "i32" for name in names}

    specs = [
        _spec(f"pack_mask logits={ptr[dtype][1:]}", _pack_mask_kernel,
              {"logits_ptr": ptr[dtype], "words_ptr": "*i32", "row_open_ptr": "*i32",
               **ints("stride_lb", "stride_lq", "stride_lk", "Q", "K", "NW")},
              {}, PACK)
        for dtype in ptr
    ]
    qkv_strides = ints("stride_qb", "stride_qh", "stride_qq", "stride_kb", "stride_kh", "stride_kk",
                       "stride_vb", "stride_vh", "stride_vk")
    do_strides = ints("stride_dob", "stride_doh", "stride_doq")
    for head_dim, dtype in itertools.product(HEAD_DIMS, DTYPES):
        config = kernel_config(head_dim, dtype)
        x = ptr[dtype]
        common = {"SM_SCALE": 1.0 / math.sqrt(head_dim), "HEAD_DIM": head_dim,
                  **_dot_constexprs(dtype, interpreted=False)}
        bwd_inputs = {"q_ptr": x, "k_ptr": x, "v_ptr": x, "do_ptr": x, "lse_ptr": "*fp32", "delta_ptr": "*fp32",
                      "words_ptr": "*i32", "row_open_ptr": "*i32"}
        tag = f"D={head_dim} {x[1:]}"
        specs += [
            _spec(f"fwd_split {tag}", _fwd_split_kernel,
                  {"q_ptr": x, "k_ptr": x, "v_ptr": x, "words_ptr": "*i32", "row_open_ptr": "*i32",
                   "m_ptr": "*fp32", "l_ptr": "*fp32", "acc_ptr": "*fp32", **qkv_strides,
                   **ints("H", "Q", "K", "NW", "KT", "TILES_PER_SPLIT")},
                  common, config.forward),
            AOTSpec(f"fwd_combine {tag} {COMBINE_BLOCK_Q}", _fwd_combine_kernel,
                    {"m_ptr": "*fp32", "l_ptr": "*fp32", "acc_ptr": "*fp32", "out_ptr": x, "lse_ptr": "*fp32",
                     **ints("Q", "NUM_SPLITS"), "HEAD_DIM": "constexpr", "BLOCK_Q": "constexpr",
                     "ACC_DTYPE": "constexpr"},
                    {"HEAD_DIM": head_dim, "BLOCK_Q": COMBINE_BLOCK_Q, "ACC_DTYPE": tl.float32},
                    {"num_warps": COMBINE_WARPS, "num_stages": 2}),
            _spec(f"bwd_dkdv {tag}", _bwd_dkdv_kernel,
                  {**bwd_inputs, "dk_ptr": x, "dv_ptr": x, **qkv_strides, **do_strides, **ints("H", "Q", "K", "NW")},
                  common, config.dkdv),
            _spec(f"bwd_dq {tag}", _bwd_dq_kernel,
                  {**bwd_inputs, "dq_ptr": "*fp32", **qkv_strides, **do_strides,
                   **ints("H", "Q", "K", "NW", "KT", "TILES_PER_SPLIT")},
                  common, config.dq),
        ]
    return specs


def _spec(name: str, kernel: object, signature: dict[str, str], constexprs: dict[str, object],
          launch: Launch) -> AOTSpec:
    """An AOTSpec whose BLOCK_Q and BLOCK_K come from launch."""
    constexprs = {**constexprs, "BLOCK_Q": launch.block_q, "BLOCK_K": launch.block_k}
    return AOTSpec(f"{name} {launch.block_q}x{launch.block_k}", kernel,
                   {**signature, **{c: "constexpr" for c in constexprs}}, constexprs,
                   {"num_warps": launch.num_warps, "num_stages": launch.num_stages})
