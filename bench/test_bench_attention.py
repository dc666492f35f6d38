"""CPU benchmark of the attention ops' PyTorch paths (the Triton kernel's GPU numbers come from
`python bench/gpu_report.py --only masked_attention window_attention`; its CPU interpreter is a test vehicle,
not timed).

    pytest bench/test_bench_attention.py --benchmark-enable --benchmark-only

fp32. Masked cross-attention at a decoder shape of a T = 3, 512x512 training clip at stride 16 (Q = 169,
K = 3,072, 8 heads of 32): the masked-softmax path against SDPA with a bool mask. Window attention at the
neck's training shape (64 windows of 252 tokens): the math reference against SDPA.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import cases_masked_attention as masked  # noqa: E402
import cases_window_attention as windowed  # noqa: E402

from tarvis_fast.kernels import masked_cross_attention, window_attention  # noqa: E402
from tarvis_fast.kernels.masked_attention.reference import masked_cross_attention_sdpa  # noqa: E402

CPU = torch.device("cpu")
MASKED_SHAPE = masked.Shape("Q=169 train T=3 stride 16", queries=169, frames=3, height=32, width=32)
WINDOW_SHAPE = windowed.SHAPES[1]


def _masked_inputs(requires_grad: bool) -> tuple[torch.Tensor, ...]:
    x = masked.make_inputs(MASKED_SHAPE, torch.float32, CPU, requires_grad)
    return x["q"], x["k"], x["v"], x["mask_logits"]


@pytest.mark.benchmark(group="masked attention cpu fwd")
@pytest.mark.parametrize("impl", ["masked softmax", "sdpa bool mask"])
def test_masked_forward(benchmark, impl: str) -> None:
    q, k, v, mask_logits = _masked_inputs(requires_grad=False)
    fn = masked_cross_attention_sdpa if impl == "sdpa bool mask" else masked_cross_attention
    out = benchmark(fn, q, k, v, mask_logits)
    torch.testing.assert_close(out, masked_cross_attention(q, k, v, mask_logits, backend="torch"),
                               atol=1e-5, rtol=0)


@pytest.mark.benchmark(group="masked attention cpu fwd+bwd")
@pytest.mark.parametrize("impl", ["masked softmax", "sdpa bool mask"])
def test_masked_forward_backward(benchmark, impl: str) -> None:
    q, k, v, mask_logits = _masked_inputs(requires_grad=True)
    fn = masked_cross_attention_sdpa if impl == "sdpa bool mask" else masked_cross_attention
    grad_output = torch.randn_like(q)
    benchmark(lambda: torch.autograd.grad(fn(q, k, v, mask_logits), (q, k, v), grad_output))


@pytest.mark.benchmark(group="window attention cpu fwd")
@pytest.mark.parametrize("backend", ["torch", "sdpa"])
def test_window_forward(benchmark, backend: str) -> None:
    q, k, v = windowed.make_inputs(WINDOW_SHAPE, torch.float32, CPU, requires_grad=False)
    out = benchmark(window_attention, q, k, v, backend=backend)
    assert out.shape == q.shape


@pytest.mark.benchmark(group="window attention cpu fwd+bwd")
@pytest.mark.parametrize("backend", ["torch", "sdpa"])
def test_window_forward_backward(benchmark, backend: str) -> None:
    q, k, v = windowed.make_inputs(WINDOW_SHAPE, torch.float32, CPU, requires_grad=True)
    grad_output = torch.randn_like(q)
    benchmark(lambda: torch.autograd.grad(window_attention(q, k, v, backend=backend), (q, k, v), grad_output))
