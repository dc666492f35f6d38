"""masked_cross_attention's PyTorch paths (masked softmax, SDPA with a bool mask) against a float64 reference
written out here, which attends to the open keys only (gathered, no -inf anywhere), and the input checks."""
from __future__ import annotations

import math

import pytest
import torch

from tarvis_fast.kernels import masked_cross_attention
from tarvis_fast.kernels.masked_attention.reference import masked_cross_attention_sdpa, masked_cross_attention_torch


def gathered_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """Per (b, h, query): softmax over the keys whose logit is >= 0, or over all keys if there are none; fp64."""
    q, k, v = q.double(), k.double(), v.double()
    out = torch.empty(q.shape, dtype=torch.float64)
    for b in range(q.shape[0]):
        for i in range(q.shape[2]):
            keys = torch.nonzero(mask_logits[b, i] >= 0).flatten()
            if keys.numel() == 0:
                keys = torch.arange(k.shape[2])
            for h in range(q.shape[1]):
                weights = torch.softmax(k[b, h, keys] @ q[b, h, i] / math.sqrt(q.shape[-1]), dim=0)
                out[b, h, i] = weights @ v[b, h, keys]
    return out


def make_inputs(batch: int, heads: int, queries: int, keys: int, dim: int, dtype: torch.dtype, seed: int = 0):
    """q, k, v as strided head-split views of (B, L, H·D) projections, and mask logits with every row kind:
    row 0 fully blocked, row 1 a single open key, row 2 all open, the rest about 30 % open."""
    gen = torch.Generator().manual_seed(seed)

    def heads_view(length: int) -> torch.Tensor:
        x = torch.randn(batch, length, heads * dim, generator=gen, dtype=torch.float64).to(dtype)
        return x.view(batch, length, heads, dim).transpose(1, 2)

    q, k, v = heads_view(queries), heads_view(keys), heads_view(keys)
    mask_logits = torch.randn(batch, queries, keys, generator=gen) - 0.5
    mask_logits[:, 0] = -3.0
    mask_logits[:, 1] = -3.0
    mask_logits[:, 1, keys // 2] = 0.0  # logit 0 is open
    mask_logits[:, 2] = 1.0
    return q, k, v, mask_logits


@pytest.mark.parametrize("path", [masked_cross_attention_torch, masked_cross_attention_sdpa])
def test_pytorch_paths_match_gathered_reference_fp64(path) -> None:
    q, k, v, mask_logits = make_inputs(2, 3, 9, 37, 16, torch.float64)
    torch.testing.assert_close(path(q, k, v, mask_logits), gathered_reference(q, k, v, mask_logits),
                               atol=1e-12, rtol=0)


@pytest.mark.parametrize(
    ("dtype", "atol"),
    # fp32: rounding of 32-term dots and a 70-term softmax; half types: output rounding plus input rounding
    # (the reference sees the same rounded inputs, so only the output rounding and fp32 math remain).
    [(torch.float32, 2e-6), (torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)],
)
def test_torch_backend_low_precision(dtype: torch.dtype, atol: float) -> None:
    q, k, v, mask_logits = make_inputs(1, 2, 21, 70, 32, dtype, seed=1)
    out = masked_cross_attention(q, k, v, mask_logits.to(dtype), backend="torch")
    assert out.dtype == dtype and out.shape == q.shape
    torch.testing.assert_close(out.double(), gathered_reference(q, k, v, mask_logits.to(dtype)), atol=atol, rtol=0)


def test_torch_backend_gradients_match_gathered_reference() -> None:
    q, k, v, mask_logits = make_inputs(1, 2, 6, 13, 8, torch.float64, seed=2)
    q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
    grad_out = torch.randn(q.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    got = torch.autograd.grad(masked_cross_attention(q, k, v, mask_logits, backend="torch"), (q, k, v), grad_out)
    want = torch.autograd.grad(gathered_reference(q, k, v, mask_logits), (q, k, v), grad_out)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-12, rtol=0)


def test_bad_inputs_are_named() -> None:
    q = torch.randn(1, 2, 4, 8)
    kv = torch.randn(1, 2, 6, 8)
    logits = torch.zeros(1, 4, 6)
    with pytest.raises(ValueError, match="q must be"):
        masked_cross_attention(q[0], kv, kv, logits)
    with pytest.raises(ValueError, match="k and v must have one shape"):
        masked_cross_attention(q, kv, kv[:, :, :5], logits)
    with pytest.raises(ValueError, match="must share B, H and D"):
        masked_cross_attention(q, kv[..., :4], kv[..., :4], logits)
    with pytest.raises(ValueError, match=r"mask_logits must be \(B, Q, K\) = \(1, 4, 6\)"):
        masked_cross_attention(q, kv, kv, logits[:, :, :5])
    with pytest.raises(TypeError, match="mask_logits must be floating point"):
        masked_cross_attention(q, kv, kv, logits > 0)
    with pytest.raises(TypeError, match="one dtype"):
        masked_cross_attention(q, kv.double(), kv.double(), logits)
    with pytest.raises(ValueError, match="at least one key"):
        masked_cross_attention(q, kv[:, :, :0], kv[:, :, :0], logits[:, :, :0])
    with pytest.raises(ValueError, match="backend must be one of"):
        masked_cross_attention(q, kv, kv, logits, backend="flex")
