"""CPU benchmark of multi-scale deformable attention's PyTorch path (the Triton kernels' GPU numbers come
from `python bench/gpu_report.py --only msda`; their CPU interpreter is a test vehicle, not timed).

    pytest bench/test_bench_msda.py --benchmark-enable --benchmark-only

Shape: TarViS's neck on 2 frames of a 256x384 input (levels 8x12, 16x24, 32x48; M = 8, D = 32, P = 4,
Lq = S = 2016), fp32. Rows: the op's forward (queries in chunks) and forward + backward (its backward
recomputes the samples per chunk), the plain autograd reference's forward + backward, and the reference
torch.compile'd (forward).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from cases_msda import Shape, make_inputs  # noqa: E402

from tarvis_fast.kernels import ms_deform_attn  # noqa: E402
from tarvis_fast.kernels.msda.reference import ms_deform_attn_torch  # noqa: E402

SHAPE = Shape("cpu 2x256x384", frames=2, levels=((8, 12), (16, 24), (32, 48)))
CPU = torch.device("cpu")


def _grad_output() -> torch.Tensor:
    return torch.randn(SHAPE.frames, SHAPE.tokens, SHAPE.heads * SHAPE.head_dim)


def _differentiable(x: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    return [x["value"], x["sampling_locations"], x["attention_weights"]]


@pytest.mark.benchmark(group="msda cpu fwd")
def test_op_forward(benchmark) -> None:
    x = make_inputs(SHAPE, torch.float32, CPU, requires_grad=False)
    out = benchmark(lambda: ms_deform_attn(**x, backend="torch"))
    assert out.shape == (SHAPE.frames, SHAPE.tokens, SHAPE.heads * SHAPE.head_dim)


@pytest.mark.benchmark(group="msda cpu fwd")
def test_reference_compiled_forward(benchmark) -> None:
    x = make_inputs(SHAPE, torch.float32, CPU, requires_grad=False)
    compiled = torch.compile(ms_deform_attn_torch)
    args = (x["value"], SHAPE.levels, x["sampling_locations"], x["attention_weights"])
    expected = ms_deform_attn_torch(*args)
    out = benchmark(lambda: compiled(*args))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.benchmark(group="msda cpu fwd+bwd")
def test_op_forward_backward(benchmark) -> None:
    x = make_inputs(SHAPE, torch.float32, CPU, requires_grad=True)
    grad_output = _grad_output()
    benchmark(lambda: torch.autograd.grad(ms_deform_attn(**x, backend="torch"), _differentiable(x), grad_output))


@pytest.mark.benchmark(group="msda cpu fwd+bwd")
def test_reference_autograd_forward_backward(benchmark) -> None:
    x = make_inputs(SHAPE, torch.float32, CPU, requires_grad=True)
    grad_output = _grad_output()

    def step():
        out = ms_deform_attn_torch(x["value"], SHAPE.levels, x["sampling_locations"], x["attention_weights"])
        return torch.autograd.grad(out, _differentiable(x), grad_output)

    benchmark(step)
