"""PyTorch paths of masked cross-attention: the masked softmax (the reference) and SDPA with a bool mask.

Both take head-split tensors q (B, H, Q, D), k and v (B, H, K, D) and mask logits (B, Q, K) shared by all
heads. Query q may attend key k where `mask_logits[b, q, k] >= 0` (the sigmoid is >= 0.5; a NaN logit counts
as open, as `sigmoid(nan) < 0.5` is False); a query whose keys are all blocked attends to all of them.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def blocked_keys(mask_logits: Tensor) -> Tensor:
    """Which keys each query may not attend: (B, Q, K) logits -> (B, Q, K) bool, none in fully blocked rows."""
    blocked = mask_logits < 0
    return blocked.logical_and_(~blocked.all(dim=-1, keepdim=True))


def open_keys(mask_logits: Tensor) -> Tensor:
    """Which keys each query may attend: (B, Q, K) logits -> (B, Q, K) bool, fully blocked rows opened."""
    return ~blocked_keys(mask_logits)


def masked_cross_attention_torch(q: Tensor, k: Tensor, v: Tensor, mask_logits: Tensor) -> Tensor:
    """Masked softmax attention, computed in fp32 (fp64 for fp64 inputs); returns (B, H, Q, D) in q's dtype.

    Materialises the (B, H, Q, K) scores: this is the reference, not the fast path (on CPU it is the path).
    The scale is applied to q (Q·D elements) rather than to the scores (Q·K), and the mask is written into the
    scores in place (autograd does not need the product's output), so the scores are written once.
    """
    compute_dtype = torch.promote_types(q.dtype, torch.float32)
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = torch.matmul(q.to(compute_dtype) * scale, k.to(compute_dtype).transpose(-1, -2))
    scores.masked_fill_(blocked_keys(mask_logits)[:, None], float("-inf"))
    out = torch.matmul(scores.softmax(dim=-1), v.to(compute_dtype))
    return out.to(q.dtype)


def masked_cross_attention_sdpa(q: Tensor, k: Tensor, v: Tensor, mask_logits: Tensor) -> Tensor:
    """The same attention through `F.scaled_dot_product_attention` with a (B, 1, Q, K) bool mask."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=open_keys(mask_logits)[:, None])
