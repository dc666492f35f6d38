"""`masked_cross_attention`: input checks, backend choice and the custom ops around the Triton kernels.

The Triton path is three `torch.library.custom_op`s, each with a fake (shape) registration, so that
`torch.compile(fullgraph=True)` traces through them:
- `tarvis_fast::masked_attention_pack_mask(mask_logits) -> (words, row_open)`: the bit-packed mask, Q·K/8
  bytes, and which rows have an open key (no gradient);
- `tarvis_fast::masked_cross_attention(q, k, v, words, row_open) -> (out, lse)`, differentiable in q, k, v
  through `register_autograd`, whose backward is
- `tarvis_fast::masked_cross_attention_backward(grad_out, q, k, v, out, lse, words, row_open) -> (dq, dk, dv)`.
The PyTorch path is plain differentiable PyTorch.
"""
from __future__ import annotations

from types import ModuleType

import torch
from torch import Tensor

from .._common import Backend, check_qkv, choose_backend
from .reference import masked_cross_attention_torch

OP = "masked_cross_attention"


def masked_cross_attention(
    q: Tensor, k: Tensor, v: Tensor, mask_logits: Tensor, *, backend: Backend = "auto"
) -> Tensor:
    """Multi-head attention of Q queries over K keys under a per-query key mask (TarViS/Mask2Former decoder).

    Args:
        q: (B, H, Q, D). k, v: (B, H, K, D). One floating dtype (fp16, bf16, fp32, fp64) and device; any strides.
        mask_logits: (B, Q, K), any floating dtype, shared by all heads. Query q attends key k where the
            logit is >= 0 (sigmoid >= 0.5; NaN counts as open); a query whose keys are all blocked attends to
            all of them. It gets no gradient (the mask is a hard threshold).
        backend: "triton", "torch" (masked softmax in fp32, materialising (B, H, Q, K) scores), or "auto"
            (Triton on CUDA, the PyTorch path elsewhere and for head sizes or dtypes the kernels are not
            built for: D in (32, 64); fp16, bf16, fp32). "triton" on CPU tensors needs TRITON_INTERPRET=1 set
            before tarvis_fast.kernels is imported.

    Returns:
        (B, H, Q, D) in q's dtype; softmax scale 1/sqrt(D).
    """
    _check_inputs(q, k, v, mask_logits)
    if choose_backend(backend, q, OP, _triton_kernels) == "torch":
        return masked_cross_attention_torch(q, k, v, mask_logits)
    q, k, v = (t if t.stride(-1) == 1 else t.contiguous() for t in (q, k, v))
    words, row_open = torch.ops.tarvis_fast.masked_attention_pack_mask(mask_logits.detach())
    out, _ = torch.ops.tarvis_fast.masked_cross_attention(q, k, v, words, row_open)
    return out


def _check_inputs(q: Tensor, k: Tensor, v: Tensor, mask_logits: Tensor) -> None:
    """Ranks, sizes, dtypes and devices."""
    check_qkv(OP, q, k, v)
    b, _, num_queries, _ = q.shape
    num_keys = k.shape[2]
    if mask_logits.shape != (b, num_queries, num_keys):
        raise ValueError(
            f"{OP}: mask_logits must be (B, Q, K) = {(b, num_queries, num_keys)}, got {tuple(mask_logits.shape)}"
        )
    if not mask_logits.is_floating_point():
        raise TypeError(
            f"{OP}: mask_logits must be floating point (logits, blocked where < 0), got {mask_logits.dtype}"
        )
    if mask_logits.device != q.device:
        raise ValueError(f"{OP}: mask_logits must be on q's device {q.device}, got {mask_logits.device}")


# ---------------------------------------------------------------------------------------------------------
# Custom ops (the Triton module is imported on first use, so that the package imports without Triton).


@torch.library.custom_op("tarvis_fast::masked_attention_pack_mask", mutates_args=())
def _pack_mask(mask_logits: Tensor) -> tuple[Tensor, Tensor]:
    from .triton import pack_mask

    packed = pack_mask(mask_logits)
    return packed.words, packed.row_open


@_pack_mask.register_fake
def _(mask_logits: Tensor) -> tuple[Tensor, Tensor]:
    batch, num_queries, num_keys = mask_logits.shape
    words = mask_logits.new_empty((batch, (num_keys + 31) // 32, num_queries), dtype=torch.int32)
    return words, mask_logits.new_empty((batch, num_queries), dtype=torch.int32)


@torch.library.custom_op("tarvis_fast::masked_cross_attention", mutates_args=())
def _attention(q: Tensor, k: Tensor, v: Tensor, words: Tensor, row_open: Tensor) -> tuple[Tensor, Tensor]:
    from .triton import PackedMask, attention_forward

    return attention_forward(q, k, v, PackedMask(words, row_open))


@_attention.register_fake
def _(q: Tensor, k: Tensor, v: Tensor, words: Tensor, row_open: Tensor) -> tuple[Tensor, Tensor]:
    from .triton import acc_dtype

    return q.new_empty(q.shape), q.new_empty(q.shape[:3], dtype=acc_dtype(q.dtype))


@torch.library.custom_op("tarvis_fast::masked_cross_attention_backward", mutates_args=())
def _attention_backward(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
                        words: Tensor, row_open: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    from .triton import PackedMask, attention_backward

    grad_out = grad_out if grad_out.stride(-1) == 1 else grad_out.contiguous()
    return attention_backward(grad_out, q, k, v, out, lse, PackedMask(words, row_open))


@_attention_backward.register_fake
def _(grad_out: Tensor, q: Tensor, k: Tensor, v: Tensor, out: Tensor, lse: Tensor,
      words: Tensor, row_open: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _setup_context(ctx, inputs: tuple, output: tuple) -> None:
    q, k, v, words, row_open = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse, words, row_open)


def _backward(ctx, grad_out: Tensor, _grad_lse: Tensor | None) -> tuple[Tensor, Tensor, Tensor, None, None]:
    q, k, v, out, lse, words, row_open = ctx.saved_tensors
    dq, dk, dv = torch.ops.tarvis_fast.masked_cross_attention_backward(grad_out, q, k, v, out, lse, words, row_open)
    return dq, dk, dv, None, None


_attention.register_autograd(_backward, setup_context=_setup_context)


def _triton_kernels() -> ModuleType:
    from . import triton as kernels  # imported on first use: the package works without Triton

    return kernels
