"""CPU benchmark of multi-scale deformable attention's PyTorch path against Deformable-DETR's naive PyTorch
reference, side by side in one run (the Triton kernels' GPU numbers come from
`python bench/gpu_report.py --only msda`; their CPU interpreter is a test vehicle, not timed).

    pytest bench/test_bench_msda.py --benchmark-enable --benchmark-only

Shapes: TarViS's neck on 2 and 4 frames of a 256x384 input (levels 8x12, 16x24, 32x48; M = 8, D = 32, P = 4,
Lq = S = 2016), fp32. Rows per group: the op (`backend="torch"`: queries in chunks, a backward that recomputes
the samples level by level), the naive reference (`cases_msda.naive_reference`, autograd keeps all samples), the
PyTorch path under plain autograd, and the PyTorch path torch.compile'd (forward). Each row's extra_info holds
"peak_mib": the most memory the call's tensors held at once (PyTorch's profiler memory timeline, inputs excluded).
Timings are never asserted.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from cases_msda import Shape, make_inputs, naive_reference  # noqa: E402

from tarvis_fast.kernels import ms_deform_attn  # noqa: E402
from tarvis_fast.kernels.msda.reference import ms_deform_attn_torch  # noqa: E402

SHAPES = {
    "2x256x384": Shape("cpu 2x256x384", frames=2, levels=((8, 12), (16, 24), (32, 48))),
    "4x256x384": Shape("cpu 4x256x384", frames=4, levels=((8, 12), (16, 24), (32, 48))),
}
CPU = torch.device("cpu")


def peak_mib(fn) -> float | None:
    """MiB held at once by the tensors fn() allocates (PyTorch's profiler memory timeline; a private API, so
    None where it is missing)."""
    try:
        from torch.profiler._memory_profiler import MemoryProfileTimeline

        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True,
                                    record_shapes=True, with_stack=True) as prof:
            fn()
        _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline(CPU)
        return max(sum(s) for s in sizes) / 2**20
    except Exception:  # noqa: BLE001 - a memory figure is a nicety; the timing row stands without it
        return None


def _impls(shape: Shape):
    def op(x):
        return ms_deform_attn(**x, backend="torch")

    def naive(x):
        return naive_reference(x["value"], shape.levels, x["sampling_locations"], x["attention_weights"])

    def autograd_path(x):
        return ms_deform_attn_torch(x["value"], shape.levels, x["sampling_locations"], x["attention_weights"])

    return {"op": op, "naive": naive, "autograd": autograd_path}


def _differentiable(x: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    return [x["value"], x["sampling_locations"], x["attention_weights"]]


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("impl", ["op", "naive"])
def test_forward(benchmark, shape: str, impl: str) -> None:
    benchmark.group = f"msda cpu fwd {shape}"
    s = SHAPES[shape]
    x = make_inputs(s, torch.float32, CPU, requires_grad=False)
    fn = _impls(s)[impl]
    torch.testing.assert_close(fn(x), _impls(s)["autograd"](x), rtol=1e-5, atol=1e-5)
    benchmark.extra_info["peak_mib"] = peak_mib(lambda: fn(x))
    benchmark(lambda: fn(x))


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("impl", ["op", "naive", "autograd"])
def test_forward_backward(benchmark, shape: str, impl: str) -> None:
    benchmark.group = f"msda cpu fwd+bwd {shape}"
    s = SHAPES[shape]
    x = make_inputs(s, torch.float32, CPU, requires_grad=True)
    grad_output = torch.randn(s.frames, s.tokens, s.heads * s.head_dim)
    fn = _impls(s)[impl]

    def step():
        return torch.autograd.grad(fn(x), _differentiable(x), grad_output)

    benchmark.extra_info["peak_mib"] = peak_mib(step)
    benchmark(step)


def test_reference_compiled_forward(benchmark) -> None:
    benchmark.group = "msda cpu fwd 2x256x384"
    s = SHAPES["2x256x384"]
    x = make_inputs(s, torch.float32, CPU, requires_grad=False)
    compiled = torch.compile(ms_deform_attn_torch)
    args = (x["value"], s.levels, x["sampling_locations"], x["attention_weights"])
    expected = ms_deform_attn_torch(*args)
    out = benchmark(lambda: compiled(*args))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
