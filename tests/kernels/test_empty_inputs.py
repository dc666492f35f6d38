"""Every op runs forward and backward when a dimension is empty, on each of its backends (the Triton ones under
TRITON_INTERPRET=1 on CPU): the output has its empty shape, and every input gets a gradient of its own shape,
all zero where nothing was computed. The loss is `out.sum()`, whose backward hands the op an expanded gradient
(all strides 0), the case that broke the Triton backward of masked attention for Q = 0 or B = 0.

The dimensions an op refuses are the ones that leave it undefined: attention over zero keys, deformable
attention over zero levels; those raise a ValueError that says so.
"""
from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from tarvis_fast.kernels import (
    MultiheadAttention,
    masked_cross_attention,
    ms_deform_attn,
    window_attention,
)
from torch import Tensor

D = 32  # a head size every backend takes


def msda_case(backend: str, **sizes: int) -> tuple[Callable[..., Tensor], list[Tensor]]:
    dims = {"N": 2, "Lq": 5, "M": 2, "P": 3} | sizes
    shapes = torch.tensor([[4, 6], [2, 3]])
    starts = torch.tensor([0, 24])
    value = torch.randn(dims["N"], 30, dims["M"], D)
    locations = torch.rand(dims["N"], dims["Lq"], dims["M"], 2, dims["P"], 2)
    weights = torch.rand(dims["N"], dims["Lq"], dims["M"], 2, dims["P"])
    return (lambda v, loc, w: ms_deform_attn(v, shapes, starts, loc, w, backend=backend)), [value, locations, weights]


def qkv(**sizes: int) -> tuple[list[Tensor], Tensor]:
    dims = {"B": 2, "H": 2, "Q": 5, "K": 7} | sizes
    q = torch.randn(dims["B"], dims["H"], dims["Q"], D)
    k, v = (torch.randn(dims["B"], dims["H"], dims["K"], D) for _ in range(2))
    return [q, k, v], torch.randn(dims["B"], dims["Q"], dims["K"])


def masked_case(backend: str, **sizes: int) -> tuple[Callable[..., Tensor], list[Tensor]]:
    inputs, logits = qkv(**sizes)
    return (lambda q, k, v: masked_cross_attention(q, k, v, logits, backend=backend)), inputs


def window_case(backend: str, **sizes: int) -> tuple[Callable[..., Tensor], list[Tensor]]:
    inputs, _ = qkv(**sizes)
    return (lambda q, k, v: window_attention(q, k, v, backend=backend)), inputs


def mha_case(backend: str, masked: bool, **sizes: int) -> tuple[Callable[..., Tensor], list[Tensor]]:
    dims = {"B": 2, "Q": 5, "K": 7} | sizes
    torch.manual_seed(0)
    module = MultiheadAttention(2 * D, 2)
    query, key = torch.randn(dims["B"], dims["Q"], 2 * D), torch.randn(dims["B"], dims["K"], 2 * D)
    logits = torch.randn(dims["B"], dims["Q"], dims["K"]) if masked else None
    return (lambda q, k: module(q, k, k, mask_logits=logits, backend=backend)), [query, key]


CASES = {
    **{f"msda-{backend}-{dim}=0": (msda_case, (backend,), {dim: 0})
       for backend in ("torch", "triton") for dim in ("N", "Lq", "M", "P")},
    **{f"masked-{backend}-{dim}=0": (masked_case, (backend,), {dim: 0})
       for backend in ("torch", "triton") for dim in ("B", "H", "Q")},
    **{f"window-{backend}-{dim}=0": (window_case, (backend,), {dim: 0})
       for backend in ("torch", "sdpa") for dim in ("B", "H", "Q")},
    **{f"mha-{'masked' if masked else 'plain'}-{backend}-{dim}=0": (mha_case, (backend, masked), {dim: 0})
       for backend in ("torch", "triton") for masked in (True, False) for dim in ("B", "Q")},
}


@pytest.mark.parametrize("name", CASES)
def test_forward_and_backward_with_an_empty_dimension(name: str):
    build, args, sizes = CASES[name]
    op, inputs = build(*args, **sizes)
    inputs = [t.requires_grad_() for t in inputs]
    out = op(*inputs)
    if "P" in sizes:  # every query samples nothing
        assert not out.any()
    out.sum().backward()
    for t in inputs:
        assert t.grad is not None and t.grad.shape == t.shape
        if out.numel() == 0 or "P" in sizes:  # nothing reached the output, so nothing flows back
            assert not t.grad.any()


def run(case: tuple[Callable[..., Tensor], list[Tensor]]) -> Tensor:
    op, inputs = case
    return op(*inputs)


REFUSED = {
    "msda-no-level": (lambda: ms_deform_attn(torch.randn(1, 0, 2, D), torch.zeros(0, 2, dtype=torch.long),
                                             torch.zeros(0, dtype=torch.long), torch.rand(1, 5, 2, 0, 3, 2),
                                             torch.rand(1, 5, 2, 0, 3)), "at least one level"),
    "masked-no-key": (lambda: run(masked_case("torch", K=0)), "at least one key"),
    "window-no-key": (lambda: run(window_case("torch", K=0)), "at least one key"),
}


@pytest.mark.parametrize("name", REFUSED)
def test_undefined_empty_inputs_are_refused(name: str):
    call, message = REFUSED[name]
    with pytest.raises(ValueError, match=message):
        call()
