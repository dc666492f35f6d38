"""window_attention: every backend against a float64 softmax written out here, values and gradients."""
from __future__ import annotations

import math

import pytest
import torch

from tarvis_fast.kernels import window_attention
from tarvis_fast.kernels.window_attention import xformers_ops

CPU_BACKENDS = ("auto", "sdpa", "torch")


def reference_fp64(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / sqrt(D)) v, one batch entry and head at a time, in float64."""
    q, k, v = q.double(), k.double(), v.double()
    out = torch.empty(q.shape, dtype=torch.float64)
    for b in range(q.shape[0]):
        for h in range(q.shape[1]):
            weights = torch.softmax(q[b, h] @ k[b, h].T / math.sqrt(q.shape[-1]), dim=-1)
            out[b, h] = weights @ v[b, h]
    return out


def head_split(batch: int, length: int, heads: int, dim: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """(B, H, L, D) as the strided view that splitting a (B, L, H·D) projection gives."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, length, heads * dim, generator=gen, dtype=torch.float64).to(dtype)
    return x.view(batch, length, heads, dim).transpose(1, 2)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize(
    ("dtype", "atol"),
    # fp32: accumulation error of 32-term dot products and a 252-term softmax; bf16: output rounding (8 bits).
    [(torch.float64, 1e-12), (torch.float32, 2e-6), (torch.bfloat16, 2e-2)],
)
def test_matches_fp64_softmax_at_neck_window_shape(backend: str, dtype: torch.dtype, atol: float) -> None:
    # One window of the neck at T = 3: 84 tokens per frame, 8 heads of 32 channels; 3 windows in the batch.
    q, k, v = (head_split(3, 84 * 3, 8, 32, dtype, seed) for seed in (0, 1, 2))
    out = window_attention(q, k, v, backend=backend)
    assert out.shape == q.shape and out.dtype == dtype
    torch.testing.assert_close(out.double(), reference_fp64(q, k, v), atol=atol, rtol=0)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_cross_lengths_and_gradients(backend: str) -> None:
    q = head_split(2, 7, 3, 16, torch.float64, 3).requires_grad_()
    k = head_split(2, 19, 3, 16, torch.float64, 4).requires_grad_()
    v = head_split(2, 19, 3, 16, torch.float64, 5).requires_grad_()
    grad_out = torch.randn(2, 3, 7, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    out = window_attention(q, k, v, backend=backend)
    grads = torch.autograd.grad(out, (q, k, v), grad_out)
    expected = reference_fp64(q, k, v)
    expected_grads = torch.autograd.grad(expected, (q, k, v), grad_out)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


def test_bad_inputs_are_named() -> None:
    q = torch.randn(1, 2, 5, 8)
    with pytest.raises(ValueError, match="backend must be one of"):
        window_attention(q, q, q, backend="flash")
    with pytest.raises(ValueError, match="q must be"):
        window_attention(q[0], q, q)
    with pytest.raises(ValueError, match="k and v must have one shape"):
        window_attention(q, q, q[:, :, :3])
    with pytest.raises(ValueError, match="must share B, H and D"):
        window_attention(q, torch.randn(1, 3, 5, 8), torch.randn(1, 3, 5, 8))
    with pytest.raises(TypeError, match="one dtype"):
        window_attention(q, q.double(), q.double())
    with pytest.raises(RuntimeError, match="xformers"):
        window_attention(q, q, q, backend="xformers")  # no xformers on CPU: missing, or no CPU kernels


@pytest.mark.gpu
@pytest.mark.skipif(xformers_ops() is None, reason="xformers is not installed")
def test_xformers_matches_sdpa_on_gpu() -> None:
    q, k, v = (head_split(4, 84 * 12, 8, 32, torch.float16, seed).cuda() for seed in (0, 1, 2))
    out = window_attention(q, k, v, backend="xformers")
    torch.testing.assert_close(out.double().cpu(), reference_fp64(q.cpu(), k.cpu(), v.cpu()), atol=2e-3, rtol=0)
