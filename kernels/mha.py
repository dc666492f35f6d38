"""`MultiheadAttention`: a drop-in for `nn.MultiheadAttention(C, H, batch_first=True)` on the fast attention ops.

Its parameters carry nn.MultiheadAttention's names and shapes (`in_proj_weight` (3C, C) with the q, k, v
projections stacked in that order, `in_proj_bias` (3C,), `out_proj` a Linear(C, C)), so state_dicts written by
nn.MultiheadAttention, the original TarViS checkpoints among them, load unchanged. What differs: forward
returns the output only (no attention weights), takes an optional per-query key mask as logits, has no
dropout, and can split a large batch into chunks.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .masked_attention import masked_cross_attention
from .window_attention import window_attention


class MultiheadAttention(nn.Module):
    """Multi-head attention with batch-first (B, L, C) inputs, unmasked or under mask logits.

    Args:
        embed_dim: C, the channels of query, key, value and output.
        num_heads: H; C must be divisible by it (head size C / H).
    """

    def __init__(self, embed_dim: int, num_heads: int) -> None:
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(
                f"MultiheadAttention: embed_dim ({embed_dim}) must be a positive multiple of num_heads ({num_heads})"
            )
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.MultiheadAttention's initialisation: xavier-uniform in_proj, zero biases, default Linear out_proj."""
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        self.out_proj.reset_parameters()
        nn.init.zeros_(self.out_proj.bias)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        *,
        mask_logits: Tensor | None = None,
        max_batch_per_chunk: int | None = None,
        backend: str = "auto",
    ) -> Tensor:
        """Attend from query to key/value.

        Args:
            query: (B, Lq, C). key, value: (B, Lk, C).
            mask_logits: optional (B, Lq, Lk), shared by all heads: query i attends key j where the logit is
                >= 0, and a query whose keys are all blocked attends to all of them (see
                `masked_cross_attention`). Without it attention is unmasked (`window_attention`).
            max_batch_per_chunk: process at most this many batch entries at a time (an inference memory
                guard, e.g. for the neck's many windows); the result is the same as in one piece.
            backend: "auto" | "triton" | "torch", the choice a model makes for all its ops, passed on to
                `masked_cross_attention` when mask_logits is given. Unmasked attention has no Triton kernel of its
                own: there "triton" means its fast path ("auto": xformers or SDPA), and `window_attention`'s
                "xformers" and "sdpa" are accepted as well.

        Returns:
            (B, Lq, C).
        """
        self._check_inputs(query, key, value, mask_logits)
        if max_batch_per_chunk is not None:
            if max_batch_per_chunk < 1:
                raise ValueError(f"MultiheadAttention: max_batch_per_chunk must be >= 1, got {max_batch_per_chunk}")
            if query.shape[0] > max_batch_per_chunk:
                return torch.cat([
                    self._attend(
                        query[i:i + max_batch_per_chunk], key[i:i + max_batch_per_chunk],
                        value[i:i + max_batch_per_chunk],
                        None if mask_logits is None else mask_logits[i:i + max_batch_per_chunk], backend,
                    )
                    for i in range(0, query.shape[0], max_batch_per_chunk)
                ])
        return self._attend(query, key, value, mask_logits, backend)

    def _attend(self, query: Tensor, key: Tensor, value: Tensor, mask_logits: Tensor | None, backend: str) -> Tensor:
        c = self.embed_dim
        w, b = self.in_proj_weight, self.in_proj_bias
        if key is query:  # self-attention with q = k (e.g. src + pos): one (2C, C) projection instead of two
            q, k = F.linear(query, w[:2 * c], b[:2 * c]).chunk(2, dim=-1)
        else:
            q, k = F.linear(query, w[:c], b[:c]), F.linear(key, w[c:2 * c], b[c:2 * c])
        v = F.linear(value, w[2 * c:], b[2 * c:])
        q, k, v = (self._split_heads(t) for t in (q, k, v))
        if mask_logits is None:
            # No Triton kernel for unmasked attention: its fast path is xformers or SDPA.
            unmasked_backend = "auto" if backend == "triton" else backend
            out = window_attention(q, k, v, backend=unmasked_backend)  # type: ignore[arg-type]
        else:
            out = masked_cross_attention(q, k, v, mask_logits, backend=backend)  # type: ignore[arg-type]
        batch, _, length, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(batch, length, c))

    def _split_heads(self, x: Tensor) -> Tensor:
        """(B, L, C) -> (B, H, L, C / H), a view."""
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.embed_dim // self.num_heads).transpose(1, 2)

    def _check_inputs(self, query: Tensor, key: Tensor, value: Tensor, mask_logits: Tensor | None) -> None:
        for name, t in (("query", query), ("key", key), ("value", value)):
            if t.dim() != 3 or t.shape[-1] != self.embed_dim:
                raise ValueError(
                    f"MultiheadAttention: {name} must be (B, L, {self.embed_dim}), got shape {tuple(t.shape)}"
                )
        if key.shape != value.shape:
            raise ValueError(
                f"MultiheadAttention: key and value must have one shape (B, Lk, C), got {tuple(key.shape)} "
                f"and {tuple(value.shape)}"
            )
        if key.shape[0] != query.shape[0]:
            raise ValueError(
                f"MultiheadAttention: query and key must share the batch size, got {query.shape[0]} and {key.shape[0]}"
            )
        if mask_logits is not None and mask_logits.shape != (query.shape[0], query.shape[1], key.shape[1]):
            raise ValueError(
                f"MultiheadAttention: mask_logits must be (B, Lq, Lk) = "
                f"{(query.shape[0], query.shape[1], key.shape[1])}, got {tuple(mask_logits.shape)}"
            )

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}"
