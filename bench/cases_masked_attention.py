"""GPU report cases for masked cross-attention (run through `python bench/gpu_report.py --only masked_attention`).

Shapes are TarViS's decoder (SPEC §2.6): B = 1, 8 heads of 32, Q = 169 (YouTube-VIS: 128 instance + 1
background + 40 semantic queries) and Q = 253 (VIPSeg), over the level features of one clip at strides 32, 16
and 8, for the inference clip (T = 12 at 448x832: K = 4,368 / 17,472 / 69,888) and a training clip (T = 3 at
512x512: K = 768 / 3,072 / 12,288). bf16, the dtype the decoder runs in under autocast.

Mask logits look like a decoder's: smooth blobs (random logits at 1/8 of the level's resolution, upsampled
trilinearly), about a third of the keys open, and one query in ten with no open key (which attends to all).

Rows per shape and mode, each timing everything a decoder layer pays per call (the mask is new every layer):
- torch: the PyTorch path (masked softmax in fp32, (B, H, Q, K) scores), the group's reference;
- sdpa bool mask: `F.scaled_dot_product_attention` with the (B, 1, Q, K) bool mask built from the logits;
- flex: `flex_attention` (torch.compile'd) with `create_block_mask` built from the same bool mask;
- flex, block mask prebuilt: the same with the mask built outside the timing (attention alone);
- triton: ours (bit-packing the logits, then the split-K kernels);
- sdpa unmasked: no mask at all, the floor a masked kernel can approach.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from benchcase import BenchCase
from torch import Tensor

from tarvis_fast.kernels import masked_cross_attention
from tarvis_fast.kernels.masked_attention.reference import (
    masked_cross_attention_sdpa,
    masked_cross_attention_torch,
    open_keys,
)


@dataclass(frozen=True)
class Shape:
    name: str
    queries: int
    frames: int
    height: int  # of the level
    width: int
    heads: int = 8
    head_dim: int = 32

    @property
    def keys(self) -> int:
        return self.frames * self.height * self.width


# (clip, T, padded image size); levels at strides 32, 16, 8.
CLIPS = (("ytvis-infer", 12, 448, 832), ("train", 3, 512, 512))
SHAPES = tuple(
    Shape(f"Q={queries} {clip} T={frames} stride {stride}", queries, frames, height // stride, width // stride)
    for clip, frames, height, width in CLIPS
    for stride in (32, 16, 8)
    for queries in (169, 253)
)
DTYPE = torch.bfloat16
MODES = ("fwd", "fwd+bwd")


def make_inputs(shape: Shape, dtype: torch.dtype, device: torch.device, requires_grad: bool) -> dict[str, Tensor]:
    """q (1, H, Q, D), k and v (1, H, K, D) and decoder-like mask logits (1, Q, K)."""
    g = torch.Generator(device=device).manual_seed(0)
    b, h, d = 1, shape.heads, shape.head_dim
    coarse = torch.randn(b * shape.queries, 1, shape.frames, max(1, shape.height // 8), max(1, shape.width // 8),
                         device=device, generator=g)
    logits = F.interpolate(coarse, size=(shape.frames, shape.height, shape.width), mode="trilinear",
                           align_corners=False).view(b, shape.queries, shape.keys) - 0.45
    logits[:, ::10] = -1.0  # no open key: these queries attend to everything
    tensors = {
        "q": torch.randn(b, h, shape.queries, d, device=device, generator=g),
        "k": torch.randn(b, h, shape.keys, d, device=device, generator=g),
        "v": torch.randn(b, h, shape.keys, d, device=device, generator=g),
    }
    inputs = {name: t.to(dtype).requires_grad_(requires_grad) for name, t in tensors.items()}
    inputs["mask_logits"] = logits.to(dtype)
    return inputs


def min_bytes(shape: Shape, dtype: torch.dtype, mode: str) -> int:
    """q, k, v and the mask logits read once, the output written once; the backward adds the output gradient
    read and dq, dk, dv written."""
    q_elems = shape.heads * shape.queries * shape.head_dim
    kv_elems = 2 * shape.heads * shape.keys * shape.head_dim
    elements = q_elems + kv_elems + shape.queries * shape.keys + q_elems
    if mode == "fwd+bwd":
        elements += q_elems + q_elems + kv_elems
    return elements * dtype.itemsize


Impl = Callable[[dict[str, Tensor]], Tensor]


def _qkv(x: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    return x["q"], x["k"], x["v"]


def _torch(x: dict[str, Tensor]) -> Tensor:
    return masked_cross_attention_torch(*_qkv(x), x["mask_logits"])


def _sdpa_bool(x: dict[str, Tensor]) -> Tensor:
    return masked_cross_attention_sdpa(*_qkv(x), x["mask_logits"])


def _triton(x: dict[str, Tensor]) -> Tensor:
    return masked_cross_attention(*_qkv(x), x["mask_logits"], backend="triton")


def _sdpa_unmasked(x: dict[str, Tensor]) -> Tensor:
    return F.scaled_dot_product_attention(*_qkv(x))


def _flex_block_mask(mask_logits: Tensor):
    from torch.nn.attention.flex_attention import create_block_mask

    is_open = open_keys(mask_logits)
    batch, num_queries, num_keys = is_open.shape

    def mask_mod(b, h, q_idx, kv_idx):
        return is_open[b, q_idx, kv_idx]

    return create_block_mask(mask_mod, batch, None, num_queries, num_keys, device=mask_logits.device, _compile=True)


def _flex_impls() -> tuple[Impl, Callable[[Tensor], Impl]]:
    """flex with the block mask built per call, and a factory for flex with a block mask built once."""
    from torch.nn.attention.flex_attention import flex_attention

    flex = torch.compile(flex_attention)

    def per_call(x: dict[str, Tensor]) -> Tensor:
        return flex(*_qkv(x), block_mask=_flex_block_mask(x["mask_logits"]))

    def prebuilt(mask_logits: Tensor) -> Impl:
        block_mask = _flex_block_mask(mask_logits)
        return lambda x: flex(*_qkv(x), block_mask=block_mask)

    return per_call, prebuilt


def _setup(impl: Impl | Callable[[Tensor], Impl], shape: Shape, mode: str, device: torch.device,
           needs_mask: bool = False):
    """Inputs allocated, one warm-up call made (JIT / torch.compile), the timed function returned.

    needs_mask: impl is a factory taking the mask logits (the prebuilt flex block mask)."""

    def setup() -> Callable[[], object]:
        backward = mode == "fwd+bwd"
        x = make_inputs(shape, DTYPE, device, requires_grad=backward)
        fn = impl(x["mask_logits"]) if needs_mask else impl
        grad_output = torch.randn_like(x["q"])

        def run() -> object:
            if not backward:
                with torch.no_grad():
                    return fn(x)
            return torch.autograd.grad(fn(x), _qkv(x), grad_output)

        run()
        return run

    return setup


def cases(device: torch.device) -> Iterable[BenchCase]:
    flex_per_call, flex_prebuilt = _flex_impls()
    impls: list[tuple[str, Impl, bool]] = [
        ("torch", _torch, False),
        ("sdpa bool mask", _sdpa_bool, False),
        ("flex", flex_per_call, False),
        ("flex, block mask prebuilt", flex_prebuilt, True),
        ("triton", _triton, False),
        ("sdpa unmasked (floor)", _sdpa_unmasked, False),
    ]
    for shape in SHAPES:
        for mode in MODES:
            group = f"masked attn {shape.name} K={shape.keys} {str(DTYPE).removeprefix('torch.')}"
            for name, impl, needs_mask in impls:
                yield BenchCase(group, name, mode, _setup(impl, shape, mode, device, needs_mask),
                                min_bytes(shape, DTYPE, mode))
