"""GPU report cases for the temporal neck's window attention (`python bench/gpu_report.py --only window_attention`).

Shapes are TarViS's neck (SPEC §2.3): one batch entry per 64x64-pixel window, 84·T tokens each (4 + 16 + 64
per frame at strides 32, 16, 8), 8 heads of 32:
- YouTube-VIS inference clip, T = 12 at 448x832: 91 windows of 1,008 tokens;
- training clip, T = 3 at 512x512: 64 windows of 252 tokens.
bf16, the dtype the neck's window attention runs in under autocast.

Rows per shape and mode: the math reference (explicit softmax in fp32, the group's reference), SDPA, and
xformers' memory_efficient_attention when it imports.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from benchcase import BenchCase
from torch import Tensor

from tarvis_fast.kernels import window_attention
from tarvis_fast.kernels.window_attention import xformers_ops


@dataclass(frozen=True)
class Shape:
    name: str
    windows: int
    tokens: int
    heads: int = 8
    head_dim: int = 32


SHAPES = (
    Shape("ytvis-infer 12x448x832", windows=(448 // 64) * (832 // 64), tokens=84 * 12),
    Shape("train 3x512x512", windows=(512 // 64) ** 2, tokens=84 * 3),
)
DTYPE = torch.bfloat16
MODES = ("fwd", "fwd+bwd")


def make_inputs(shape: Shape, dtype: torch.dtype, device: torch.device, requires_grad: bool) -> list[Tensor]:
    """q, k, v (windows, H, tokens, D) as the head-split views of (windows, tokens, H·D) projections."""
    g = torch.Generator(device=device).manual_seed(0)
    c = shape.heads * shape.head_dim
    return [
        torch.randn(shape.windows, shape.tokens, c, device=device, generator=g, dtype=dtype)
        .requires_grad_(requires_grad).view(shape.windows, shape.tokens, shape.heads, shape.head_dim).transpose(1, 2)
        for _ in range(3)
    ]


def min_bytes(shape: Shape, dtype: torch.dtype, mode: str) -> int:
    """q, k, v read once and the output written once; the backward adds the output gradient and dq, dk, dv."""
    elements = 4 * shape.windows * shape.tokens * shape.heads * shape.head_dim
    return (2 * elements if mode == "fwd+bwd" else elements) * dtype.itemsize


def _setup(backend: str, shape: Shape, mode: str, device: torch.device):
    """Inputs allocated, one warm-up call made, the timed function returned."""

    def setup() -> Callable[[], object]:
        backward = mode == "fwd+bwd"
        q, k, v = make_inputs(shape, DTYPE, device, requires_grad=backward)
        grad_output = torch.randn_like(q)

        def run() -> object:
            if not backward:
                with torch.no_grad():
                    return window_attention(q, k, v, backend=backend)
            return torch.autograd.grad(window_attention(q, k, v, backend=backend), (q, k, v), grad_output)

        run()
        return run

    return setup


def cases(device: torch.device) -> Iterable[BenchCase]:
    backends = ["torch", "sdpa"] + (["xformers"] if xformers_ops() is not None else [])
    for shape in SHAPES:
        for mode in MODES:
            group = f"window attn {shape.name} {shape.windows}x{shape.tokens} {str(DTYPE).removeprefix('torch.')}"
            for backend in backends:
                yield BenchCase(group, backend, mode, _setup(backend, shape, mode, device),
                                min_bytes(shape, DTYPE, mode))
