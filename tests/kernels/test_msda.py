"""Multi-scale deformable attention: the Triton kernels (under the interpreter on CPU) and the PyTorch path.

The reference throughout is `ms_deform_attn_torch`, the grid_sample formulation, run in float64 with
autograd for the gradients; the sampling convention itself is pinned by hand-computed values.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

import tarvis_fast.kernels.msda.op as msda_op
from tarvis_fast.kernels import ms_deform_attn
from tarvis_fast.kernels.msda.reference import ms_deform_attn_torch

BACKENDS = ("torch", "triton")


@dataclass(frozen=True)
class Case:
    """One problem size: levels (H_l, W_l), batch N, heads M, channels D, queries Lq, points P."""

    levels: tuple[tuple[int, int], ...]
    n: int
    m: int
    d: int
    lq: int
    p: int

    def __str__(self) -> str:
        return f"L{len(self.levels)}-N{self.n}-M{self.m}-D{self.d}-Lq{self.lq}-P{self.p}"


# Odd, non-square levels; P not a power of two (and P = 1); D = 32 and others; N * Lq * M rows that leave a
# ragged last block (and, for the larger cases, several blocks) in the kernels.
CASES = [
    Case(levels=((5, 7),), n=1, m=2, d=32, lq=70, p=3),
    Case(levels=((6, 11), (3, 6)), n=2, m=2, d=64, lq=19, p=1),
    Case(levels=((7, 5), (4, 9), (3, 3)), n=2, m=1, d=32, lq=45, p=5),
    Case(levels=((7, 5), (4, 9), (3, 3), (1, 6)), n=2, m=3, d=16, lq=23, p=3),
]


def make_inputs(
    case: Case, dtype: torch.dtype = torch.float64, sampling_dtype: torch.dtype | None = None, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random inputs whose locations range over [-0.25, 1.25] (a margin of points fully outside the
    maps) and include the exact borders 0 and 1. Locations and weights are in sampling_dtype (default:
    dtype)."""
    g = torch.Generator().manual_seed(seed)
    num_levels = len(case.levels)
    s = sum(h * w for h, w in case.levels)
    loc = torch.rand(case.n, case.lq, case.m, num_levels, case.p, 2, generator=g, dtype=torch.float64) * 1.5 - 0.25
    border = torch.rand(loc.shape, generator=g) < 0.15
    loc = torch.where(border, (torch.rand(loc.shape, generator=g) < 0.5).double(), loc)
    weights = torch.rand(case.n, case.lq, case.m, num_levels, case.p, generator=g, dtype=torch.float64)
    return {
        "value": torch.randn(case.n, s, case.m, case.d, generator=g, dtype=torch.float64).to(dtype),
        "spatial_shapes": torch.tensor(case.levels, dtype=torch.int64),
        "level_start_index": torch.tensor([sum(h * w for h, w in case.levels[:i]) for i in range(num_levels)]),
        "sampling_locations": loc.to(sampling_dtype or dtype),
        "attention_weights": weights.to(sampling_dtype or dtype),
    }


DIFFERENTIABLE = ("value", "sampling_locations", "attention_weights")


def forward_backward(inputs: dict[str, torch.Tensor], grad_output: torch.Tensor | None, backend: str):
    """Output and the gradients of <output, grad_output> for value, locations and weights."""
    leaves = {k: v.detach().requires_grad_(k in DIFFERENTIABLE) for k, v in inputs.items()}
    out = ms_deform_attn(**leaves, backend=backend)
    if grad_output is None:
        grad_output = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = torch.autograd.grad(out, [leaves[k] for k in DIFFERENTIABLE], grad_output.to(out.dtype))
    return out.detach(), grads


def reference(inputs: dict[str, torch.Tensor], grad_output: torch.Tensor):
    """ms_deform_attn_torch in float64 on the same (possibly rounded) inputs, differentiated by autograd."""
    leaves = {k: inputs[k].detach().double().requires_grad_() for k in DIFFERENTIABLE}
    shapes = [tuple(hw) for hw in inputs["spatial_shapes"].tolist()]
    out = ms_deform_attn_torch(leaves["value"], shapes, leaves["sampling_locations"], leaves["attention_weights"])
    grads = torch.autograd.grad(out, list(leaves.values()), grad_output.double())
    return out.detach(), grads


def assert_close_to(actual: torch.Tensor, expected: torch.Tensor, rel: float, what: str) -> None:
    """max |actual - expected| <= rel * max |expected| (errors measured against the tensor's scale)."""
    err = (actual.double() - expected).abs().max().item()
    scale = expected.abs().max().item()
    assert err <= rel * scale, f"{what}: max error {err:.3g} > {rel:.3g} x scale {scale:.3g}"


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("backend", BACKENDS)
def test_float64_matches_reference(case: Case, backend: str) -> None:
    inputs = make_inputs(case)
    out, grads = forward_backward(inputs, None, backend)
    grad_output = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref_out, ref_grads = reference(inputs, grad_output)
    assert out.shape == (case.n, case.lq, case.m * case.d)
    assert_close_to(out, ref_out, 1e-13, "output")
    for name, g, ref in zip(DIFFERENTIABLE, grads, ref_grads):
        assert g.shape == inputs[name].shape and g.dtype == torch.float64
        assert_close_to(g, ref, 1e-13, f"grad {name}")


# Reduced-precision inputs against the float64 reference on the same rounded inputs. Both paths compute
# in fp32 and round once when they store, so the error is about one unit in the last place of the
# output's largest magnitudes: tolerance eps(dtype) x max |reference| (eps = 2**-10 for fp16, 2**-7 for
# bf16; fp32 gets 2**-17, room for the fp32 rounding of a few hundred accumulated terms). With fp32
# locations and weights next to a 16-bit value (what autocast produces), their gradients are fp32 and
# held to the fp32 tolerance.
PRECISION_CASE = Case(levels=((7, 5), (4, 9), (3, 3)), n=2, m=3, d=32, lq=23, p=4)
DTYPE_PAIRS = [(torch.float16, None), (torch.bfloat16, None), (torch.float32, None),
               (torch.float16, torch.float32), (torch.bfloat16, torch.float32)]


def _tolerance(dtype: torch.dtype) -> float:
    return 2.0**-17 if dtype == torch.float32 else torch.finfo(dtype).eps


@pytest.mark.parametrize(("dtype", "sampling_dtype"), DTYPE_PAIRS, ids=str)
@pytest.mark.parametrize("backend", BACKENDS)
def test_reduced_precision_within_tolerance(dtype: torch.dtype, sampling_dtype: torch.dtype | None,
                                            backend: str) -> None:
    inputs = make_inputs(PRECISION_CASE, dtype, sampling_dtype)
    out, grads = forward_backward(inputs, None, backend)
    assert out.dtype == dtype
    grad_output = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref_out, ref_grads = reference(inputs, grad_output.to(dtype))
    assert_close_to(out, ref_out, _tolerance(dtype), "output")
    for name, g, ref in zip(DIFFERENTIABLE, grads, ref_grads):
        assert g.dtype == inputs[name].dtype
        assert_close_to(g, ref, _tolerance(g.dtype), f"grad {name}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_sampling_convention_by_hand(backend: str) -> None:
    """One 2x3 level holding 1..6 (channel c scaled by c + 1), one point per query; pixel = loc * size - 0.5.

    query  (x, y)         pixel (px, py)   corners and bilinear weights              value
    0      (0.5, 0.5)     (1.0, 0.5)       (0,1) 0.5, (1,1) 0.5 -> (2 + 5) / 2         3.5 (weight 0.5 -> 1.75)
    1      (0, 0)         (-0.5, -0.5)     only (0,0) is inside, weight 0.25           0.25
    2      (1, 1)         (2.5, 1.5)       only (1,2) is inside, weight 0.25 -> 0.25*6 1.5
    3      (1.5, 0.5)     (4.0, 0.5)       all outside                                0
    4      (0.25, 0.75)   (0.25, 1.0)      (1,0) 0.75, (1,1) 0.25 -> 3 + 1.25         4.25
    """
    d = 16
    scale = torch.arange(1, d + 1, dtype=torch.float64)
    value = torch.arange(1, 7, dtype=torch.float64)[None, :, None, None] * scale  # (1, 6, 1, D)
    xy = torch.tensor([[0.5, 0.5], [0.0, 0.0], [1.0, 1.0], [1.5, 0.5], [0.25, 0.75]], dtype=torch.float64)
    inputs = {
        "value": value,
        "spatial_shapes": torch.tensor([[2, 3]]),
        "level_start_index": torch.tensor([0]),
        "sampling_locations": xy.view(1, 5, 1, 1, 1, 2),
        "attention_weights": torch.tensor([0.5, 1, 1, 1, 1], dtype=torch.float64).view(1, 5, 1, 1, 1),
    }
    out, (_, grad_loc, grad_weights) = forward_backward(inputs, torch.ones(1, 5, d, dtype=torch.float64), backend)
    expected = torch.tensor([1.75, 0.25, 1.5, 0.0, 4.25], dtype=torch.float64)[None, :, None] * scale
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    # Query 0, with grad_output all ones (sum over channels of c + 1 = 136) and weight a = 0.5:
    #   d out / d x = a * W * ((1 - ly) (v[0,2] - v[0,1]) + ly (v[1,2] - v[1,1])) = 0.5 * 3 * 1 = 1.5
    #   d out / d y = a * H * ((1 - lx) (v[1,1] - v[0,1]) + lx (v[1,2] - v[0,2])) = 0.5 * 2 * 3 = 3
    #   d out / d a = sample = 3.5
    torch.testing.assert_close(grad_loc[0, 0, 0, 0, 0], torch.tensor([1.5, 3.0], dtype=torch.float64) * 136)
    torch.testing.assert_close(grad_weights[0, 0, 0, 0, 0], torch.tensor(3.5 * 136, dtype=torch.float64))
    # A point fully outside the maps has no gradient.
    assert grad_loc[0, 3].abs().max() == 0 and grad_weights[0, 3].abs().max() == 0


def test_gradcheck_pytorch_path() -> None:
    """Finite differences against both PyTorch-path backwards: autograd through grid_sample, and the custom
    op's own backward (recomputed per query chunk). Points are kept off pixel boundaries, where bilinear
    interpolation has kinks."""
    case = Case(levels=((3, 4), (2, 3)), n=1, m=2, d=3, lq=4, p=3)
    inputs = make_inputs(case)
    loc = inputs["sampling_locations"]
    sizes = inputs["spatial_shapes"].flip(-1).double()[None, None, None, :, None, :]  # (W_l, H_l) per level
    pixel = loc * sizes - 0.5
    inputs["sampling_locations"] = (pixel.floor() + 0.2 + 0.6 * (pixel - pixel.floor()) + 0.5) / sizes
    diff = [inputs[k].clone().requires_grad_() for k in DIFFERENTIABLE]
    shapes, starts = inputs["spatial_shapes"], inputs["level_start_index"]
    levels = [tuple(hw) for hw in shapes.tolist()]
    assert torch.autograd.gradcheck(lambda v, l, w: ms_deform_attn_torch(v, levels, l, w), diff)
    assert torch.autograd.gradcheck(lambda v, l, w: ms_deform_attn(v, shapes, starts, l, w, backend="torch"), diff)


def test_pytorch_path_chunks_queries(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a chunk budget of a few queries, forward and backward equal the unchunked computation."""
    case = CASES[3]
    inputs = make_inputs(case)
    out, grads = forward_backward(inputs, None, "torch")
    per_query = case.n * case.m * case.d * case.p
    monkeypatch.setattr(msda_op, "TORCH_CHUNK_ELEMENTS", 5 * per_query)  # 23 queries -> chunks of 5, tail 3
    chunked_out, chunked_grads = forward_backward(inputs, None, "torch")
    torch.testing.assert_close(chunked_out, out, rtol=0, atol=1e-13)
    for g, ref in zip(chunked_grads, grads):
        torch.testing.assert_close(g, ref, rtol=0, atol=1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_inputs(backend: str) -> None:
    case = CASES[3]
    inputs = make_inputs(case)
    strided = {
        "value": inputs["value"].transpose(1, 2).contiguous().transpose(1, 2),
        "spatial_shapes": inputs["spatial_shapes"].t().contiguous().t(),
        "level_start_index": torch.stack([inputs["level_start_index"]] * 2, dim=1)[:, 0],
        "sampling_locations": inputs["sampling_locations"].transpose(0, 1).contiguous().transpose(0, 1),
        "attention_weights": torch.stack([inputs["attention_weights"]] * 2, dim=-1)[..., 1],
    }
    assert not any(t.is_contiguous() for t in strided.values())
    out, grads = forward_backward(strided, None, backend)
    ref_out, ref_grads = forward_backward(inputs, None, backend)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=0)
    for g, ref in zip(grads, ref_grads):
        torch.testing.assert_close(g, ref, rtol=0, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_queries(backend: str) -> None:
    inputs = make_inputs(Case(levels=((3, 5),), n=2, m=2, d=16, lq=0, p=3))
    out, grads = forward_backward(inputs, None, backend)
    assert out.shape == (2, 0, 32)
    assert grads[0].shape == inputs["value"].shape and grads[0].abs().max() == 0


def test_auto_backend_on_cpu_is_the_pytorch_path() -> None:
    inputs = make_inputs(CASES[0])
    # D = 24 has no compiled Triton kernel: "auto" still works (PyTorch path), explicit "triton" refuses.
    odd_d = make_inputs(Case(levels=((3, 5),), n=1, m=2, d=24, lq=5, p=3))
    torch.testing.assert_close(ms_deform_attn(**inputs), ms_deform_attn(**inputs, backend="torch"), rtol=0, atol=0)
    assert ms_deform_attn(**odd_d).shape == (1, 5, 48)
    with pytest.raises(ValueError, match="D=24"):
        ms_deform_attn(**odd_d, backend="triton")


def _bad(**changes):
    inputs = make_inputs(Case(levels=((3, 5), (2, 4)), n=2, m=2, d=16, lq=6, p=3))
    inputs.update(changes)
    return inputs


BAD_INPUTS = {
    "value rank": (lambda: _bad(value=torch.zeros(2, 23, 32, dtype=torch.float64)), ValueError, "value must be"),
    "S disagrees with spatial_shapes": (
        lambda: _bad(value=torch.zeros(2, 24, 2, 16, dtype=torch.float64)), ValueError, "S=24"),
    "non-positive level": (
        lambda: _bad(spatial_shapes=torch.tensor([[0, 5], [2, 4]]), value=torch.zeros(2, 8, 2, 16, dtype=torch.float64),
                     level_start_index=torch.tensor([0, 0])), ValueError, "positive"),
    "level_start_index values": (lambda: _bad(level_start_index=torch.tensor([0, 14])), ValueError, "level_start_index"),
    "level_start_index shape": (lambda: _bad(level_start_index=torch.tensor([0])), ValueError, "level_start_index"),
    "spatial_shapes dtype": (lambda: _bad(spatial_shapes=torch.tensor([[3, 5], [2, 4]], dtype=torch.int32)),
                             TypeError, "spatial_shapes must be int64"),
    "spatial_shapes rank": (lambda: _bad(spatial_shapes=torch.tensor([3, 5, 2, 4])), ValueError, "spatial_shapes"),
    "locations last dim": (lambda: _bad(sampling_locations=torch.rand(2, 6, 2, 2, 3, 3, dtype=torch.float64)),
                           ValueError, "sampling_locations"),
    "locations levels": (lambda: _bad(sampling_locations=torch.rand(2, 6, 2, 3, 3, 2, dtype=torch.float64)),
                         ValueError, "L=2"),
    "weights shape": (lambda: _bad(attention_weights=torch.rand(2, 6, 2, 2, 4, dtype=torch.float64)),
                      ValueError, "attention_weights"),
    "locations and weights dtypes": (lambda: _bad(attention_weights=torch.rand(2, 6, 2, 2, 3)),
                                     TypeError, "share one dtype"),
    "fp32 locations with fp64 value": (
        lambda: _bad(sampling_locations=torch.rand(2, 6, 2, 2, 3, 2), attention_weights=torch.rand(2, 6, 2, 2, 3)),
        TypeError, "must be torch.float64 with value torch.float64"),
    "integer value": (lambda: _bad(value=torch.zeros(2, 23, 2, 16, dtype=torch.int64)), TypeError, "value must be"),
    "devices": (lambda: _bad(spatial_shapes=torch.tensor([[3, 5], [2, 4]], device="meta")), ValueError, "device"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
@pytest.mark.parametrize("backend", BACKENDS)
def test_bad_input_is_named(name: str, backend: str) -> None:
    make, error, match = BAD_INPUTS[name]
    with pytest.raises(error, match=match):
        ms_deform_attn(**make(), backend=backend)


def test_unknown_backend() -> None:
    with pytest.raises(ValueError, match="backend must be one of"):
        ms_deform_attn(**_bad(), backend="cuda")


@pytest.mark.parametrize("backend", BACKENDS)
def test_opcheck(backend: str) -> None:
    """Schema, fake-tensor, autograd registration and AOT dispatch of the custom op."""
    inputs = make_inputs(Case(levels=((3, 5), (2, 3)), n=1, m=2, d=16, lq=7, p=3))
    args = tuple(t.requires_grad_(k in DIFFERENTIABLE) for k, t in inputs.items()) + (backend,)
    torch.library.opcheck(torch.ops.tarvis_fast.ms_deform_attn.default, args)


class TinyDeformableAttention(torch.nn.Module):
    """Sampling offsets and attention weights predicted from the queries, as MSDeformAttn does."""

    def __init__(self, channels: int = 32, heads: int = 2, levels: int = 2, points: int = 3) -> None:
        super().__init__()
        self.heads, self.levels, self.points = heads, levels, points
        self.offsets = torch.nn.Linear(channels, heads * levels * points * 2)
        self.weights = torch.nn.Linear(channels, heads * levels * points)
        self.value = torch.nn.Linear(channels, channels)

    def forward(self, query: torch.Tensor, reference: torch.Tensor, source: torch.Tensor,
                spatial_shapes: torch.Tensor, level_start_index: torch.Tensor) -> torch.Tensor:
        n, lq, c = query.shape
        shape = (n, lq, self.heads, self.levels, self.points)
        value = self.value(source).view(n, source.shape[1], self.heads, c // self.heads)
        offsets = 0.2 * torch.tanh(self.offsets(query)).view(*shape, 2)
        locations = reference[:, :, None, None, None, :] + offsets
        weights = self.weights(query).view(n, lq, self.heads, -1).softmax(-1).view(shape)
        return ms_deform_attn(value, spatial_shapes, level_start_index, locations, weights, backend="triton")


def test_torch_compile_fullgraph_forward_backward() -> None:
    torch.manual_seed(0)
    module = TinyDeformableAttention()
    levels = torch.tensor([[5, 7], [3, 4]])
    starts = torch.tensor([0, 35])
    query, source = torch.randn(2, 11, 32), torch.randn(2, 47, 32)
    reference = torch.rand(2, 11, 2)

    def step(fn):
        module.zero_grad()
        out = fn(query, reference, source, levels, starts)
        out.square().sum().backward()
        return out.detach(), [p.grad.clone() for p in module.parameters()]

    eager_out, eager_grads = step(module)
    compiled_out, compiled_grads = step(torch.compile(module, fullgraph=True))
    torch.testing.assert_close(compiled_out, eager_out, rtol=1e-5, atol=1e-5)
    for g, ref in zip(compiled_grads, eager_grads):
        torch.testing.assert_close(g, ref, rtol=1e-4, atol=1e-5)
