"""GPU report cases for multi-scale deformable attention (run through `python bench/gpu_report.py --only msda`).

Shapes are TarViS's neck (SPEC §2.3): 3 levels at strides 32, 16, 8; M = 8 heads of D = 32; P = 4 points;
every value token is a query (Lq = S), batched over frames:
- YouTube-VIS inference clip: N = 12 frames of a 448x832 padded input (levels 14x26, 28x52, 56x104);
- training: N = 3 frames of 512x512 (levels 16x16, 32x32, 64x64).
Locations scatter a couple of pixels around each query's own pixel, as a trained model's offsets do, so
that the cache behaviour of the gathers is realistic.

Rows per shape, dtype and mode: the PyTorch path under autograd (the group's reference), the same path as the
custom op runs it (`backend="torch"`: its backward recomputes the samples level by level), Deformable-DETR's naive PyTorch
reference (`naive_reference`, what the PyTorch path must beat in time at no more memory), the PyTorch path
torch.compile'd, ours (Triton), and the original nvcc-built `MultiScaleDeformableAttention` op when it is
importable (build it from Deformable-DETR's or Mask2Former's `ops/`); that op is fp32-only and is reported
as skipped in bf16. The PyTorch path computes bf16 inputs in fp32 (see kernels/msda/reference.py); the naive
reference computes in the inputs' dtype, as the original does.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from benchcase import BenchCase
from torch import Tensor

from tarvis_fast.kernels import ms_deform_attn
from tarvis_fast.kernels.msda.reference import ms_deform_attn_torch


@dataclass(frozen=True)
class Shape:
    name: str
    frames: int
    levels: tuple[tuple[int, int], ...]
    heads: int = 8
    head_dim: int = 32
    points: int = 4

    @property
    def tokens(self) -> int:
        return sum(h * w for h, w in self.levels)


SHAPES = (
    Shape("ytvis-infer 12x448x832", frames=12, levels=((14, 26), (28, 52), (56, 104))),
    Shape("train 3x512x512", frames=3, levels=((16, 16), (32, 32), (64, 64))),
)
DTYPES = (torch.float32, torch.bfloat16)
MODES = ("fwd", "fwd+bwd")
ORIGINAL_IM2COL_STEP = 128  # what Mask2Former / TarViS pass


def make_inputs(shape: Shape, dtype: torch.dtype, device: torch.device, requires_grad: bool) -> dict[str, Tensor]:
    n, s, m, d, p = shape.frames, shape.tokens, shape.heads, shape.head_dim, shape.points
    num_levels = len(shape.levels)
    g = torch.Generator(device=device).manual_seed(0)
    # Each query's reference point is the centre of its own pixel, normalised (x, y); offsets ~ 2 pixels.
    centres = []
    for h, w in shape.levels:
        ys, xs = torch.meshgrid(
            (torch.arange(h, device=device) + 0.5) / h, (torch.arange(w, device=device) + 0.5) / w, indexing="ij"
        )
        centres.append(torch.stack([xs.flatten(), ys.flatten()], dim=-1))
    reference = torch.cat(centres)[None, :, None, None, None, :]  # (1, S, 1, 1, 1, 2)
    sizes = torch.tensor([[w, h] for h, w in shape.levels], device=device, dtype=torch.float32)[:, None, :]
    offsets = 2 * torch.randn(n, s, m, num_levels, p, 2, device=device, generator=g) / sizes
    logits = torch.randn(n, s, m, num_levels * p, device=device, generator=g)
    inputs = {
        "value": torch.randn(n, s, m, d, device=device, generator=g).to(dtype),
        "spatial_shapes": torch.tensor(shape.levels, dtype=torch.int64, device=device),
        "level_start_index": torch.tensor(
            [sum(h * w for h, w in shape.levels[:i]) for i in range(num_levels)], device=device
        ),
        "sampling_locations": (reference + offsets).to(dtype),
        "attention_weights": logits.softmax(-1).view(n, s, m, num_levels, p).to(dtype),
    }
    for key in ("value", "sampling_locations", "attention_weights"):
        inputs[key].requires_grad_(requires_grad)
    return inputs


def min_bytes(shape: Shape, dtype: torch.dtype, mode: str) -> int:
    """Value, locations and weights read once and the output written once; backward adds grad_output read
    and the three gradients written."""
    n, s, m, d = shape.frames, shape.tokens, shape.heads, shape.head_dim
    samples = n * s * m * len(shape.levels) * shape.points
    value = output = n * s * m * d
    elements = value + 3 * samples + output  # locations are 2 per sample, weights 1
    if mode == "fwd+bwd":
        elements += output + value + 3 * samples
    return elements * dtype.itemsize


Impl = Callable[[dict[str, Tensor]], Tensor]


def naive_reference(value: Tensor, level_shapes, sampling_locations: Tensor, attention_weights: Tensor) -> Tensor:
    """Deformable-DETR's `ms_deform_attn_core_pytorch`, re-derived from what it is documented to do: per level,
    the value tokens as (N * M, D, H_l, W_l) images and that level's grid (N * M, Lq, P, 2) copied out of
    `2 * locations - 1`; one `grid_sample` (bilinear, zeros, align_corners=False) each; every level's samples
    stacked to (N * M, D, Lq, L * P), multiplied by the weights and summed over L * P; autograd differentiates it
    and so keeps the stacked samples for the backward. Same shapes as `ms_deform_attn_torch`."""
    n, _, m, d = value.shape
    _, lq, _, num_levels, p, _ = sampling_locations.shape
    grids = 2 * sampling_locations - 1
    samples = []
    for level, (tokens, (h, w)) in enumerate(zip(value.split([h * w for h, w in level_shapes], dim=1), level_shapes)):
        image = tokens.flatten(2).transpose(1, 2).reshape(n * m, d, h, w)
        grid = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)  # (N * M, Lq, P, 2), a copy
        samples.append(F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False))
    weights = attention_weights.transpose(1, 2).reshape(n * m, 1, lq, num_levels * p)
    out = (torch.stack(samples, dim=-2).flatten(-2) * weights).sum(-1).view(n, m * d, lq)
    return out.transpose(1, 2).contiguous()


def _naive(shape: Shape) -> Impl:
    def run(x: dict[str, Tensor]) -> Tensor:
        return naive_reference(x["value"], shape.levels, x["sampling_locations"], x["attention_weights"])
    return run


def _torch_path(shape: Shape) -> Impl:
    def run(x: dict[str, Tensor]) -> Tensor:
        return ms_deform_attn_torch(x["value"], shape.levels, x["sampling_locations"], x["attention_weights"])
    return run


def _torch_op(x: dict[str, Tensor]) -> Tensor:
    return ms_deform_attn(**x, backend="torch")


def _triton(x: dict[str, Tensor]) -> Tensor:
    return ms_deform_attn(**x, backend="triton")


class _OriginalOp(torch.autograd.Function):
    """The original extension's forward and backward, wired as its own MSDeformAttnFunction does."""

    @staticmethod
    def forward(ctx, value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
        import MultiScaleDeformableAttention as msda

        ctx.save_for_backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
        return msda.ms_deform_attn_forward(
            value, spatial_shapes, level_start_index, sampling_locations, attention_weights, ORIGINAL_IM2COL_STEP
        )

    @staticmethod
    def backward(ctx, grad_output):
        import MultiScaleDeformableAttention as msda

        value, spatial_shapes, level_start_index, sampling_locations, attention_weights = ctx.saved_tensors
        grad_value, grad_locations, grad_weights = msda.ms_deform_attn_backward(
            value, spatial_shapes, level_start_index, sampling_locations, attention_weights,
            grad_output.contiguous(), ORIGINAL_IM2COL_STEP,
        )
        return grad_value, None, None, grad_locations, grad_weights


def _original(x: dict[str, Tensor]) -> Tensor:
    if x["value"].dtype not in (torch.float32, torch.float64):
        raise TypeError("skipped: the original op is fp32/fp64 only")
    return _OriginalOp.apply(
        x["value"], x["spatial_shapes"], x["level_start_index"], x["sampling_locations"], x["attention_weights"]
    )


def _setup(impl: Impl, shape: Shape, dtype: torch.dtype, mode: str, device: torch.device):
    """Inputs allocated, one warm-up call made (JIT / torch.compile), the timed function returned."""

    def setup() -> Callable[[], object]:
        backward = mode == "fwd+bwd"
        x = make_inputs(shape, dtype, device, requires_grad=backward)
        differentiable = [x["value"], x["sampling_locations"], x["attention_weights"]]
        grad_output = torch.randn(shape.frames, shape.tokens, shape.heads * shape.head_dim, device=device, dtype=dtype)

        def run() -> object:
            if not backward:
                with torch.no_grad():
                    return impl(x)
            return torch.autograd.grad(impl(x), differentiable, grad_output)

        run()
        return run

    return setup


def cases(device: torch.device) -> Iterable[BenchCase]:
    have_original = importlib.util.find_spec("MultiScaleDeformableAttention") is not None
    for shape in SHAPES:
        compiled = torch.compile(_torch_path(shape))
        impls: list[tuple[str, Impl]] = [
            ("torch", _torch_path(shape)), ("torch op (backward recomputes)", _torch_op),
            ("naive reference (Deformable-DETR)", _naive(shape)),
            ("torch.compile", compiled), ("triton", _triton),
        ]
        if have_original:
            impls.append(("original CUDA op", _original))
        for dtype in DTYPES:
            for mode in MODES:
                group = f"msda {shape.name} {str(dtype).removeprefix('torch.')}"
                for name, impl in impls:
                    yield BenchCase(group, name, mode, _setup(impl, shape, dtype, mode, device),
                                    min_bytes(shape, dtype, mode))
