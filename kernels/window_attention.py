"""Unmasked multi-head attention on head-split tensors, e.g. the temporal neck's space-time window attention.

The neck attends within each 64x64-pixel window over all levels and frames: 84·T tokens per window, 8 heads
of 32 channels, one batch entry per window. No mask and no dropout, so any exact attention kernel serves:
xformers' memory-efficient kernel where it is installed and the tensors are on a GPU, PyTorch's SDPA otherwise.
"""
from __future__ import annotations

import functools
import importlib
import math
from types import ModuleType
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import check_qkv

OP = "window_attention"
WindowBackend = Literal["auto", "xformers", "sdpa", "torch"]
WINDOW_BACKENDS: tuple[str, ...] = ("auto", "xformers", "sdpa", "torch")


@functools.cache
def xformers_ops() -> ModuleType | None:
    """`xformers.ops` if it imports, else None (it is an optional dependency)."""
    try:
        return importlib.import_module("xformers.ops")
    except ImportError:
        return None


def window_attention(q: Tensor, k: Tensor, v: Tensor, *, backend: WindowBackend = "auto") -> Tensor:
    """softmax(q kᵀ / sqrt(D)) v per batch entry and head.

    Args:
        q: (B, H, Lq, D); k, v: (B, H, Lk, D), one floating dtype and device, any strides.
        backend: "xformers" (`xformers.ops.memory_efficient_attention`, CUDA only), "sdpa"
            (`F.scaled_dot_product_attention`), "torch" (explicit softmax in fp32, the reference), or "auto":
            xformers on CUDA when it is installed, SDPA otherwise.

    Returns:
        (B, H, Lq, D) in q's dtype.
    """
    check_qkv(OP, q, k, v)
    impl = _resolve(backend, q.device)
    if impl == "xformers":
        # xformers takes (B, L, H, D): the transposes are views, and its output comes back in that layout.
        out = xformers_ops().memory_efficient_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2)
    if impl == "sdpa":
        return F.scaled_dot_product_attention(q, k, v)
    return attention_torch(q, k, v)


def attention_torch(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """The math reference: explicit softmax in fp32 (fp64 for fp64 inputs), (B, H, Lq, D) in q's dtype."""
    compute_dtype = torch.promote_types(q.dtype, torch.float32)
    scores = torch.matmul(q.to(compute_dtype), k.to(compute_dtype).transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    return torch.matmul(scores.softmax(dim=-1), v.to(compute_dtype)).to(q.dtype)


def _resolve(backend: str, device: torch.device) -> str:
    if backend not in WINDOW_BACKENDS:
        raise ValueError(f"{OP}: backend must be one of {WINDOW_BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "xformers" if device.type == "cuda" and xformers_ops() is not None else "sdpa"
    if backend == "xformers":
        if xformers_ops() is None:
            raise RuntimeError(f"{OP}: backend='xformers' needs the xformers package, which does not import here")
        if device.type != "cuda":
            raise RuntimeError(f"{OP}: backend='xformers' has CUDA kernels only, got {device.type} tensors")
    return backend


