"""`masked_cross_attention`: input checks and backend choice."""
from __future__ import annotations

import torch
from torch import Tensor

from .._common import Backend, check_floating, resolve_backend
from .reference import masked_cross_attention_torch

OP = "masked_cross_attention"


def masked_cross_attention(q: Tensor, k: Tensor, v: Tensor, mask_logits: Tensor, *, backend: Backend = "auto") -> Tensor:
    """Multi-head attention of Q queries over K keys under a per-query key mask (TarViS/Mask2Former decoder).

    Args:
        q: (B, H, Q, D). k, v: (B, H, K, D). One floating dtype (fp16, bf16, fp32, fp64) and device; any strides.
        mask_logits: (B, Q, K), any floating dtype, shared by all heads. Query q attends key k where the
            logit is >= 0 (sigmoid >= 0.5); a query whose keys are all blocked attends to all of them.
            It gets no gradient (the mask is a hard threshold).
        backend: "triton", "torch" (masked softmax in fp32, materialising (B, H, Q, K) scores), or "auto"
            (Triton on CUDA, the PyTorch path elsewhere). "triton" on CPU tensors needs TRITON_INTERPRET=1
            set before tarvis_fast.kernels is imported.

    Returns:
        (B, H, Q, D) in q's dtype; softmax scale 1/sqrt(D).
    """
    _check_inputs(q, k, v, mask_logits)
    resolve_backend(backend, q.device, OP)
    return masked_cross_attention_torch(q, k, v, mask_logits)


def _check_inputs(q: Tensor, k: Tensor, v: Tensor, mask_logits: Tensor) -> None:
    """Ranks, sizes, dtypes and devices."""
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 4:
            raise ValueError(f"{OP}: {name} must be (B, H, L, D), got shape {tuple(t.shape)}")
    check_floating(OP, q=q, k=k, v=v)
    if k.shape != v.shape:
        raise ValueError(f"{OP}: k and v must have one shape (B, H, K, D), got {tuple(k.shape)} and {tuple(v.shape)}")
    b, h, num_queries, d = q.shape
    num_keys = k.shape[2]
    if (k.shape[0], k.shape[1], k.shape[3]) != (b, h, d):
        raise ValueError(f"{OP}: k {tuple(k.shape)} must share B, H and D with q {tuple(q.shape)}")
    if num_keys == 0 or d == 0:
        raise ValueError(f"{OP}: need at least one key and one channel, got K={num_keys}, D={d}")
    if mask_logits.shape != (b, num_queries, num_keys):
        raise ValueError(
            f"{OP}: mask_logits must be (B, Q, K) = {(b, num_queries, num_keys)}, got {tuple(mask_logits.shape)}"
        )
    if not mask_logits.is_floating_point():
        raise TypeError(f"{OP}: mask_logits must be floating point (logits, blocked where < 0), got {mask_logits.dtype}")
    if mask_logits.device != q.device:
        raise ValueError(f"{OP}: mask_logits must be on q's device {q.device}, got {mask_logits.device}")
